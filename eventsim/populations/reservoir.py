"""Recurrent reservoir with a linear readout, DL Eq. 9, batched over trials.

* ``τ_r du/dt = −u + λ W_r r + W_in r_in + W_fb r_o``  (explicit Euler, step ``dt``)
* ``r = tanh(u) + ζ_r``,   ``r_o = W_o r + ζ_o``  (noises uniform in ±ζ)

Initialisation (SCIENCE.md §2): ``W_r`` = Bernoulli(p) mask × N(0, 1/(pN)) with
``p`` the *density*; ``W_in``, ``W_fb`` ~ U(−1, 1); ``W_o = 0``. The chaos level
λ sits inside the derivative. Storage is dense float32: at 1000–2000 neurons a
dense matrix-vector product beats SciPy CSR at 10 % density on this hardware
(see ``benchmarks/reservoir_step.py``).

For speed the constants are folded into the matrices once:
``u ← (1 − dt/τ) u + A r + B r_in + C r_o`` with ``A = (dt/τ) λ W_r``,
``B = (dt/τ) W_in`` and ``C = (dt/τ) W_fb``.
"""

from __future__ import annotations

import math

from ..backend import RandomStreams, UniformNoise


class Reservoir:
    """State ``u``, ``r`` (trials, N) and readout ``r_o`` (trials, n_out)."""

    kind = "reservoir"

    def __init__(self, name, spec, *, in_size: int, out_size: int, backend, seeds,
                 dt_ms: float) -> None:
        self.name = name
        self.size = n = spec.size
        self.out_size = out_size
        self.in_size = in_size
        trials = len(seeds)
        self.xp = backend.xp
        init = RandomStreams(seeds, f"{name}/init")
        p = spec.density
        mask = init.random((n, n)) < p
        w_r = init.normal((n, n), std=1.0 / math.sqrt(p * n)) * mask if p > 0 else 0.0 * mask
        w_in = init.uniform((n, in_size), -1.0, 1.0)
        w_fb = init.uniform((n, out_size), -1.0, 1.0)
        a = dt_ms / spec.tau
        self.decay = backend.dtype.type(1.0 - a)
        self.A = backend.asarray(a * spec.chaos * w_r)
        self.B = backend.asarray(a * w_in)
        self.C = backend.asarray(a * w_fb)
        self.W_o = backend.zeros((trials, out_size, n))
        self.u = backend.zeros((trials, n))
        self.r = backend.zeros((trials, n))
        self.r_o = backend.zeros((trials, out_size))
        self.hidden_noise = UniformNoise(RandomStreams(seeds, f"{name}/hidden_noise"), (n,),
                                         spec.noise.hidden, backend)
        self.readout_noise = UniformNoise(RandomStreams(seeds, f"{name}/readout_noise"),
                                          (out_size,), spec.noise.readout, backend)
        self.explore = True
        """Readout exploration noise ζ_o on (off in test phases)."""

    def step(self, r_in) -> None:
        """One Euler step of DL Eq. 9; ``r_in`` has shape (trials, in_size)."""
        xp = self.xp
        mv = xp.matmul
        drive = mv(self.A, self.r[..., None]) + mv(self.B, r_in[..., None])
        drive += mv(self.C, self.r_o[..., None])
        self.u *= self.decay
        self.u += drive[..., 0]
        xp.tanh(self.u, out=self.r)
        self.r += self.hidden_noise.next()
        self.r_o = mv(self.W_o, self.r[..., None])[..., 0]
        zeta = self.readout_noise.next()
        if self.explore:
            self.r_o += zeta

    def state(self) -> dict:
        return {"u": self.u, "r": self.r, "readout": self.r_o, "W_o": self.W_o}

    def get_state(self) -> dict:
        """Everything that evolves (the fixed ``A``, ``B``, ``C`` are rebuilt from the seeds)."""
        return {**self.state(), "explore": self.explore,
                "hidden_noise": self.hidden_noise.get_state(),
                "readout_noise": self.readout_noise.get_state()}

    def set_state(self, state: dict) -> None:
        xp = self.xp
        self.u[...] = xp.asarray(state["u"])
        self.r[...] = xp.asarray(state["r"])
        self.W_o[...] = xp.asarray(state["W_o"])
        self.r_o = xp.array(state["readout"], dtype=self.W_o.dtype)
        self.explore = bool(state["explore"])
        self.hidden_noise.set_state(state["hidden_noise"])
        self.readout_noise.set_state(state["readout_noise"])
