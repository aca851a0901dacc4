"""Sample feeds: what the presenter shows, one sample per trial at a time."""

from __future__ import annotations

import numpy as np

from .backend import RandomStreams
from .data.dataset import label_vectors


class SampleFeed:
    """Walks through ``x`` (K, S, D) / ``y`` (K, S) in order, or shuffled per pass.

    With ``streams`` each pass over the data uses a fresh per-trial permutation
    drawn from that trial's stream; without, samples come in stored order. Data
    shared by all trials (a broadcast view with stride 0) is kept on the device
    once.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, n_classes: int, backend,
                 streams: RandomStreams | None = None) -> None:
        self.backend = backend
        self.shared = x.strides[0] == 0
        self.x = backend.asarray(x[0] if self.shared else x)
        self.y = np.asarray(y)
        self.y_vec = backend.asarray(label_vectors(self.y[0] if self.shared else self.y, n_classes))
        self.trials, self.samples = self.y.shape
        self.streams = streams
        self._rows = np.arange(self.trials)
        self.order = None
        self.pos = 0
        self.passes = 0

    def _new_pass(self) -> None:
        if self.streams is None:
            self.order = np.broadcast_to(np.arange(self.samples), (self.trials, self.samples))
        else:
            self.order = self.streams.permutation(self.samples)
        self.pos = 0
        self.passes += 1

    def next(self):
        """(x (K, D), y_vec (K, Dy) on the device, labels (K,) on the host)."""
        if self.order is None or self.pos >= self.samples:
            self._new_pass()
        idx = self.order[:, self.pos]
        self.pos += 1
        labels = self.y[self._rows, idx]
        if self.shared:
            dev_idx = self.backend.xp.asarray(idx)
            return self.x[dev_idx], self.y_vec[dev_idx], labels
        dev_idx = self.backend.xp.asarray(idx)
        rows = self.backend.xp.asarray(self._rows)
        return self.x[rows, dev_idx], self.y_vec[rows, dev_idx], labels

    def get_state(self) -> dict:
        """Position in the current pass (the streams are saved by their owner)."""
        return {"order": self.order, "pos": self.pos, "passes": self.passes}

    def set_state(self, state: dict) -> None:
        self.order = None if state["order"] is None else np.asarray(state["order"])
        self.pos = int(state["pos"])
        self.passes = int(state["passes"])

class SignalFeed:
    """Walks through signal data (DL §6.1: ``x``, continuous ``y``, named ``signals``).

    Like :class:`SampleFeed`, but the label vector is the continuous ``y``
    itself and there are no class labels (``labels`` are 0). ``signal(name)``
    is the current sample's value of a named signal, for clamped layers.
    """

    def __init__(self, data, backend, streams: RandomStreams | None = None) -> None:
        self.backend = backend
        self.x = backend.asarray(data.x)
        self.y = backend.asarray(data.y)
        self.signals = {name: backend.asarray(v) for name, v in data.signals.items()}
        self.trials, self.samples = data.x.shape[:2]
        self.streams = streams
        self._rows = backend.xp.arange(self.trials)
        self._labels = np.zeros(self.trials, dtype=np.int64)
        self.order = None
        self.pos = 0
        self._idx = None

    def next(self):
        """(x (K, D), y (K, Dy) on the device, labels (K,) = 0 on the host)."""
        if self.order is None or self.pos >= self.samples:
            order = (np.broadcast_to(np.arange(self.samples), (self.trials, self.samples))
                     if self.streams is None else self.streams.permutation(self.samples))
            self.order = self.backend.xp.asarray(order)
            self.pos = 0
        self._idx = self.order[:, self.pos]
        self.pos += 1
        return self.x[self._rows, self._idx], self.y[self._rows, self._idx], self._labels

    def signal(self, name: str):
        """The current sample's value of signal ``name``, (K, dim)."""
        return self.signals[name][self._rows, self._idx]

    def get_state(self) -> dict:
        """Position in the current pass (the streams are saved by their owner)."""
        order = None if self.order is None else self.backend.to_host(self.order)
        return {"order": order, "pos": self.pos}

    def set_state(self, state: dict) -> None:
        self.order = None if state["order"] is None else self.backend.xp.asarray(state["order"])
        self.pos = int(state["pos"])
        if self.order is not None and self.pos > 0:
            self._idx = self.order[:, self.pos - 1]
