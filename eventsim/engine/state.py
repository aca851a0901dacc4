"""The complete state of a :class:`~eventsim.engine.simulator.Simulator`, and its restoration.

SimPy processes are generators and cannot be saved. A checkpoint therefore holds
everything the processes act on; restoring builds a new simulator from the same
configuration, copies the state into it and restarts its engine at the saved
tick (:meth:`Simulator.restart_clock`): every periodic process first fires at
its next due tick and each channel re-schedules its messages in flight. With
the fixed order of the stages within a tick the run then continues bit for bit.

The state holds:

* the clock tick, the phase name, the start of the current sample, the number
  of samples presented and the current labels;
* every population's :meth:`get_state` (state arrays, weights, noise streams
  with their current block of draws);
* the working memories and the analytic ξ coefficient rows of the current sample;
* the three-factor synapses (trace, momentum, inbox, rate and switches) and the
  reservoir readout learning (low-pass filters, switches);
* the channels (messages in flight, RNG states, send and delivery records);
* probes and sample-window recorders so far, the objective log, and whether
  the reservoirs drive the layers.

Only the per-tick ξ cache is left out: it is keyed by tick and holds nothing
for the restart tick. Arrays are returned as live references; copy them (see
:func:`eventsim.checkpoint.freeze`) before the simulator runs on.
"""

from __future__ import annotations

import numpy as np

from .simulator import Simulator


def _stack(values: list) -> np.ndarray | None:
    return np.stack(values) if values else None


def _unstack(values) -> list:
    return [] if values is None else list(np.asarray(values))


def simulator_state(sim: Simulator) -> dict:
    """The state of ``sim`` between two ticks (after ``sim.run``), as nested plain data."""
    log = sim.objective_log
    return {
        "tick": sim.tick,
        "phase": sim.phase,
        "sample_start": sim.sample_start,
        "samples_presented": sim.samples_presented,
        "samples_remembered": sim.samples_remembered,
        "labels": sim.labels,
        "current_labels": sim.current_labels,
        "reservoir_drives_layers": sim.reservoir_drives_layers,
        "populations": {name: pop.get_state() for name, pop in sim.populations.items()},
        "memories": {name: mem.get_state() for name, mem in sim.memories.items()},
        "xi_coef": {name: src.coef for name, src in sim.xi_sources.items()},
        "synapses": {name: syn.get_state() for name, syn in sim.synapses.items()},
        "readouts": {name: ro.get_state() for name, ro in sim.readouts.items()},
        "trackers": {name: tr.get_state() for name, tr in sim.trackers.items()},
        "channels": {layer: ch.get_state() for layer, ch in sim.channels.items()},
        "probes": [{"name": p.name, "ticks": np.asarray(p.ticks, dtype=np.int64),
                    "values": _stack(p.values)} for p in sim.probes],
        "windows": {name: {"acc": w.acc, "means": _stack(w.means), "enabled": w.enabled}
                    for name, w in sim.windows.items()},
        "objective_log": {"keys": [[tick, layer, metric] for tick, layer, metric, _ in log],
                          "values": _stack([value for *_, value in log])},
    }


def restore_simulator(sim: Simulator, state: dict) -> None:
    """Load ``state`` (from :func:`simulator_state`) into ``sim``, built from the same
    configuration, and restart its clock at the saved tick."""
    xp = sim.backend.xp
    sim.restart_clock(state["tick"])
    sim.phase = state["phase"]
    sim.sample_start = int(state["sample_start"])
    sim.samples_presented = int(state["samples_presented"])
    # checkpoints before the counter existed: the objective log's phase may shift once
    sim.samples_remembered = int(state.get("samples_remembered", state["samples_presented"]))
    sim.labels[...] = xp.asarray(state["labels"])
    sim.current_labels = np.asarray(state["current_labels"])
    sim.reservoir_drives_layers = bool(state["reservoir_drives_layers"])
    _same_keys("populations", sim.populations, state["populations"])
    for name, pop in sim.populations.items():
        pop.set_state(state["populations"][name])
    for name, mem in sim.memories.items():
        mem.set_state(state["memories"][name])
    for name, src in sim.xi_sources.items():
        coef = state["xi_coef"][name]
        src.coef = None if coef is None else xp.asarray(coef)
    for name, syn in sim.synapses.items():
        syn.set_state(state["synapses"][name])
    for name, ro in sim.readouts.items():
        ro.set_state(state["readouts"][name])
    for name, tr in sim.trackers.items():
        tr.set_state(state["trackers"][name])
    for layer, ch in sim.channels.items():
        saved = dict(state["channels"][layer])
        saved["in_flight"] = {int(when): [(xp.asarray(msg), None if mask is None
                                           else xp.asarray(mask), int(sent))
                                          for msg, mask, sent in entries]
                              for when, entries in saved["in_flight"].items()}
        ch.set_state(saved, sim.tick)
    if [p.name for p in sim.probes] != [p["name"] for p in state["probes"]]:
        raise ValueError("the checkpoint's probes differ from the simulator's")
    for probe, saved in zip(sim.probes, state["probes"], strict=True):
        probe.ticks = np.asarray(saved["ticks"]).tolist()
        probe.values = _unstack(saved["values"])
    for name, saved in state["windows"].items():
        window = sim.window(name)
        window.acc[...] = xp.asarray(saved["acc"])
        window.means = _unstack(saved["means"])
        window.enabled = bool(saved["enabled"])
    log = state["objective_log"]
    sim.objective_log[:] = [(int(tick), layer, metric, value) for (tick, layer, metric), value
                            in zip(log["keys"], _unstack(log["values"]), strict=True)]


def _same_keys(what: str, live: dict, saved: dict) -> None:
    if set(live) != set(saved):
        raise ValueError(f"the checkpoint's {what} ({', '.join(sorted(saved))}) differ from "
                         f"the simulator's ({', '.join(sorted(live))})")
