"""Working memory of the DL rule (SCIENCE.md §2): the last N samples, phase-aligned.

Index 0 is the current sample; indices 1..N−1 are the previous samples. For
every sample the memory keeps its input ``x``, its label vector ``y`` and each
learning layer's output ``z`` at every tick (phase) of its presentation, so the
entries used at phase φ of the current sample are the past samples *at the same
phase* φ. Until N samples have been seen only the filled entries are used.

Layout (for speed; the order of entries is the rule's order). The buffers are
kept newest first, so the rule reads contiguous views and never gathers:
``x (K, N, Dx)``, ``y (K, N, Dy)`` and ``z (T, K, N, n)``. A new sample shifts
every entry one place towards the old end (the oldest falls off) once per
sample, which costs less than one gather per tick. ``x`` and ``y`` are the same
for every layer, so all layers with the same capacity share one
:class:`SampleMemory`.
"""

from __future__ import annotations

from ..backend import array_module


class SampleMemory:
    """Inputs ``x (K, N, Dx)`` and label vectors ``y (K, N, Dy)`` of the last N samples."""

    def __init__(self, capacity: int, x_dim: int, y_dim: int, *, backend, trials: int) -> None:
        self.capacity = capacity
        self.x = backend.zeros((trials, capacity, x_dim))
        self.y = backend.zeros((trials, capacity, y_dim))
        self.count = 0
        self.version = 0
        """Counts samples pushed; kernels of the filled entries may be cached per version."""

    def push(self, x, y) -> None:
        """A new sample becomes entry 0; the others move one place back."""
        self.x[:, 1:] = self.x[:, :-1]
        self.y[:, 1:] = self.y[:, :-1]
        self.x[:, 0] = x
        self.y[:, 0] = y
        self.count = min(self.count + 1, self.capacity)
        self.version += 1

    def xy(self):
        """(x, y) of the filled entries, newest first: (K, n_filled, D)."""
        return self.x[:, :self.count], self.y[:, :self.count]

    def get_state(self) -> dict:
        return {"x": self.x, "y": self.y, "count": self.count}

    def set_state(self, state: dict) -> None:
        xp = array_module(self.x)
        self.x[...] = xp.asarray(state["x"])
        self.y[...] = xp.asarray(state["y"])
        self.count = int(state["count"])
        self.version += 1


class WorkingMemory:
    """One layer's memory: the shared :class:`SampleMemory` plus its outputs ``z (T, K, N, n)``."""

    def __init__(self, samples: SampleMemory, sample_ticks: int, z_dim: int, *, backend,
                 trials: int) -> None:
        self.samples = samples
        self.capacity = samples.capacity
        self.z = backend.zeros((sample_ticks, trials, samples.capacity, z_dim))
        self._full = [self.z[phase] for phase in range(sample_ticks)]
        """``z_at(phase)`` of a full memory: views made once (``z`` only changes in place)."""

    @property
    def count(self) -> int:
        return self.samples.count

    def new_sample(self) -> None:
        """Make room for the current sample's outputs (call after ``samples.push``)."""
        self.z[:, :, 1:] = self.z[:, :, :-1]

    def write_z(self, phase: int, z) -> None:
        """Store the layer output of the current sample at ``phase``."""
        self.z[phase, :, 0] = z

    def xy(self):
        """(x, y) of the filled entries, newest first: (K, n_filled, D)."""
        return self.samples.xy()

    def z_at(self, phase: int):
        """z of the filled entries at ``phase``, newest first: (K, n_filled, n), a view."""
        count = self.samples.count
        if count == self.capacity:
            return self._full[phase]
        return self.z[phase, :, :count]

    def get_state(self) -> dict:
        return {**self.samples.get_state(), "z": self.z}

    def set_state(self, state: dict) -> None:
        self.samples.set_state(state)
        self.z[...] = array_module(self.z).asarray(state["z"])
