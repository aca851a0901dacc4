"""Rate 'LIF' layer of DL Eq. 6, batched over trials.

Explicit Euler with step ``dt``:

* ``u ← u + (dt/τ)(−u + W z_pre)``
* ``z = tanh(u) + ζ`` with ``ζ ~ U(−a, a)`` drawn fresh every tick (``a`` = ``noise``)

There is no bias and the state is not reset between samples. ``z_pre`` is the
presynaptic population's output of the same tick (populations step in
topological order). When the layer's synapses keep the sample's updates
factored (:mod:`eventsim.plasticity.factored`), ``W z_pre`` comes from them.
"""

from __future__ import annotations

import math

from ..backend import RandomStreams, UniformNoise


def init_weights(spec, shape, seeds, name: str, backend):
    """Draw (trials, *shape) initial weights from the projection's ``init`` spec."""
    streams = RandomStreams(seeds, f"{name}/init")
    width = 1.0 / math.sqrt(shape[-1])
    if spec.dist == "normal":
        host = streams.normal(shape, std=width if spec.std is None else spec.std)
    else:
        scale = width if spec.scale is None else spec.scale
        host = streams.uniform(shape, -scale, scale)
    return backend.asarray(host)


class Layer:
    """State ``u``, ``z`` (trials, size) and feed-forward weights ``W`` (trials, size, pre)."""

    kind = "layer"

    def __init__(self, name, spec, pre, init_spec, *, backend, seeds, dt_ms: float) -> None:
        self.name = name
        self.size = spec.size
        self.pre = pre
        trials = len(seeds)
        xp = backend.xp
        self.xp = xp
        self.W = init_weights(init_spec, (spec.size, pre.size), seeds, name, backend)
        self.updates = None
        """The synapses' :class:`~eventsim.plasticity.factored.FactoredUpdates`, if any."""
        self.u = backend.zeros((trials, spec.size))
        self.z = backend.zeros((trials, spec.size))
        self.drive = backend.zeros((trials, spec.size))
        self.leak = backend.dtype.type(dt_ms / spec.tau)
        self.noise = UniformNoise(RandomStreams(seeds, f"{name}/noise"), (spec.size,),
                                  spec.noise, backend)
        self.kernels = backend.kernels
        """The compiled step (:mod:`eventsim.compiled`) on the ``numba`` backend, else None."""

    def step(self) -> None:
        """One Euler step of DL Eq. 6 (in place, into preallocated buffers)."""
        xp, drive = self.xp, self.drive
        if self.updates is not None:
            self.updates.drive(drive)
        if self.kernels is not None:
            self.kernels.layer_step(self.W, self.pre.z, self.u, self.z, drive, self.leak,
                                    self.noise.next(), self.updates is not None)
            return
        if self.updates is None:
            xp.matmul(self.W, self.pre.z[..., None], out=drive[..., None])
        drive -= self.u
        drive *= self.leak
        self.u += drive
        xp.tanh(self.u, out=self.z)
        self.z += self.noise.next()

    def state(self) -> dict:
        """``u``, ``z`` and the effective ``W`` (pending factored updates included)."""
        w = self.W if self.updates is None else self.updates.effective_weights()
        return {"u": self.u, "z": self.z, "W": w}

    def get_state(self) -> dict:
        """Everything that evolves (checkpoints): ``u``, ``z``, ``W``, the noise stream and,
        with factored updates, ``W`` at the start of the sample and the pending factors."""
        state = {"u": self.u, "z": self.z, "W": self.W, "noise": self.noise.get_state()}
        if self.updates is not None:
            state["updates"] = self.updates.get_state()
        return state

    def set_state(self, state: dict) -> None:
        for key in ("u", "z", "W"):
            getattr(self, key)[...] = self.xp.asarray(state[key])
        self.noise.set_state(state["noise"])
        if self.updates is not None:
            self.updates.set_state(state["updates"])
