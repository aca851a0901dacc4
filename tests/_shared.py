"""Helpers shared by several test modules (imported as ``from _shared import ...``)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from eventsim.backend import get_backend
from eventsim.engine.channels import Channel

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
