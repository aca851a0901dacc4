"""traces.h5 of a run with many ticks: its size, and the memory and time of writing it.

What it measures
    Runs a scenario through :func:`eventsim.api.execute` with its phases
    replaced by one training phase of ``--epochs`` epochs (no plots), then
    reports the run's ticks, the size of ``traces.h5`` and, for the end of the
    run (from just before the runner collects the channel records to the end
    of writing ``traces.h5``), the peak of traced allocations (tracemalloc:
    NumPy's arrays are traced) and the growth of the process's peak RSS.

    Everything that precedes the end of the run is untouched, so the same
    script measures an older tree: check it out elsewhere and put it first on
    the path (the script relies only on ``eventsim.api.execute``,
    ``eventsim.api.RunDir.write_traces`` and ``eventsim.runner.final_weights``).

Usage
    python benchmarks/traces_write.py [SCENARIO] [--epochs N] [--out DIR]

    # the same against commit REF:
    git archive REF | tar -x -C /tmp/ref
    PYTHONPATH=/tmp/ref python benchmarks/traces_write.py --out /tmp/ref_run
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import eventsim.api as api
import eventsim.runner as runner
from eventsim.config.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(REPO / "scenarios/linear_analytic.yaml"))
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="traces_write_")) / "run"
    sc = load_scenario(args.scenario, {
        "phases": [{"name": "train", "epochs": args.epochs, "learn": ["layers"]}]})

    stats: dict[str, float] = {}
    final_weights, write_traces = runner.final_weights, api.RunDir.write_traces

    def end_of_run(sim):  # the runner calls this just before it collects the channel records
        tracemalloc.start()
        stats["rss_mb"] = _max_rss_mb()
        return final_weights(sim)

    def measured_write(self, traces, channels, dt_ms):
        start = time.perf_counter()
        path = write_traces(self, traces, channels, dt_ms)
        stats["write_s"] = time.perf_counter() - start
        stats["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        stats["rss_growth_mb"] = _max_rss_mb() - stats.pop("rss_mb")
        tracemalloc.stop()
        return path

    runner.final_weights, api.RunDir.write_traces = end_of_run, measured_write
    start = time.perf_counter()
    run = api.execute(sc, out=out, quiet=True, plots=False)
    size = (out / "traces.h5").stat().st_size
    print(f"eventsim from {Path(api.__file__).parent}")
    print(f"{sc.name}, {args.epochs} epochs, {sc.spec.trials} trials: {run.result.ticks} ticks "
          f"in {time.perf_counter() - start:.0f} s; traces.h5 {size / 2**20:.3f} MiB; writing "
          f"it: traced peak {stats['traced_peak_mb']:.1f} MiB, peak RSS +"
          f"{stats['rss_growth_mb']:.1f} MiB, {stats['write_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
