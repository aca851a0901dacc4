"""Checkpoints: the complete state of a run, saved atomically into its run directory.

A checkpoint is everything needed to continue a run bit for bit: the simulator
state (:mod:`eventsim.engine.state`: population states and weights, noise
streams, working memories, synapse traces and inboxes, readout filters, channel
messages in flight with their RNGs, probes, the clock) and the runner's
(:class:`~eventsim.runner.Position` in the phase/epoch loop, the epoch count,
the presenter's random streams and position in its shuffled pass, the metrics,
summary and evaluation traces so far, the wall time). Together with
``config.resolved.yaml`` of the same run directory it is all that
``eventsim run --resume RUN_DIR`` needs.

File format: ``checkpoint.npz``, a NumPy ``.npz`` archive (written atomically,
read with ``allow_pickle=False``) holding every array of the state as a member
``a<i>`` and the structure as UTF-8 JSON bytes in member ``__tree__``; there an array is
``{"__array__": "a<i>"}`` and a mapping with non-string keys is
``{"__items__": [[key, value], ...]}``. RNG states are JSON integers, exact.

Checkpoints are taken between ticks: every ``checkpoint.every`` epochs (after
that epoch's evaluation, if any) and when Ctrl-C or SIGTERM stops the run (at the end of
the current chunk of at most 1000 ticks, epoch or phase; during an evaluation,
the state captured just before it, so the evaluation runs again on resume). Before a
state is saved every population is checked for NaN/inf; a non-finite state
raises :class:`~eventsim.errors.DivergenceError` instead, and the previous
checkpoint stays as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import threading
import zipfile
from pathlib import Path

import numpy as np

from . import rundir
from .engine.state import restore_simulator, simulator_state
from .errors import CheckpointError
from .units import format_ms

CHECKPOINT_FILE = "checkpoint.npz"
FORMAT = "eventsim-checkpoint/1"
_TREE = "__tree__"


# ---------------------------------------------------------------------------
# State trees: host copies, encoding into .npz


def freeze(tree):
    """A deep copy of ``tree`` with every array as a host NumPy copy (safe to keep
    while the simulator runs on)."""
    if isinstance(tree, dict):
        return {key: freeze(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(freeze(value) for value in tree)
    if isinstance(tree, np.ndarray):
        return tree.copy()
    if isinstance(tree, np.generic):
        return tree.item()
    if type(tree).__module__.startswith("cupy"):
        return tree.get()
    return tree


def _encode(node, arrays: dict):
    if isinstance(node, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = node
        return {"__array__": key}
    if isinstance(node, dict):
        if all(isinstance(k, str) for k in node) and not {"__array__", "__items__"} & set(node):
            return {k: _encode(v, arrays) for k, v in node.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in node.items()]}
    if isinstance(node, (list, tuple)):
        return [_encode(v, arrays) for v in node]
    if isinstance(node, np.generic):
        return node.item()
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise TypeError(f"cannot checkpoint a {type(node).__name__}")


def _decode(node, arrays):
    if isinstance(node, dict):
        if "__array__" in node:
            return arrays[node["__array__"]]
        if "__items__" in node:
            return {_decode(k, arrays): _decode(v, arrays) for k, v in node["__items__"]}
        return {k: _decode(v, arrays) for k, v in node.items()}
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    return node


def save(path, state: dict) -> Path:
    """Write ``state`` (a frozen tree) to ``path`` atomically."""
    arrays: dict = {}
    tree = json.dumps(_encode(state, arrays), allow_nan=True)
    with rundir.atomic_open(path, "wb") as handle:
        np.savez(handle, **{_TREE: np.frombuffer(tree.encode("utf-8"), dtype=np.uint8)},
                 **arrays)
    return Path(path)


def load(path) -> dict:
    """Read a checkpoint written by :func:`save`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint (hint: the run saves one every "
                              "checkpoint.every epochs and on Ctrl-C or SIGTERM)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files if name != _TREE}
            tree = json.loads(archive[_TREE].tobytes().decode("utf-8"))
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    state = _decode(tree, arrays)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an {FORMAT} checkpoint")
    return state


# ---------------------------------------------------------------------------
# Runner state


def capture(runner) -> dict:
    """The complete state of ``runner`` and its simulator, as a frozen tree.

    Raises :class:`~eventsim.errors.DivergenceError` if any population state is
    not finite, so that a diverged state is never saved.
    """
    sim = runner.sim
    sim._check_finite(sim.tick)
    result = runner.result
    return freeze({
        "format": FORMAT,
        "config_hash": rundir.config_hash(runner.sc.resolved()),
        "backend": runner.backend.name,
        "dt_ms": sim.dt_ms,
        "simulator": simulator_state(sim),
        "runner": {
            "position": dataclasses.asdict(runner.position),
            "epoch": runner.epoch,
            "presenter": runner.train_streams.get_state(),
            "feeds": {order: feed.get_state() for order, feed in runner.feeds.items()},
            "metrics": result.metrics,
            "summary": result.summary,
            "traces": result.traces,
            "phases": result.phases,
            "wall_time_s": runner.elapsed_s(),
        },
    })


def restore(runner, state: dict) -> None:
    """Load ``state`` (from :func:`capture`) into a fresh runner of the same scenario.

    The caller checks that the scenario is the one the state was saved for
    (:func:`eventsim.api.resume` compares ``state["config_hash"]`` with the run's
    ``config.resolved.yaml``).
    """
    restore_simulator(runner.sim, state["simulator"])
    saved = state["runner"]
    runner.position = dataclasses.replace(runner.position, **saved["position"])
    runner.epoch = int(saved["epoch"])
    runner.train_streams.set_state(saved["presenter"])
    for order, feed_state in saved["feeds"].items():
        runner.train_feed(order).set_state(feed_state)
    result = runner.result
    result.metrics = list(saved["metrics"])
    result.summary = {key: np.asarray(value) for key, value in saved["summary"].items()}
    result.traces = {key: tuple(value) for key, value in saved["traces"].items()}
    result.phases = list(saved["phases"])
    result.wall_time_s = float(saved["wall_time_s"])


def describe(state: dict) -> str:
    """``checkpoint at tick N (t = ...) in phase 'P' after E epoch(s)``."""
    sim = state["simulator"]
    tick = sim["tick"]
    return (f"checkpoint at tick {tick} (t = {format_ms(tick * state['dt_ms'])}) in phase "
            f"{sim['phase']!r} after {state['runner']['epoch']} epoch(s)")


# ---------------------------------------------------------------------------
# Writing into a run directory, Ctrl-C and SIGTERM


class Checkpointer:
    """Saves a runner's checkpoints into a run directory, with the metrics so far."""

    def __init__(self, run: rundir.RunDir) -> None:
        self.run = run

    @property
    def directory(self) -> Path:
        return self.run.path

    def save(self, state: dict) -> Path:
        """Write ``checkpoint.npz``, then ``metrics.csv`` and the ``checkpoint`` entry of
        ``meta.json`` (each atomically, in this order)."""
        path = save(self.run.path / CHECKPOINT_FILE, state)
        self.run.set_metrics(state["runner"]["metrics"])
        self.run.flush_metrics()
        sim = state["simulator"]
        self.run.write_meta(checkpoint={"tick": sim["tick"], "phase": sim["phase"],
                                        "epoch": state["runner"]["epoch"]},
                            wall_time_s=state["runner"]["wall_time_s"])
        return path


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Ctrl-C, and the polite stop of ``kill`` and batch schedulers (SLURM's time limit)."""


@contextlib.contextmanager
def stop_on_signal(runner):
    """While inside: the first Ctrl-C or SIGTERM asks ``runner`` to checkpoint and stop
    at the next chunk boundary; a second one raises KeyboardInterrupt at once.

    Outside the main thread (where signals cannot be handled) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if runner.stop_requested:
            raise KeyboardInterrupt
        runner.stop_requested = True

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
