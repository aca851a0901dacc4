"""Command line: ``eventsim info | validate | run | sweep | plot``.

User errors (bad YAML, missing data, a diverging run, a missing GPU) print one
line to stderr and exit with status 2 (1 for a diverged run); they never show a
Python traceback. Ctrl-C (or SIGTERM) during ``run`` saves a checkpoint, prints one
line and exits with status 130; ``run --resume RUN_DIR`` continues.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import yaml

from . import __version__
from .backend import BACKENDS, available_backends, get_backend
from .config.yamlfile import load_scalar
from .errors import DivergenceError, EventsimError, Interrupted


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EventsimError(f"--set {item!r}: expected KEY=VALUE (hint: --set rule.gamma=10)")
        try:
            out[key.strip()] = load_scalar(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise EventsimError(f"--set {item!r}: the value is not valid YAML: {problem} "
                                "(hint: quote the whole option, e.g. --set "
                                "'phases=[{name: train, epochs: 2}]')") from None
    return out


def cmd_info(args) -> int:
    print(f"eventsim {__version__}")
    for name, status in available_backends().items():
        print(f"backend {name:<6} {status}")
    be = get_backend(args.backend, args.dtype)
    print(f"selected backend {be.name}, device {be.device()}, dtype {be.dtype}")
    return 0


def cmd_validate(args) -> int:
    from .config.network import network_from_doc  # noqa: PLC0415
    from .config.scenario import scenario_from_doc  # noqa: PLC0415
    from .config.yamlfile import load_yaml  # noqa: PLC0415

    for path in args.files:
        doc = load_yaml(path)
        if isinstance(doc.data, dict) and "populations" in doc.data:
            print(network_from_doc(doc).summary())
        else:
            from pathlib import Path  # noqa: PLC0415

            sc = scenario_from_doc(doc, Path(path).resolve())
            print(f"scenario {sc.name!r} ({path}): rule {sc.spec.rule.name}, "
                  f"{sc.spec.trials} trial(s), dataset {sc.spec.dataset.name}, "
                  f"modulator {sc.spec.modulator.source}, "
                  f"phases {', '.join(p.name for p in sc.spec.phases) or 'none'}")
            if sc.spec.sweep is not None:
                from .config.scenario import load_scenario  # noqa: PLC0415
                from .config.sweep import validate_points  # noqa: PLC0415

                n = len(validate_points(sc, lambda o, p=path: load_scenario(p, o)))
                print(f"sweep: {n} point(s), each valid (run them with eventsim sweep)")
            print(sc.network.summary())
    return 0


def cmd_run(args) -> int:
    from .api import execute, resume  # noqa: PLC0415
    from .config.scenario import load_scenario  # noqa: PLC0415

    if args.resume is not None:
        given = [opt for opt, value in (("SCENARIO", args.scenario), ("--set", args.set),
                                        ("--trials", args.trials), ("--seed", args.seed),
                                        ("--dtype", args.dtype), ("--out", args.out))
                 if value is not None]
        if given:
            raise EventsimError(f"--resume continues a run as it was configured; drop "
                                f"{', '.join(given)} (hint: eventsim run --resume RUN_DIR)")
        run = resume(args.resume, backend=args.backend, quiet=args.quiet,
                     plots=not args.no_plots)
    elif args.scenario is None:
        raise EventsimError("run needs a SCENARIO file, or --resume RUN_DIR "
                            "(hint: eventsim run scenarios/linear_analytic.yaml)")
    else:
        overrides = _parse_set(args.set)
        if args.trials is not None:
            overrides["trials"] = args.trials
        if args.seed is not None:
            overrides["seed"] = args.seed
        if args.dtype is not None:
            overrides["dtype"] = args.dtype
        sc = load_scenario(args.scenario, overrides)
        run = execute(sc, backend=args.backend, out=args.out, root=args.root,
                      quiet=args.quiet, plots=not args.no_plots)
    s = run.summary
    print(f"run directory: {run.directory.path}")
    for row in s.get("xi_scores", []):
        print(f"readout vs true ξ of {row['layer']}, {row['phase']} {row['window']} "
              f"(ticks {row['start_tick']}-{row['end_tick']}): "
              f"corr {np.mean(row['corr']):.3f} {np.round(row['corr'], 3).tolist()}, "
              f"NMSE {np.mean(row['nmse']):.3f} {np.round(row['nmse'], 3).tolist()}")
    if "test_accuracy" not in s:
        return 0
    acc = np.asarray(s["test_accuracy"])
    print(f"test accuracy (held-out): mean {acc.mean():.4f} over {acc.size} trial(s); "
          f"per trial {np.round(acc, 4).tolist()}")
    if "train_accuracy" in s:
        print(f"train accuracy: mean {np.mean(s['train_accuracy']):.4f}")
    if "weight_ratio" in s:
        learned = np.round(np.asarray(s["weight_ratio"], dtype=np.float64), 3).tolist()
        true = np.round(np.asarray(s["true_ratio"], dtype=np.float64), 3).tolist()
        print(f"learned weight ratio W[1]/W[0] (DL Fig. 5B): {learned}")
        print(f"true weight ratio    w[1]/w[0]:              {true}")
    return 0


def cmd_sweep(args) -> int:
    from .sweep import EPOCHS_FILE, run_sweep, summarise  # noqa: PLC0415

    if args.workers < 1:
        raise EventsimError(f"--workers {args.workers}: expected at least 1")
    result = run_sweep(args.scenario, out=args.out, workers=args.workers,
                       scheduler=args.scheduler, backend=args.backend,
                       overrides=_parse_set(args.set), plots=not args.no_plots,
                       table_format=args.format,
                       log=(lambda _line: None) if args.quiet else print)
    for line in summarise(result.rows):
        print(line)
    print(f"results: {result.table} ({len(result.rows)} rows; {result.finished} point(s) "
          f"finished, {result.failed} failed, {result.skipped} skipped as already finished)")
    if result.parquet is not None:
        print(f"results: {result.parquet} (the same table, Parquet)")
    if (result.directory / EPOCHS_FILE).is_file():
        print(f"accuracy per evaluation epoch: {result.directory / EPOCHS_FILE}")
    for path in result.plots:
        print(f"{'plot' if path.suffix == '.png' else 'plot table'}: {path}")
    return 1 if result.failed else 0


def cmd_plot(args) -> int:
    from .plots import plot_run  # noqa: PLC0415

    paths = plot_run(args.run_dir)
    for p in paths:
        print(p)
    return 0


def cmd_show(args) -> int:
    from .runreport import describe_run  # noqa: PLC0415

    for line in describe_run(args.run_dir, prefix=args.metric):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventsim",
        description="Event-driven simulation of three-factor (neuromodulated Hebbian) learning.")
    parser.add_argument("--version", action="version", version=f"eventsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="version, backends, device and dtype")
    p.add_argument("--backend", choices=BACKENDS, default=None)
    p.add_argument("--dtype", choices=["float32", "float64"], default=None)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("validate", help="check network or scenario files and summarise them")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a scenario into a run directory")
    p.add_argument("scenario", metavar="SCENARIO", nargs="?", default=None)
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue a stopped or killed run from its checkpoint, in RUN_DIR")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="array backend (default: scenario's, then $EVENTSIM_BACKEND, then numpy)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None)
    p.add_argument("--trials", type=int, default=None, help="override the number of trials")
    p.add_argument("--seed", type=int, default=None, help="override the base seed")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a scenario field by dotted path, e.g. rule.gamma=10")
    p.add_argument("--out", default=None, help="run directory (default runs/<name>/<stamp>)")
    p.add_argument("--root", default="runs", help="parent of run directories")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="run every point of a scenario's sweep: block into one "
                                     "results table")
    p.add_argument("scenario", metavar="SCENARIO")
    p.add_argument("--workers", type=int, default=1,
                   help="local worker processes (default 1: run in this process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the points on this Dask scheduler (needs eventsim[dask])")
    p.add_argument("--out", default=None,
                   help="sweep directory (default runs/<name>/sweep); finished points in it "
                        "are skipped")
    p.add_argument("--backend", choices=BACKENDS, default=None)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a field of every point by dotted path")
    p.add_argument("--quiet", action="store_true", help="no per-point progress lines")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv",
                   help="table format: csv (default) or parquet (results.parquet as well as "
                        "results.csv; needs eventsim[parquet])")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plot", help="regenerate the plots of a run directory from its files")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("show", help="a run directory's status, run time and scores, also "
                                    "while it runs or after it stopped")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--metric", default="accuracy/", metavar="PREFIX",
                   help="show the metrics whose names start with PREFIX (default accuracy/; "
                        "e.g. objective_dl/out)")
    p.set_defaults(func=cmd_show)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DivergenceError as exc:
        print(f"eventsim: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"eventsim: {exc}", file=sys.stderr)
        return 130
    except EventsimError as exc:
        print(f"eventsim: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("eventsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
