"""The Python API: everything the CLI does, for scripts and notebooks.

>>> run = eventsim.run("scenarios/linear_analytic.yaml", overrides={"trials": 2})
>>> run.summary["test_accuracy"], run.metrics, run.plot()
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .config.scenario import Scenario, load_scenario
from .errors import DivergenceError, EventsimError
from .progress import Progress
from .rundir import RunDir, metrics_frame
from .runner import Runner, RunResult, run_scenario
from .units import format_ms


@dataclass
class Run:
    """A finished run: its result and its run directory."""

    result: RunResult
    directory: RunDir

    @property
    def summary(self) -> dict:
        return self.result.summary

    @property
    def metrics(self):
        """Metric rows as a pandas DataFrame when pandas is installed, else a list of dicts."""
        try:
            return metrics_frame(self.directory.path)
        except Exception:  # pandas missing: plain rows
            return self.result.metrics

    @property
    def traces(self) -> dict:
        return self.result.traces

    def plot(self) -> list[Path]:
        """(Re)generate the run's plots from its saved files."""
        from .plots import plot_run  # noqa: PLC0415

        return plot_run(self.directory.path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def execute(scenario: Scenario, *, backend: str | None = None, out=None, root="runs",
            quiet: bool = False, plots: bool = True) -> Run:
    """Run ``scenario`` into a new run directory (config, meta, metrics, traces, plots)."""
    rundir = RunDir.create(root, scenario_name=scenario.name,
                           resolved_config=scenario.resolved(), out=out)
    start = time.time()
    rundir.write_meta(scenario=scenario.name, seeds=scenario.seeds, start_time=_now(),
                      status="running")
    runner = None
    progress = None
    try:
        rule = scenario.spec.rule
        if rule.name == "backprop" or (rule.name == "phsic" and rule.mode == "static"):
            result = run_scenario(scenario, backend=backend)
        else:
            runner = Runner(scenario, backend=backend)
            progress = Progress(runner.total_ticks(), runner.sim.dt_ms, quiet=quiet)
            runner.progress = progress
            result = runner.run()
    except DivergenceError as exc:
        if runner is not None:
            rundir.add_metrics(runner.result.metrics)
            rundir.flush_metrics()
        rundir.write_meta(status="diverged", error=str(exc), end_time=_now(),
                          wall_time_s=time.time() - start)
        raise
    except (EventsimError, KeyboardInterrupt) as exc:
        rundir.write_meta(status="failed", error=str(exc) or type(exc).__name__,
                          end_time=_now(), wall_time_s=time.time() - start)
        raise
    finally:
        if progress is not None:
            progress.close()
    rundir.add_metrics(result.metrics)
    rundir.flush_metrics()
    dt = scenario.spec.timing.dt
    traces = {name: {"data": values, "ticks": ticks, "units": _units(name)}
              for name, (ticks, values) in result.traces.items()}
    channels = {}
    if runner is not None:
        sample_ticks = runner.sim.sample_ticks
        for name, rec in result.channels.items():
            channels[name] = {
                **rec, "sample_ticks": np.arange(0, result.ticks, sample_ticks)}
    rundir.write_traces(traces, channels, dt)
    be = result.backend
    rundir.write_meta(status="finished", backend=be.name, device=be.device(), dtype=str(be.dtype),
                      end_time=_now(), wall_time_s=time.time() - start, ticks=result.ticks,
                      simulated_time=format_ms(result.ticks * dt), dt_ms=dt,
                      phases=result.phases,
                      summary={k: np.asarray(v).tolist() for k, v in result.summary.items()})
    run = Run(result=result, directory=rundir)
    if plots:
        run.plot()
    return run


def _units(name: str) -> str:
    var = name.rpartition(".")[2]
    return {"u": "a.u. (membrane)", "z": "rate", "r": "rate", "W": "weight",
            "xi": "a.u. (third factor)", "readout": "a.u. (third factor)",
            "code": "rate (sample-window mean)", "label": "class index"}.get(var, "a.u.")


def run(path, *, overrides: dict | None = None, backend: str | None = None, out=None,
        root="runs", quiet: bool = True, plots: bool = True) -> Run:
    """Load ``path`` with dotted ``overrides`` and run it (see :func:`execute`)."""
    return execute(load_scenario(path, overrides), backend=backend, out=out, root=root,
                   quiet=quiet, plots=plots)
