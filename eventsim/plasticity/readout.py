"""Reward-modulated Hebbian readout learning, DL Eq. 10 with the filters of DL Eq. 13
(Hoerzer, Legenstein & Maass 2014). Applied every tick while the readout learns:

* ``P = −||r_o − ξ||²`` (ξ: the teacher, the analytic DL Eq. 8 signal)
* low-pass filters, updated with the current value first:
  ``P̄ ← (1 − dt/τ_lpf) P̄ + (dt/τ_lpf) P``, ``r̄_o ← (1 − dt/τ_lpf) r̄_o + (dt/τ_lpf) r_o``
* ``M = 1[P > P̄]``
* ``ΔW_o = η(t) M (r_o − r̄_o) rᵀ``, ``η(t) = η0 / (1 + (t − t_on)/τ_decay)`` for t > t_on
  (else 0), with ``t_on`` the tick at which the readout started learning.

``r`` are the reservoir's noisy rates and ``r_o`` its readout including the
exploration noise ζ_o. The filters start at 0 and run only while the readout
learns; when learning resumes they continue from their last values.

``reward='per_output'`` is a variant that is *not* the paper's: every readout
element ``o`` gets its own performance ``P_o = −(r_o,o − ξ_o)²``, filter ``P̄_o``
and gate ``M_o = 1[P_o > P̄_o]`` instead of the one scalar reward of the whole
readout (the default, ``'total'``, DL Eq. 10).
"""

from __future__ import annotations


class ReadoutLearning:
    """Filters ``P̄`` (K,) (per output: (K, n_out)) and ``r̄_o`` (K, n_out), the update of ``W_o``."""

    def __init__(self, reservoir, *, eta0: float, tau_decay_ticks: float, tau_lpf_ticks: float,
                 backend, reward: str = "total") -> None:
        if reward not in ("total", "per_output"):
            raise ValueError(f"reward must be 'total' or 'per_output', not {reward!r}")
        self.res = reservoir
        self.xp = backend.xp
        trials = reservoir.r_o.shape[0]
        self.eta0 = eta0
        self.tau_decay = tau_decay_ticks
        self.a = backend.dtype.type(1.0 / tau_lpf_ticks)
        self.per_output = reward == "per_output"
        self.p_bar = backend.zeros(reservoir.r_o.shape if self.per_output else (trials,))
        self.ro_bar = backend.zeros(reservoir.r_o.shape)
        self.t_on = 0
        self.enabled = False
        """Whether the readout learns; the engine calls :meth:`step` only then."""
        self.dtype = backend.dtype

    def eta(self, tick: int) -> float:
        if tick <= self.t_on:
            return 0.0
        if self.tau_decay <= 0:
            return self.eta0
        return self.eta0 / (1.0 + (tick - self.t_on) / self.tau_decay)

    def step(self, tick: int, target) -> None:
        """One tick of DL Eq. 10 against ``target`` (K, n_out)."""
        xp = self.xp
        r_o = self.res.r_o
        err = r_o - target
        perf = -(err * err) if self.per_output else -xp.sum(err * err, axis=-1)
        a = self.a
        self.p_bar += a * (perf - self.p_bar)
        self.ro_bar += a * (r_o - self.ro_bar)
        eta = self.eta(tick)
        if eta == 0.0:
            return
        gate = (perf > self.p_bar).astype(self.dtype)
        if not self.per_output:
            gate = gate[:, None]
        post = (self.dtype.type(eta) * gate) * (r_o - self.ro_bar)
        self.res.W_o += post[:, :, None] * self.res.r[:, None, :]

    def get_state(self) -> dict:
        """The low-pass filters and the learning switches (checkpoints)."""
        return {"p_bar": self.p_bar, "ro_bar": self.ro_bar, "t_on": self.t_on,
                "enabled": self.enabled}

    def set_state(self, state: dict) -> None:
        self.p_bar[...] = self.xp.asarray(state["p_bar"])
        self.ro_bar[...] = self.xp.asarray(state["ro_bar"])
        self.t_on = int(state["t_on"])
        self.enabled = bool(state["enabled"])
