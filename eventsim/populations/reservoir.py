"""Recurrent reservoir with a linear readout, DL Eq. 9, batched over trials.

* ``τ_r du/dt = −u + λ W_r r + W_in r_in + W_fb r_o``  (explicit Euler, step ``dt``)
* ``r = tanh(u) + ζ_r``,   ``r_o = W_o r + ζ_o``  (noises uniform in ±ζ)

Initialisation (SCIENCE.md §2): ``W_r`` = Bernoulli(p) mask × N(0, 1/(pN)) with
``p`` the *density*; ``W_in``, ``W_fb`` ~ U(−1, 1); ``W_o = 0``. The chaos level
λ sits inside the derivative. Storage is dense float32: at 1000–2000 neurons a
dense matrix-vector product beats SciPy CSR at 10 % density on this hardware
(see ``benchmarks/reservoir_step.py``).

For speed the constants are folded into the matrices once and the three
products are stacked into one (DESIGN.md's tuned loop):
``u ← (1 − dt/τ) u + M s`` with ``M = [A | B | C]``, ``A = (dt/τ) λ W_r``,
``B = (dt/τ) W_in``, ``C = (dt/τ) W_fb`` and the state vector
``s = [r | r_in | r_o]`` (the previous tick's ``r`` and ``r_o``, this tick's
input). ``r`` and ``r_in`` are views into ``s``, so the step copies only the
taps and ``r_o`` into it.

Matrices are drawn per trial from the stream ``<name>/init`` of the trial's
seed, or, when the reservoir has a ``seed``, once from that seed and shared by
all trials (then ``M`` is stored once, so K trials touch one matrix: 8 MB
instead of 32 MB for two 1000-neuron reservoirs and four trials, which is what
keeps them in the last-level cache). Either way every trial's product is its
own matrix-vector product ``M_k s_k``, so K batched trials are bit-identical
to K single runs: one matrix-matrix product over the trials would sum in a
different order for K > 1 than for K = 1 with OpenBLAS, and on the 2-core
machine it is 2.4× slower at K = 4 and only 1.07× (1000 neurons) to 1.35×
(2000) faster at K = 16 (``benchmarks/reservoir_step.py --shared``).
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import RandomStreams, UniformNoise


class Reservoir:
    """State ``u``, ``r`` (trials, N) and readout ``r_o`` (trials, n_out).

    ``M`` is (K, N, N + in + out), or (1, N, N + in + out) when shared;
    ``A``, ``B``, ``C`` are views of its three blocks.
    """

    kind = "reservoir"

    def __init__(self, name, spec, *, in_size: int, out_size: int, backend, seeds,
                 dt_ms: float) -> None:
        self.name = name
        self.size = n = spec.size
        self.out_size = out_size
        self.in_size = in_size
        trials = len(seeds)
        self.xp = backend.xp
        self.shared = spec.seed is not None
        init = RandomStreams([spec.seed] if self.shared else seeds, f"{name}/init")
        p = spec.density
        mask = init.random((n, n)) < p
        w_r = init.normal((n, n), std=1.0 / math.sqrt(p * n)) * mask if p > 0 else 0.0 * mask
        w_in = init.uniform((n, in_size), -1.0, 1.0)
        w_fb = init.uniform((n, out_size), -1.0, 1.0)
        a = dt_ms / spec.tau
        self.decay = backend.dtype.type(1.0 - a)
        self.M = backend.asarray(np.concatenate([a * spec.chaos * w_r, a * w_in, a * w_fb],
                                                axis=-1))
        self.A = self.M[..., :n]
        self.B = self.M[..., n:n + in_size]
        self.C = self.M[..., n + in_size:]
        self.s = backend.zeros((trials, n + in_size + out_size))
        self.r = self.s[:, :n]
        self.r_in = self.s[:, n:n + in_size]
        self._fb = self.s[:, n + in_size:]
        self.W_o = backend.zeros((trials, out_size, n))
        self.u = backend.zeros((trials, n))
        self.r_o = backend.zeros((trials, out_size))
        self.drive = backend.zeros((trials, n))
        self.hidden_noise = UniformNoise(RandomStreams(seeds, f"{name}/hidden_noise"), (n,),
                                         spec.noise.hidden, backend)
        self.readout_noise = UniformNoise(RandomStreams(seeds, f"{name}/readout_noise"),
                                          (out_size,), spec.noise.readout, backend)
        self.explore = True
        """Readout exploration noise ζ_o on (off in test phases)."""

    def step(self, taps) -> None:
        """One Euler step of DL Eq. 9.

        ``taps`` is the input ``r_in`` as one (trials, in_size) array or as a
        sequence of (trials, d_i) arrays whose concatenation it is.
        """
        xp = self.xp
        if isinstance(taps, list | tuple):
            start = 0
            for tap in taps:
                stop = start + tap.shape[-1]
                self.r_in[:, start:stop] = tap
                start = stop
        else:
            self.r_in[...] = taps
        self._fb[...] = self.r_o
        M, s, drive = self.M, self.s, self.drive
        for k in range(s.shape[0]):
            xp.dot(M[0 if self.shared else k], s[k], out=drive[k])
        self.u *= self.decay
        self.u += drive
        xp.tanh(self.u, out=self.r)
        self.r += self.hidden_noise.next()
        xp.matmul(self.W_o, self.r[..., None], out=self.r_o[..., None])
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
