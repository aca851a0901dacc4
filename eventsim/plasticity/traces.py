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


class ThreeFactorSynapses:
    """Eligibility and weight update for one layer's feed-forward weights."""

    def __init__(self, layer, *, dt_ms: float, tau_e_ms: float = 0.0, momentum: float = 0.0,
                 backend) -> None:
        self.layer = layer
        self.dtype = backend.dtype
        self.xp = backend.xp
        k, n, m = layer.W.shape
        self.trace_gain = 1.0 if tau_e_ms == 0 else 1.0 - math.exp(-dt_ms / tau_e_ms)
        self.e = None if tau_e_ms == 0 else backend.zeros((k, n, m))
        self.momentum = momentum
        self.velocity = backend.zeros((k, n, m)) if momentum else None
        self.inbox = backend.zeros((k, n))
        self.dw = backend.zeros((k, n, m))
        """Work buffer of ΔW (the step allocates nothing of the weights' size)."""
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
        dw = self.dw
        if self.e is not None:
            beta = self.xp.multiply((1.0 - z * z)[:, :, None], self.layer.pre.z[:, None, :], out=dw)
            beta -= self.e
            beta *= self.dtype.type(self.trace_gain)
            self.e += beta
        if not self.pending:
            return
        if self.enabled:
            if self.e is None:
                post = (1.0 - z * z) * self.inbox
                self.xp.multiply(post[:, :, None], self.layer.pre.z[:, None, :], out=dw)
            else:
                self.xp.multiply(self.inbox[:, :, None], self.e, out=dw)
            dw *= self.dtype.type(-self.eta(tick))
            if self.velocity is not None:
                self.velocity *= self.dtype.type(self.momentum)
                self.velocity += dw
                dw = self.velocity
            self.layer.W += dw
        self.inbox[...] = 0.0
        self.pending = False

    def get_state(self) -> dict:
        return {"e": self.e, "velocity": self.velocity}

    def set_state(self, state: dict) -> None:
        if self.e is not None:
            self.e[...] = state["e"]
        if self.velocity is not None:
            self.velocity[...] = state["velocity"]
