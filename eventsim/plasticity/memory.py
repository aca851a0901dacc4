"""Working memory of the DL rule (SCIENCE.md §2): the last N samples, phase-aligned.

Index 0 is the current sample; indices 1..N−1 are the previous samples. For
every sample the buffer keeps its input ``x``, its label vector ``y`` and the
layer output ``z`` at every tick (phase) of its presentation, so the entries
used at phase φ of the current sample are the past samples *at the same phase*
φ. Until N samples have been seen only the filled entries are used.
"""

from __future__ import annotations

import numpy as np


class WorkingMemory:
    """Ring buffer of x (K, N, Dx), y (K, N, Dy) and z (K, N, T, n)."""

    def __init__(self, capacity: int, sample_ticks: int, x_dim: int, y_dim: int, z_dim: int,
                 *, backend, trials: int) -> None:
        self.capacity = capacity
        self.xp = backend.xp
        self.x = backend.zeros((trials, capacity, x_dim))
        self.y = backend.zeros((trials, capacity, y_dim))
        self.z = backend.zeros((trials, capacity, sample_ticks, z_dim))
        self.slot = -1
        self.count = 0
        self.order = None
        """Slots from newest (the current sample) to oldest, on the backend device."""

    def new_sample(self, x, y) -> None:
        """Start a new sample: it takes the oldest slot and becomes index 0."""
        self.slot = (self.slot + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        self.x[:, self.slot] = x
        self.y[:, self.slot] = y
        host = (self.slot - np.arange(self.count)) % self.capacity
        self.order = self.xp.asarray(host)

    def write_z(self, phase: int, z) -> None:
        """Store the layer output of the current sample at ``phase``."""
        self.z[:, self.slot, phase] = z

    def xy(self):
        """(x, y) of the filled entries, newest first: (K, n_filled, D)."""
        return self.x[:, self.order], self.y[:, self.order]

    def z_at(self, phase: int):
        """z of the filled entries at ``phase``, newest first: (K, n_filled, n)."""
        return self.z[:, self.order, phase]

    def get_state(self) -> dict:
        return {"x": self.x, "y": self.y, "z": self.z, "slot": self.slot, "count": self.count}

    def set_state(self, state: dict) -> None:
        self.x[...] = self.xp.asarray(state["x"])
        self.y[...] = self.xp.asarray(state["y"])
        self.z[...] = self.xp.asarray(state["z"])
        self.slot = int(state["slot"])
        self.count = int(state["count"])
        host = (self.slot - np.arange(self.count)) % self.capacity
        self.order = self.xp.asarray(host)
