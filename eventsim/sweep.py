"""Parameter sweeps: run every point of a scenario's ``sweep:`` block on an executor.

A sweep directory holds::

    <out>/
        sweep.json               the scenario and every point (index, label, overrides, hash)
        results.csv              the tidy table: one row per point and trial
        results.parquet          the same table with typed columns (``table_format="parquet"``)
        epochs.csv               with evaluate.every: one row per point, evaluation epoch, trial
        plots/                   the sweep's plots (eventsim.plots.plot_sweep, a line plot,
                                 and plot_sweep_heatmap, a heat map with its table as .csv)
        points/<hash8>/
            point.json           the point's status, error, per-trial results and wall time
            run/                 its run directory (config, meta, metrics, traces; no plots)

``hash8`` is the config hash of the point's resolved scenario (network inlined,
its file path left out), so a point that is already ``finished`` is skipped
when the sweep runs again, and a point whose configuration changed runs anew.
Failed points run again.

Points run on a :mod:`concurrent.futures` executor: in this process
(``workers=1``), in a pool of ``workers`` local processes, or on a Dask
cluster through ``distributed.Client(scheduler).get_executor()`` (the workers
must see the same file system). An exception in a point is recorded as that
point's failure and the others go on. A worker process that dies without an
exception breaks a process pool: the points it was running are then run again
one at a time in a fresh pool, so the one that dies is recorded as failed and
the others finish.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import multiprocessing
import shutil
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config.scenario import load_scenario
from .config.sweep import EPOCH, EPOCH_METRICS, Point, default_plots, panel_keys, validate_points
from .errors import ConfigError, EventsimError
from .rundir import atomic_write, config_hash, csv_cell, csv_columns, slugify, write_csv

RESULTS_FILE = "results.csv"
EPOCHS_FILE = "epochs.csv"
PARQUET_FILE = "results.parquet"
TABLE_FORMATS = ("csv", "parquet")
POINT_FILE = "point.json"
SWEEP_FILE = "sweep.json"


def point_hash(sc) -> str:
    """The config hash of a point's resolved scenario, without the network's file path."""
    resolved = sc.resolved()
    resolved["network"].pop("file", None)
    return config_hash(resolved)


def run_point(scenario_path: str, overrides: dict, run_dir: str,
              backend: str | None = None) -> dict:
    """Run one point into ``run_dir`` (executed by a worker); returns its per-trial results.

    ``results`` maps each per-trial summary value (``test_accuracy``, ...) to its
    trials' values; with ``evaluate.every`` set, ``epochs`` lists, per epoch that
    was evaluated, the trials' accuracies of the last evaluation after it (after
    the last epoch: the final evaluation, the one ``results`` repeats).
    """
    from .api import execute  # noqa: PLC0415  (keeps the module light for the CLI)

    sc = load_scenario(scenario_path, overrides)
    run = execute(sc, backend=backend, out=run_dir, quiet=True, plots=False)
    per_trial = {}
    for key, value in run.summary.items():
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.size == sc.spec.trials:
            per_trial[key] = [float(v) for v in arr]
    epochs: dict[int, dict[str, list]] = {}
    if sc.spec.evaluate.every:
        for row in run.result.metrics:  # in time order: a later evaluation replaces one
            column = EPOCH_METRICS.get(row["metric"])
            if column is not None and row["epoch"] is not None:
                values = epochs.setdefault(int(row["epoch"]), {}).setdefault(
                    column, [None] * sc.spec.trials)
                values[int(row["trial"])] = float(row["value"])
    return {"seeds": sc.seeds, "results": per_trial,
            "epochs": [{"epoch": e, "results": epochs[e]} for e in sorted(epochs)],
            "wall_time_s": float(run.result.wall_time_s)}


@dataclass
class _Task:
    point: Point
    hash: str
    trials: int
    seeds: list
    isolated: bool = False


@dataclass
class SweepResult:
    """What a sweep produced."""

    directory: Path
    table: Path
    rows: list[dict]
    finished: int = 0
    failed: int = 0
    skipped: int = 0
    plots: list[Path] = field(default_factory=list)
    parquet: Path | None = None


class _Inline(cf.Executor):
    """Runs each submitted call at once, in this process."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _process_pool(workers: int) -> cf.Executor:
    """Workers forked from a fresh single-threaded server process that has imported the
    simulator once (``forkserver``; ``spawn`` where there is none), never from this one."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["eventsim.api", "eventsim.sweep"])
    else:
        context = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _dask_executor(address: str):
    try:
        from distributed import Client  # noqa: PLC0415
    except ImportError:
        raise EventsimError("--scheduler needs Dask (hint: pip install 'eventsim[dask]')") \
            from None
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise EventsimError(f"cannot reach the Dask scheduler at {address!r}: {exc} "
                            "(hint: check the address, e.g. tcp://host:8786)") from None
    slots = max(1, sum(client.nthreads().values()))
    return client, client.get_executor(pure=False), slots


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, EventsimError):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def run_sweep(path, *, out=None, workers: int = 1, scheduler: str | None = None,
              backend: str | None = None, overrides: dict | None = None, log=print,
              runner=run_point, plots: bool = True,
              table_format: str = "csv") -> SweepResult:
    """Run (or complete) the sweep of the scenario at ``path``; see the module docstring.

    ``overrides`` (dotted keys) apply to every point, below the sweep's own values.
    ``runner`` is the function each point runs (default :func:`run_point`).
    ``table_format="parquet"`` also writes the table as ``results.parquet`` at the end
    (needs pyarrow: ``pip install 'eventsim[parquet]'``); ``results.csv`` is always
    written, after every point.
    """
    if table_format not in TABLE_FORMATS:
        raise EventsimError(f"table format {table_format!r}: expected one of "
                            f"{', '.join(TABLE_FORMATS)}")
    if table_format == "parquet":
        _pyarrow()  # fail before any point runs
    overrides = dict(overrides or {})
    path = Path(path)
    base = load_scenario(path, overrides)
    if base.spec.sweep is None:
        raise base.error((), "the scenario has no sweep: block",
                         "add e.g. sweep: {grid: {rule.gamma: [2, 5, 10]}}, or use eventsim run")
    points = validate_points(base, lambda o: load_scenario(path, {**overrides, **o}))
    directory = Path(out) if out is not None else Path("runs") / slugify(base.name) / "sweep"
    if directory.exists() and not directory.is_dir():
        raise EventsimError(f"{directory}: exists and is not a directory")
    (directory / "points").mkdir(parents=True, exist_ok=True)
    records: dict[int, dict] = {}
    todo: deque[_Task] = deque()
    tasks = []
    for point, sc in points:
        task = _Task(point, point_hash(sc), sc.spec.trials, sc.seeds)
        tasks.append(task)
        record = _read_record(directory / "points" / task.hash)
        if record is not None and record.get("status") == "finished":
            records[point.index] = record
        else:
            todo.append(task)
    skipped = len(records)
    atomic_write(directory / SWEEP_FILE, json.dumps({
        "scenario": str(path.resolve()), "overrides": overrides,
        "points": [{"index": t.point.index, "variant": t.point.variant,
                    "label": t.point.label(), "overrides": t.point.overrides, "hash": t.hash}
                   for t in tasks]}, indent=2, default=str) + "\n")
    log(f"sweep {base.name!r}: {len(tasks)} point(s), {skipped} already finished, "
        f"{len(todo)} to run -> {directory}")

    client = None
    if scheduler is not None:
        client, executor, slots = _dask_executor(scheduler)
        make_pool = None
    elif workers > 1:
        executor, slots = _process_pool(workers), workers
        make_pool = _process_pool
    else:
        executor, slots, make_pool = _Inline(), 1, None
    n_done = [0]
    total = len(todo)

    def finish(task: _Task, status: str, outcome: dict | None, error: str = "") -> None:
        record = {"hash": task.hash, "index": task.point.index, "label": task.point.label(),
                  "variant": task.point.variant, "overrides": task.point.overrides,
                  "status": status, "error": error, "seeds": task.seeds,
                  "results": (outcome or {}).get("results", {}),
                  "epochs": (outcome or {}).get("epochs", []),
                  "wall_time_s": (outcome or {}).get("wall_time_s")}
        pdir = directory / "points" / task.hash
        atomic_write(pdir / POINT_FILE, json.dumps(record, indent=2) + "\n")
        records[task.point.index] = record
        n_done[0] += 1
        if status == "finished":
            acc = np.asarray(record["results"].get("test_accuracy", []))
            score = (f": test accuracy {acc.mean():.4f} ± {acc.std():.4f}" if acc.size else "")
            log(f"[{n_done[0]}/{total}] point {task.point.index} ({task.point.label()}) "
                f"finished in {record['wall_time_s']:.1f} s{score}")
        else:
            log(f"[{n_done[0]}/{total}] point {task.point.index} ({task.point.label()}) "
                f"FAILED: {error}")
        _write_table(directory, tasks, records)

    def submit(task: _Task):
        run_dir = directory / "points" / task.hash / "run"
        if run_dir.exists():  # a failed or interrupted earlier attempt
            shutil.rmtree(run_dir)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        return executor.submit(runner, str(path.resolve()),
                               {**overrides, **task.point.overrides, "sweep": None},
                               str(run_dir), backend)

    suspects: deque[_Task] = deque()
    running: dict = {}
    try:
        while todo or suspects or running:
            if suspects:  # after a pool broke: one suspect at a time, alone
                if not running:
                    task = suspects.popleft()
                    task.isolated = True
                    running[submit(task)] = task
            else:
                while todo and len(running) < slots:
                    task = todo.popleft()
                    try:
                        running[submit(task)] = task
                    except cf.BrokenExecutor:  # a worker died since the last wait
                        todo.appendleft(task)
                        if running or make_pool is None:
                            break  # the running futures report the breakage below
                        executor.shutdown(wait=False, cancel_futures=True)
                        executor = make_pool(slots)
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            broken = False
            for future in done:
                task = running.pop(future)
                exc = future.exception()
                if exc is None:
                    finish(task, "finished", future.result())
                elif isinstance(exc, cf.BrokenExecutor) and make_pool is not None:
                    broken = True
                    if task.isolated:
                        finish(task, "failed", None, "the worker process died while running "
                                                      "this point (no Python exception)")
                    else:
                        suspects.append(task)
                else:
                    finish(task, "failed", None, _error_text(exc))
            if broken:
                for future, task in list(running.items()):  # broken too: all are suspects
                    future.cancel()
                    suspects.append(task)
                running.clear()
                executor.shutdown(wait=False, cancel_futures=True)
                executor = make_pool(slots)
    finally:
        if client is not None:
            executor.shutdown(wait=True)
            client.close()
        else:
            executor.shutdown(wait=True, cancel_futures=True)
    table = _write_table(directory, tasks, records)
    result = SweepResult(directory=directory, table=table, rows=_rows(tasks, records),
                         skipped=skipped)
    result.finished = sum(r["status"] == "finished" for r in records.values())
    result.failed = sum(r["status"] == "failed" for r in records.values())
    if table_format == "parquet":
        result.parquet = write_parquet(directory / PARQUET_FILE, result.rows)
    if plots and result.finished:
        from .plots import plot_sweep, plot_sweep_heatmap  # noqa: PLC0415

        sweep = base.spec.sweep
        epoch_rows = _rows(tasks, records, by_epoch=True)
        for spec in default_plots(sweep):
            rows = epoch_rows if EPOCH in spec.axes().values() else result.rows
            panels = (["variant"] if sweep.variants else []) + panel_keys(sweep, spec)
            if spec.kind == "heatmap":
                result.plots += plot_sweep_heatmap(rows, spec, directory / "plots",
                                                   panels=panels)
            else:
                result.plots.append(plot_sweep(rows, spec, directory / "plots",
                                               panels=panels))
    return result


def _read_record(pdir: Path) -> dict | None:
    try:
        return json.loads((pdir / POINT_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _rows(tasks: list[_Task], records: dict[int, dict], by_epoch: bool = False) -> list[dict]:
    """One row per point (in point order) and trial; unfinished points have none.

    ``by_epoch``: one row per finished point, evaluation epoch (column ``epoch``,
    before ``trial``) and trial, with that evaluation's accuracies.
    """
    params = []
    for task in tasks:
        for key in task.point.overrides:
            if key not in params:
                params.append(key)
    with_variant = any(t.point.variant is not None for t in tasks)
    rows = []
    for task in tasks:
        record = records.get(task.point.index)
        if record is None:
            continue
        if by_epoch:
            blocks = [(e["epoch"], e["results"]) for e in record.get("epochs", [])]
        else:
            blocks = [(None, record["results"])]
        for epoch, results in blocks:
            for k in range(task.trials):
                row = {"point": task.point.index}
                if with_variant:
                    row["variant"] = task.point.variant
                row.update({key: task.point.overrides.get(key) for key in params})
                if by_epoch:
                    row["epoch"] = epoch
                row.update({"trial": k, "seed": task.seeds[k], "status": record["status"]})
                for metric, values in results.items():
                    row[metric] = values[k]
                if not by_epoch:
                    row["wall_time_s"] = record["wall_time_s"]
                    row["error"] = record["error"]
                row["run_dir"] = f"points/{task.hash}/run"
                rows.append(row)
    return rows


def _write_table(directory: Path, tasks, records) -> Path:
    """Rewrite results.csv, and epochs.csv when any finished point has evaluation epochs."""
    epoch_rows = _rows(tasks, records, by_epoch=True)
    if epoch_rows:
        write_csv(directory / EPOCHS_FILE, epoch_rows, _LAST_COLUMNS)
    return write_csv(directory / RESULTS_FILE, _rows(tasks, records), _LAST_COLUMNS)


_LAST_COLUMNS = ("wall_time_s", "error", "run_dir")
"""Columns that close every sweep table."""


def typed_columns(rows: list[dict]) -> dict[str, tuple[str, list]]:
    """The table's columns for a typed format: ``{name: (type, values)}``.

    ``type`` is ``bool``, ``int64`` or ``float64`` when every non-missing value of the column
    is of that kind (ints and floats together give ``float64``), else ``string`` with each
    value as the CSV writes it (so ``rule.trace`` = 0, 20, tick gives "0", "20", "tick").
    Missing values are ``None``.
    """
    out = {}
    for column in csv_columns(rows, _LAST_COLUMNS):
        values = [row.get(column) for row in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, (bool, np.bool_)) for v in present):
            kind = "bool"
            values = [None if v is None else bool(v) for v in values]
        elif present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                             for v in present):
            kind = "int64"
            values = [None if v is None else int(v) for v in values]
        elif present and all(isinstance(v, (int, float, np.integer, np.floating))
                             and not isinstance(v, bool) for v in present):
            kind = "float64"
            values = [None if v is None else float(v) for v in values]
        else:
            kind = "string"
            values = [None if v is None else str(csv_cell(v)) for v in values]
        out[column] = (kind, values)
    return out


def _pyarrow():
    try:
        import pyarrow  # noqa: PLC0415
        import pyarrow.parquet  # noqa: F401, PLC0415
    except ImportError:
        raise EventsimError("the Parquet table needs pyarrow "
                            "(hint: pip install 'eventsim[parquet]', or use --format csv)") \
            from None
    return pyarrow


def write_parquet(path, rows: list[dict]) -> Path:
    """Write the tidy table ``rows`` to ``path`` as Parquet with typed columns
    (:func:`typed_columns`); needs pyarrow."""
    pa = _pyarrow()
    columns = typed_columns(rows)
    types = {"bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64(),
             "string": pa.string()}
    table = pa.table({name: pa.array(values, type=types[kind])
                      for name, (kind, values) in columns.items()})
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pa.parquet.write_table(table, tmp)
    tmp.replace(path)
    return path


def load_results(path) -> list[dict]:
    """Rows of a ``results.csv`` (strings; empty cells as '')."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.is_file():
        raise ConfigError(f"{p}: no such results table", hint="run eventsim sweep first")
    with open(p, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def summarise(rows: list[dict], metric: str = "test_accuracy") -> list[str]:
    """One line per point: its parameters and the mean ± SD of ``metric`` over trials."""
    by_point: dict = {}
    for row in rows:
        by_point.setdefault(row["point"], []).append(row)
    lines = []
    for index, group in by_point.items():
        first = group[0]
        keys = list(first)
        swept = keys[keys.index("point") + 1:keys.index("trial")]  # variant and parameters
        params = ", ".join(f"{k}={first[k]}" for k in swept)
        if first["status"] != "finished":
            lines.append(f"point {index:>3} {params}: failed")
            continue
        values = np.asarray([float(r[metric]) for r in group if r.get(metric) not in (None, "")])
        lines.append(f"point {index:>3} {params}: {metric} {values.mean():.4f} ± "
                     f"{values.std():.4f} (n={values.size})")
    return lines
