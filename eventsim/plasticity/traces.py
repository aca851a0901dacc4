"""Synapse-side three-factor update with an eligibility trace (SCIENCE.md §4).

The local term β (DL Eq. 8: ``β_ij = (1 − z_i²) zpre_j``) is low-pass filtered
into an eligibility trace, ``τ_e de/dt = −e + β``, integrated exactly over one
tick: ``e ← e + (1 − exp(−dt/τ_e))(β − e)``. With ``τ_e = 0`` the trace is β
itself. When modulator messages ``m`` are delivered in a tick the layer applies

``ΔW = −η m ⊙ e``  (Frémaux & Gerstner 2016; with τ_e = 0 and no delay this is
DL Eq. 8 applied every tick),

optionally through SGD momentum ``v ← μ v + ΔW``, ``W ← W + v``. The rate is
``η(t) = η_base / (1 + (t − t_on)/τ_decay)`` (``τ_decay = 0``: no decay).
"""

from __future__ import annotations

import math

from ..backend import array_module


class ThreeFactorSynapses:
    """Eligibility and weight update for one layer's feed-forward weights."""

    def __init__(self, layer, *, dt_ms: float, tau_e_ms: float = 0.0, momentum: float = 0.0,
                 backend) -> None:
        self.layer = layer
        self.dtype = backend.dtype
        k, n, m = layer.W.shape
        self.trace_gain = 1.0 if tau_e_ms == 0 else 1.0 - math.exp(-dt_ms / tau_e_ms)
        self.e = None if tau_e_ms == 0 else backend.zeros((k, n, m))
        self.momentum = momentum
        self.velocity = backend.zeros((k, n, m)) if momentum else None
        self.inbox = backend.zeros((k, n))
        self.pending = False
        self.eta_base = 0.0
        self.decay_ticks = 0.0
        self.t_on = 0
        self.enabled = False

    def deliver(self, message, mask=None) -> None:
        """Accumulate a delivered modulator (K, n); ``mask`` (K,) selects trials."""
        if mask is None:
            self.inbox += message
        else:
            self.inbox += message * mask[:, None]
        self.pending = True

    def eta(self, tick: int) -> float:
        if self.decay_ticks > 0 and tick > self.t_on:
            return self.eta_base / (1.0 + (tick - self.t_on) / self.decay_ticks)
        return self.eta_base

    def step(self, tick: int) -> None:
        """Update the trace with this tick's β and apply any delivered modulator."""
        z = self.layer.z
        if self.e is None:
            if not self.pending:
                return
            post = (1.0 - z * z) * self.inbox
            dw = post[:, :, None] * self.layer.pre.z[:, None, :]
        else:
            beta = (1.0 - z * z)[:, :, None] * self.layer.pre.z[:, None, :]
            self.e += self.dtype.type(self.trace_gain) * (beta - self.e)
            if not self.pending:
                return
            dw = self.inbox[:, :, None] * self.e
        self.inbox[...] = 0.0
        self.pending = False
        if not self.enabled:
            return
        dw *= self.dtype.type(-self.eta(tick))
        if self.velocity is not None:
            self.velocity *= self.dtype.type(self.momentum)
            self.velocity += dw
            dw = self.velocity
        self.layer.W += dw

    def get_state(self) -> dict:
        """Trace, velocity, undelivered inbox and the learning switches (checkpoints)."""
        return {"e": self.e, "velocity": self.velocity, "inbox": self.inbox,
                "pending": self.pending, "eta_base": self.eta_base,
                "decay_ticks": self.decay_ticks, "t_on": self.t_on, "enabled": self.enabled}

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
