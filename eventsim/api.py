"""The Python API: everything the CLI does, for scripts and notebooks.

>>> run = eventsim.run("scenarios/linear_analytic.yaml", overrides={"trials": 2})
>>> run.summary["test_accuracy"], run.metrics, run.plot()
>>> run = eventsim.resume("runs/linear_analytic/20250101-120000-1a2b3c4d")
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import checkpoint
from .config.scenario import Scenario, load_scenario
from .errors import CheckpointError, DivergenceError, EventsimError, Interrupted
from .progress import Progress
from .rundir import (
    CONFIG_FILE,
    META_FILE,
    RunDir,
    added_keys,
    config_hash,
    environment_facts,
    load_config,
    load_meta,
    metrics_frame,
)
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
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def execute(scenario: Scenario, *, backend: str | None = None, out=None, root="runs",
            quiet: bool = False, plots: bool = True) -> Run:
    """Run ``scenario`` into a new run directory (config, meta, metrics, traces, weights,
    checkpoints, plots)."""
    rundir = RunDir.create(root, scenario_name=scenario.name,
                           resolved_config=scenario.resolved(), out=out)
    with rundir.lock():
        rundir.write_meta(scenario=scenario.name, seeds=scenario.seeds, start_time=_now(),
                          status="running",
                          scenario_file=None if scenario.path is None else str(scenario.path),
                          network_file=scenario.network.file)
        return _drive(scenario, rundir, backend=backend, quiet=quiet, plots=plots)


def resume(run_dir, *, backend: str | None = None, quiet: bool = True,
           plots: bool = True) -> Run:
    """Continue a stopped or killed run from the checkpoint in ``run_dir``.

    The run goes on in the same directory, configured by its ``config.resolved.yaml``
    and, unless ``backend`` says otherwise, on the backend it was saved from. A
    file that no longer matches the checkpoint (it was edited) is refused. Fields
    that this version of eventsim added since the run started take their
    defaults; they are written into the file and named in the ``resumed`` entry
    of ``meta.json`` (``added_fields``).
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run directory")
    rundir = RunDir(path)
    with rundir.lock():
        meta = load_meta(path) if (path / META_FILE).is_file() else {}
        if meta.get("status") == "finished":
            raise CheckpointError(f"{path}: the run has finished; there is nothing to resume")
        state = checkpoint.load(path / checkpoint.CHECKPOINT_FILE)
        written = load_config(path)
        if state["config_hash"] != config_hash(written):
            raise CheckpointError(f"{path / CONFIG_FILE}: not the configuration the checkpoint "
                                  "was saved for (hint: was it edited? start a new run instead)")
        scenario = load_scenario(path / CONFIG_FILE)
        resolved = scenario.resolved()
        added = added_keys(written, resolved)
        if added:
            rundir.write_config(resolved)
        facts = environment_facts()
        resumed = [*(meta.get("resumed") or []),
                   {"time": _now(), "tick": state["simulator"]["tick"],
                    "git_commit": facts["git_commit"], "git_dirty": facts["git_dirty"],
                    "eventsim_version": facts["eventsim_version"], "added_fields": added}]
        rundir.write_meta(status="running", error=None, end_time=None, resumed=resumed)
        return _drive(scenario, rundir, backend=backend or state["backend"], quiet=quiet,
                      plots=plots, state=state)


def _drive(scenario: Scenario, rundir: RunDir, *, backend, quiet: bool, plots: bool,
           state: dict | None = None) -> Run:
    """Run (or continue from ``state``) and write the results into ``rundir``."""
    start = time.time()
    runner = None
    progress = None

    def stopped(**fields) -> None:
        """meta.json of a run that ended early."""
        wall = runner.elapsed_s() if runner is not None else time.time() - start
        ticks = {} if runner is None else {"ticks": runner.sim.tick}
        rundir.write_meta(end_time=_now(), wall_time_s=wall, **ticks, **fields)

    try:
        rule = scenario.spec.rule
        if rule.name == "phsic" and rule.mode == "static":
            progress = Progress(sum(p.epochs or 0 for p in scenario.spec.phases), None,
                                quiet=quiet, unit="epoch")
            result = run_scenario(scenario, backend=backend, progress=progress)
        elif rule.name == "backprop":
            result = run_scenario(scenario, backend=backend)
        else:
            runner = Runner(scenario, backend=backend)
            be = runner.backend
            rundir.write_meta(backend=be.name, device=be.device(), dtype=str(be.dtype),
                              dt_ms=runner.sim.dt_ms)
            runner.checkpoints = checkpoint.Checkpointer(rundir)
            if state is not None:
                checkpoint.restore(runner, state)
            progress = Progress(runner.total_ticks(), runner.sim.dt_ms, quiet=quiet,
                                start_tick=runner.sim.tick)
            runner.progress = progress
            with checkpoint.stop_on_signal(runner):
                result = runner.run()
    except DivergenceError as exc:
        if runner is not None:
            rundir.set_metrics(runner.result.metrics)
            rundir.flush_metrics()
        stopped(status="diverged", error=str(exc))
        raise
    except Interrupted as exc:
        stopped(status="interrupted", error=str(exc))
        raise
    except (EventsimError, KeyboardInterrupt) as exc:
        stopped(status="failed", error=str(exc) or type(exc).__name__)
        raise
    finally:
        if progress is not None:
            progress.close()
    rundir.set_metrics(result.metrics)
    rundir.flush_metrics()
    dt = scenario.spec.timing.dt
    traces = {name: {"data": values, "ticks": ticks, "units": _units(name)}
              for name, (ticks, values) in result.traces.items()}
    channels = {}
    if runner is not None:  # samples start every sample_ticks from tick 0: one run
        step = runner.sim.sample_ticks
        count = -(-result.ticks // step)
        sample_runs = np.array([[0, step if count > 1 else 0, count]] if count else [],
                               dtype=np.int64).reshape(-1, 3)
        channels = {name: {**rec, "sample_runs": sample_runs}
                    for name, rec in result.channels.items()}
    rundir.write_traces(traces, channels, dt)
    if result.weights:
        rundir.write_weights(result.weights)
    be = result.backend
    rundir.write_meta(status="finished", backend=be.name, device=be.device(), dtype=str(be.dtype),
                      end_time=_now(), wall_time_s=result.wall_time_s, ticks=result.ticks,
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
            "xi": "a.u.", "readout": "a.u.",
            "code": "rate (sample-window mean)", "label": "class index"}.get(var, "a.u.")


def run(path, *, overrides: dict | None = None, backend: str | None = None, out=None,
        root="runs", quiet: bool = True, plots: bool = True) -> Run:
    """Load ``path`` with dotted ``overrides`` and run it (see :func:`execute`)."""
    return execute(load_scenario(path, overrides), backend=backend, out=out, root=root,
                   quiet=quiet, plots=plots)
