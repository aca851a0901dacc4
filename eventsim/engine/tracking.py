"""How well a reservoir readout tracks its teacher ξ (DL §6.1, Fig. 4).

A :class:`ReadoutTracker` keeps, for given windows of ticks, the readout ``r_o``
of a reservoir and the true (analytic, DL Eq. 8) ξ of the layer it serves,
tick by tick, on the device. When a window is complete it is scored per trial,
per output element ``i`` over the window's ticks ``t``, then averaged over
the elements:

* correlation ``corr_i = Pearson(r_o,i(t), ξ_i(t))``
* normalised MSE ``nmse_i = Σ_t (r_o,i − ξ_i)² / Σ_t (ξ_i − mean_t ξ_i)²``
  (0 is perfect; 1 is no better than the window's mean of ξ)

An element whose ξ or readout is constant over the window has no correlation
(NaN). The recorded windows are also returned as traces ``<res>.readout`` and
``<res>.xi_true`` for the DL Fig. 4 plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Window:
    """Ticks ``[start, end)`` labelled ``(phase, where)``; ``where`` is 'start' or 'end'."""

    phase: str
    where: str
    start: int
    end: int
    readout: object = None
    xi: object = None
    scores: dict = field(default_factory=dict)


def score(readout: np.ndarray, xi: np.ndarray) -> dict[str, np.ndarray]:
    """Correlation and NMSE of ``readout`` vs ``xi``, both (T, K, D): each (K,).

    Sums run over a contiguous time axis per (trial, element), so a trial's
    score does not depend on how many trials are batched with it.
    """
    r = np.ascontiguousarray(np.moveaxis(np.asarray(readout, dtype=np.float64), 0, -1))
    x = np.ascontiguousarray(np.moveaxis(np.asarray(xi, dtype=np.float64), 0, -1))
    rc = r - r.mean(axis=-1, keepdims=True)
    xc = x - x.mean(axis=-1, keepdims=True)
    sxx = (xc * xc).sum(axis=-1)
    srr = (rc * rc).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (rc * xc).sum(axis=-1) / np.sqrt(srr * sxx)
        nmse = ((r - x) ** 2).sum(axis=-1) / sxx
    return {"corr": corr.mean(axis=-1), "nmse": nmse.mean(axis=-1)}


class ReadoutTracker:
    """Records reservoir ``res``'s readout and ``teacher(tick)`` (its layer's ξ) in windows."""

    def __init__(self, reservoir: str, layer: str, readout_of, teacher, backend) -> None:
        self.reservoir = reservoir
        self.layer = layer
        self.readout_of = readout_of
        self.teacher = teacher
        self.backend = backend
        self.pending: list[Window] = []
        self.done: list[Window] = []

    def add(self, phase: str, where: str, start: int, end: int) -> None:
        """Record ticks ``[start, end)`` and score them as ``(phase, where)``."""
        if end > start:
            self.pending.append(Window(phase, where, int(start), int(end)))

    @property
    def active(self) -> bool:
        return bool(self.pending)

    def record(self, tick: int) -> None:
        """Store this tick's readout and ξ in every window that holds ``tick``."""
        finished = []
        for w in self.pending:
            if not w.start <= tick < w.end:
                continue
            r_o, xi = self.readout_of(), self.teacher(tick)
            if w.readout is None:
                shape = (w.end - w.start, *r_o.shape)
                w.readout = self.backend.zeros(shape)
                w.xi = self.backend.zeros(shape)
            w.readout[tick - w.start] = r_o
            w.xi[tick - w.start] = xi
            if tick == w.end - 1:
                finished.append(w)
        for w in finished:
            self.pending.remove(w)
            w.readout = self.backend.to_host(w.readout)
            w.xi = self.backend.to_host(w.xi)
            w.scores = score(w.readout, w.xi)
            self.done.append(w)

    def get_state(self) -> dict:
        """Windows pending and done, with what they recorded so far (for checkpoints)."""
        def plain(w: Window) -> dict:
            out = {"phase": w.phase, "where": w.where, "start": w.start, "end": w.end,
                   "readout": None, "xi": None, "scores": dict(w.scores)}
            if w.readout is not None:
                out["readout"] = self.backend.to_host(w.readout)
                out["xi"] = self.backend.to_host(w.xi)
            return out
        return {"pending": [plain(w) for w in self.pending], "done": [plain(w) for w in self.done]}

    def set_state(self, state: dict) -> None:
        def window(d: dict, on_device: bool) -> Window:
            w = Window(d["phase"], d["where"], int(d["start"]), int(d["end"]))
            if d["readout"] is not None:
                convert = self.backend.asarray if on_device else np.asarray
                w.readout, w.xi = convert(d["readout"]), convert(d["xi"])
            w.scores = {k: np.asarray(v) for k, v in d["scores"].items()}
            return w
        self.pending = [window(d, True) for d in state["pending"]]
        self.done = [window(d, False) for d in state["done"]]

    def traces(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{'<res>.readout': (ticks, values), '<res>.xi_true': ...}`` over the scored windows
        (ticks in order; a tick in two windows appears once)."""
        if not self.done:
            return {}
        ticks = np.concatenate([np.arange(w.start, w.end) for w in self.done])
        readout = np.concatenate([w.readout for w in self.done])
        xi = np.concatenate([w.xi for w in self.done])
        ticks, first = np.unique(ticks, return_index=True)
        return {f"{self.reservoir}.readout": (ticks, readout[first]),
                f"{self.reservoir}.xi_true": (ticks, xi[first])}
