"""Helpers shared by several test modules (imported as ``from _shared import ...``)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from eventsim.backend import get_backend

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
