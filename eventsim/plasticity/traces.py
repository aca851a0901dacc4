"""Synapse-side three-factor update with an eligibility trace (SCIENCE.md §4).

The local term of DL Eq. 8, ``β_ij = (1 − z_i²) zpre_j``, is turned into an
eligibility ``e`` and every modulator message ``m`` delivered in a tick moves
the weights by

``ΔW = −η Σ_messages m ⊙ e_message``  (Frémaux & Gerstner 2016; with e = β of
the current tick and no delay this is DL Eq. 8 applied every tick),

optionally through SGD momentum ``v ← μ v + ΔW``, ``W ← W + v``. The rate is
``η(t) = η_base / (1 + (t − t_on)/τ_decay)`` (``τ_decay = 0``: no decay).

Which ``e`` a message meets is the trace variant (``rule.trace``):

* **exponential** (``rule.trace`` is a duration τ_e): ``τ_e de/dt = −e + β``,
  integrated exactly over one tick, ``e ← e + (1 − exp(−dt/τ_e))(β − e)``. A
  message meets the trace of the tick it arrives in. ``τ_e = 0`` means
  ``e = β`` (the instant rule); the trace tends to it as ``τ_e → 0``.
* **fixed window** ``tick``: a message meets the β of the tick that sent it.
  The synapse keeps the two factors of that β, ``1 − z²`` and ``zpre``, for
  every message still in flight, so a delayed message assigns its credit as the
  instant rule would have, only later; at zero delay it *is* the instant rule,
  bit for bit (the same arithmetic).
* **fixed window** ``sample``: a message meets the mean β over the presentation
  window of the sample that sent it, from the sample's first tick to the send
  tick (with ``broadcast: sample`` at the last phase, the whole window).

A window copy is taken in the sending tick and freed after the message's last
delivery (trials may receive it at different ticks, or lose it).

With ``e = β`` on a layer whose input is held for the sample (the first layer),
``factored=True`` keeps the sample's updates as rank-1 factors
(:mod:`eventsim.plasticity.factored`) and writes ``W`` once per sample.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import array_module
from .factored import FactoredUpdates
from .hsic import beta as local_beta

WINDOWS = ("tick", "sample")


class ThreeFactorSynapses:
    """Eligibility and weight update for one layer's feed-forward weights.

    ``tau_e_ms`` is the exponential trace's time constant; ``window`` ('tick' or
    'sample') selects a fixed-window variant instead. ``factored`` keeps each
    sample's updates as rank-1 factors (only with ``e = β``, for a layer whose
    presynaptic rates are constant within a sample).
    """

    def __init__(self, layer, *, dt_ms: float, tau_e_ms: float = 0.0, window: str | None = None,
                 momentum: float = 0.0, factored: bool = False, backend) -> None:
        if window is not None and window not in WINDOWS:
            raise ValueError(f"unknown eligibility window {window!r}")
        self.layer = layer
        self.dtype = backend.dtype
        self.xp = backend.xp
        k, n, m = layer.W.shape
        self.window = window
        self.momentum = momentum
        self.velocity = backend.zeros((k, n, m)) if momentum else None
        exponential = window is None and tau_e_ms > 0
        self.trace_gain = self.dtype.type(1.0 - math.exp(-dt_ms / tau_e_ms) if exponential
                                          else 1.0)
        self.e = backend.zeros((k, n, m)) if exponential else None
        self.inbox = backend.zeros((k, n))
        if factored and (window is not None or exponential):
            raise ValueError("factored updates need the instant eligibility e = β")
        self.factored = FactoredUpdates(layer, self.velocity, momentum, backend) if factored \
            else None
        layer.updates = self.factored
        self.kernels = backend.kernels if window is None and not exponential else None
        """The compiled instant update (:mod:`eventsim.compiled`) where it applies, else None."""
        self.dw = None if factored else backend.zeros((k, n, m))
        """Work buffer of ΔW (the step allocates nothing of the weights' size)."""
        self.pending = False
        # fixed windows: deliveries of this tick, deliveries still due per send tick,
        # the eligibility copy per send tick, and the running sum of the current sample
        self.queue: list[tuple] = []
        self.expected: dict[int, int] = {}
        self.tags: dict[int, object] = {}
        self.window_sum = backend.zeros((k, n, m)) if window == "sample" else None
        self.window_len = 0
        self.eta_base = 0.0
        self.decay_ticks = 0.0
        self.t_on = 0
        self.enabled = False

    # -------------------------------------------------------- channel side
    def on_send(self, tick: int, deliveries: int) -> None:
        """A message was sent at ``tick``; it will be delivered in ``deliveries`` events."""
        if self.window is not None and deliveries:
            self.expected[tick] = deliveries

    def deliver(self, message, mask=None, sent: int | None = None) -> None:
        """Accept a delivered modulator (K, n) sent at tick ``sent``; ``mask`` (K,)
        selects the trials it reaches."""
        if self.window is not None:
            self.queue.append((message, mask, sent))
            return
        if mask is None:
            self.inbox += message
        else:
            self.inbox += message * mask[:, None]
        self.pending = True

    def new_sample(self) -> None:
        """A new sample starts: commit factored updates, reset the ``sample`` window.

        Called before the new input is presented."""
        if self.factored is not None:
            self.factored.commit()
        if self.window_sum is not None:
            self.window_sum[...] = 0.0
            self.window_len = 0

    # ------------------------------------------------------------- update
    def eta(self, tick: int) -> float:
        if self.decay_ticks > 0 and tick > self.t_on:
            return self.eta_base / (1.0 + (tick - self.t_on) / self.decay_ticks)
        return self.eta_base

    def neg_etas(self, t0: int, count: int):
        """``−η(t)`` of :meth:`eta` for ticks ``t0 … t0+count−1``, in the state dtype (host)."""
        return np.array([-self.eta(t) for t in range(t0, t0 + count)]).astype(self.dtype)

    def _post(self):
        z = self.layer.z
        return 1.0 - z * z

    def step(self, tick: int) -> None:
        """Update the eligibility with this tick's β and apply the delivered modulators."""
        if self.window is None:
            dw = self._step_trace(tick)
        else:
            dw = self._step_window(tick)
        if dw is not None:
            self._apply(dw, tick)

    def _step_trace(self, tick: int):
        xp, dw = self.xp, self.dw  # dw: a preallocated (K, n, m) buffer
        if self.e is not None:  # e += gain (β − e), in place
            xp.multiply(self._post()[:, :, None], self.layer.pre.z[:, None, :], out=dw)
            dw -= self.e
            dw *= self.trace_gain
            self.e += dw
        if not self.pending:
            return None
        if self.instant_compiled:
            self.apply_instant(self.inbox, tick)
            self.pending = False
            return None
        if self.factored is not None:  # e = β, kept as (−η m ⊙ (1 − z²)) xᵀ
            a = self._post()
            a *= self.inbox
            self.inbox[...] = 0.0
            self.pending = False
            if self.enabled:
                a *= self.dtype.type(-self.eta(tick))
                self.factored.add(a)
            return None
        if self.e is None:  # e = β = (1 − z²) zpreᵀ, factored
            xp.multiply((self._post() * self.inbox)[:, :, None], self.layer.pre.z[:, None, :],
                        out=dw)
        else:
            xp.multiply(self.inbox[:, :, None], self.e, out=dw)
        self.inbox[...] = 0.0
        self.pending = False
        return dw

    @property
    def instant_compiled(self) -> bool:
        """Whether :meth:`apply_instant` applies (``e = β`` with the compiled kernels)."""
        return self.kernels is not None

    def apply_instant(self, message, tick: int) -> None:
        """DL Eq. 8 with ``e = β`` of this tick for the modulator ``message`` (K, n), in one
        compiled loop (bit for bit as the array code): ``ΔW = −η (m ⊙ (1 − z²)) zpreᵀ``
        through momentum, or into the pending factors of a factored layer. Nothing is
        applied while learning is off. ``message`` is consumed (zeroed)."""
        neg_eta = self.dtype.type(-self.eta(tick))
        if self.factored is not None:
            if self.enabled:
                self.factored.add_delivered(message, self.layer.z, neg_eta)
            else:
                message[...] = 0.0
            return
        v = self.velocity
        self.kernels.instant_update(  # without momentum W stands in for v, unused
            self.layer.W, self.layer.W if v is None else v, message, self.layer.z,
            self.layer.pre.z, neg_eta, self.dtype.type(self.momentum), v is not None,
            self.enabled)

    def _step_window(self, tick: int):
        tagged = tick in self.expected
        if self.window_sum is not None:
            self.window_sum += local_beta(self.layer.z, self.layer.pre.z)
            self.window_len += 1
            if tagged:
                self.tags[tick] = self.window_sum / self.dtype.type(self.window_len)
        elif tagged:  # β of this tick, kept as its two factors
            self.tags[tick] = (self._post(), self.layer.pre.z.copy())
        if not self.queue:
            return None
        dw = None
        for message, mask, sent in self.queue:
            m = message if mask is None else message * mask[:, None]
            tag = self.tags[sent]
            if self.window_sum is None:
                term = (tag[0] * m)[:, :, None] * tag[1][:, None, :]
            else:
                term = m[:, :, None] * tag
            dw = term if dw is None else dw + term
            self.expected[sent] -= 1
            if not self.expected[sent]:
                del self.expected[sent], self.tags[sent]
        self.queue.clear()
        return dw

    def _apply(self, dw, tick: int) -> None:
        if not self.enabled:
            return
        dw *= self.dtype.type(-self.eta(tick))
        if self.velocity is not None:
            self.velocity *= self.dtype.type(self.momentum)
            self.velocity += dw
            dw = self.velocity
        self.layer.W += dw

    def get_state(self) -> dict:
        """Trace, velocity, undelivered inbox, window tags and the learning switches.

        With factored updates the velocity is the one at the start of the sample; the
        layer's state holds the pending factors."""
        return {"e": self.e, "velocity": self.velocity, "inbox": self.inbox,
                "pending": self.pending, "eta_base": self.eta_base,
                "decay_ticks": self.decay_ticks, "t_on": self.t_on, "enabled": self.enabled,
                "expected": dict(self.expected), "tags": dict(self.tags),
                "window_sum": self.window_sum, "window_len": self.window_len}

    def set_state(self, state: dict) -> None:
        xp = array_module(self.inbox)
        if self.e is not None:
            self.e[...] = xp.asarray(state["e"])
        if self.velocity is not None:
            self.velocity[...] = xp.asarray(state["velocity"])
        self.inbox[...] = xp.asarray(state["inbox"])
        self.pending = bool(state["pending"])
        self.eta_base = float(state["eta_base"])
        self.decay_ticks = float(state["decay_ticks"])
        self.t_on = int(state["t_on"])
        self.enabled = bool(state["enabled"])
        self.expected = {int(k): int(v) for k, v in state["expected"].items()}
        self.tags = {int(k): _as_device(xp, v) for k, v in state["tags"].items()}
        if self.window_sum is not None:
            self.window_sum[...] = xp.asarray(state["window_sum"])
            self.window_len = int(state["window_len"])


def _as_device(xp, tag):
    """A restored window tag: one array, or the (post, pre) factor pair."""
    if isinstance(tag, list | tuple):
        return tuple(xp.asarray(t) for t in tag)
    return xp.asarray(tag)
