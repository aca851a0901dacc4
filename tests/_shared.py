"""Helpers shared by several test modules (imported as ``from _shared import ...``)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from eventsim.backend import get_backend
from eventsim.config.network import parse_network
from eventsim.engine.channels import Channel
from eventsim.engine.simulator import LayerRule, Simulator

REPO = Path(__file__).resolve().parents[1]
F64 = get_backend("numpy", "float64")
F32 = get_backend("numpy", "float32")

NET_ONE_LAYER = """
name: one-layer
populations:
  x: {kind: input, size: 3}
  h: {kind: layer, size: 4, tau: 2 ms, noise: 0.05}
  m: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h, init: {std: 1.0}}
  - {from: m, to: h, kind: modulatory{extra}}
"""
"""A 3-4 layer with one modulatory edge; ``{extra}`` takes extra edge fields."""


def reference_generator(seed: int, name: str) -> np.random.Generator:
    """The stream of (trial seed, name), rebuilt from its documented definition
    (independently of :class:`eventsim.backend.RandomStreams`)."""
    ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode("utf-8")),))
    return np.random.Generator(np.random.PCG64(ss))


def drive_channel(seeds, ticks: int, *, sample: int = 1, sends=None, **kw):
    """Drive a :class:`Channel` alone for ``ticks`` ticks, sending whenever it is due
    (samples of ``sample`` ticks), or where ``sends(t)`` if given; message ``t`` holds its
    send tick ``t`` in every trial.

    Returns the channel and the deliveries as ``(trial, send tick, arrival tick)``.
    """
    log = []
    pending: dict[int, list] = {}
    now = [0]

    class Sink:
        def on_send(self, tick, deliveries):
            pass

        def deliver(self, message, mask=None, sent=None):
            trials = np.ones(len(seeds), bool) if mask is None else np.asarray(mask) != 0
            assert sent == int(message[0, 0])
            for k in np.flatnonzero(trials):
                log.append((k, int(message[k, 0]), now[0]))

    def schedule(delay, callback):
        pending.setdefault(now[0] + delay, []).append(callback)

    ch = Channel("a->b", seeds=seeds, schedule=schedule,
                 **{"delay": 0, "jitter": 0, "jitter_dist": "uniform", "loss": 0.0,
                    "period": 1, **kw})
    ch.receiver = Sink()
    for t in range(ticks):
        now[0] = t
        if sends(t) if sends is not None else ch.due(t, t % sample):
            ch.send(t, np.full((len(seeds), 1), float(t)))
        for cb in pending.pop(t, []):
            cb(t)
    return ch, log


NET_WIDE_FIRST_LAYER = """
name: wide-first-layer
populations:
  x: {kind: input, size: 90}
  h: {kind: layer, size: 48, tau: 2 ms, noise: 0.05}
  o: {kind: layer, size: 3, tau: 2 ms, noise: 0.05}
  m: {kind: reservoir, size: 10}
  n: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h}
  - {from: h, to: o}
  - {from: m, to: h, kind: modulatory{extra}}
  - {from: n, to: o, kind: modulatory}
"""
"""A 90-48-3 network whose first layer is wide enough for factored updates."""
WIDE_SAMPLE_TICKS = 6


class WideFeed:
    """Seven fixed samples per trial, cycled; trial data depend only on the trial's seed."""

    def __init__(self, seeds, backend):
        g = [np.random.default_rng(900 + s) for s in seeds]
        self.x = np.stack([r.uniform(0.0, 1.0, size=(7, 90)) for r in g])
        self.y = np.stack([r.integers(0, 2, size=7) for r in g])
        self.backend = backend
        self.i = 0

    def next(self):
        s = self.i % 7
        self.i += 1
        return (self.backend.asarray(self.x[:, s]),
                self.backend.asarray(self.y[:, s, None].astype(float)), self.y[:, s])


def wide_sim(factored, *, momentum=0.9, extra="", trace=0.0, seeds=(0, 1), backend=F64,
             immediate=True, slicing=True):
    """A learning :class:`Simulator` of :data:`NET_WIDE_FIRST_LAYER` (DL Eq. 8 on both layers)."""
    window = trace if isinstance(trace, str) else None
    rule = LayerRule(gamma=4.0, memory=4, sigma_x=2.0, sigma_y=0.5, sigma_z=3.0,
                     momentum=momentum, tau_e_ms=0.0 if window else trace, window=window)
    sim = Simulator(parse_network(NET_WIDE_FIRST_LAYER.replace("{extra}", extra)),
                    seeds=list(seeds), backend=backend, dt_ms=1.0,
                    sample_ticks=WIDE_SAMPLE_TICKS, rules={"h": rule, "o": rule},
                    factored_updates=factored, immediate_modulation=immediate,
                    slicing=slicing)
    sim.set_feed(WideFeed(seeds, backend))
    sim.set_learning(layers=True, readouts=False, layer_decay_ms=40.0)
    sim.set_eta(0.05)
    return sim
