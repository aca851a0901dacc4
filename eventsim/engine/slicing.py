"""Minimum-delay slicing: each layer stepped through the rest of a sample in one call.

Every tick the engine runs POPULATION, DELIVER, PLASTICITY and PROBE
(:mod:`eventsim.engine.simulator`). In the analytic mode on the ``numba``
backend, when every learning layer applies its ξ in the tick that computes it
(:mod:`eventsim.engine.immediate`) and nothing watches single ticks (no probes,
no reservoirs, no message in flight), the next external event is the next
presentation or the end of the run, as in NEST's minimum-delay slicing. Until
then a layer depends only on its own state, its presynaptic layer's outputs of
the same ticks and the sample's working memory. So each layer, in topological
order, runs the remaining ticks of the sample in one compiled call
(:func:`eventsim.compiled.slice_layer`, :func:`eventsim.compiled.slice_factored`)
and keeps its output at every phase in a trace that the next layer reads. Per
tick the call does what the per-tick path does, with the same kernels in the
same order:

* the Euler step of DL Eq. 6, ``u ← u + (dt/τ)(W z_pre − u)``, ``z = tanh(u) + ζ``;
* ``z`` into the working memory at this phase;
* ξ of DL Eq. 8 (or ξ*) from the sample's coefficient row;
* ``ΔW = −η(t) (ξ ⊙ (1 − z²)) z_preᵀ`` through momentum (DL Eq. 8, ``e = β``).

While the memories are paused (evaluation) nothing learns, and the layers only
take the first step.

Afterwards the slice writes what the ticks would have left behind: the
channels' send records, the sample-window means and the layer objectives logged
at the last phase of a sample.

Every tick that may slice goes through the slice kernels, a slice of one tick
included, so a run's numbers do not depend on how its ticks fall into slices
(where a run stops, or resumes, mid-sample): they are the same bit for bit. The
compiler may group a reassociated sum differently inside a slice kernel than in
the per-tick call of the same kernel (:mod:`eventsim.compiled`), so against the
per-tick path (``Simulator(slicing=False)``) they agree to rounding.
"""

from __future__ import annotations

from ..plasticity.hsic import xi_scale


class LayerSlice:
    """One layer's part of a slice: its state, memory, ξ source, synapses and trace."""

    def __init__(self, layer, memory, source, synapses, channel, sample_ticks: int,
                 backend) -> None:
        self.layer = layer
        self.memory = memory
        self.source = source
        self.synapses = synapses
        self.channel = channel
        k, n = layer.z.shape
        self.trace = backend.zeros((sample_ticks, k, n))
        """The layer's output at every phase of the current sample (what the next layer reads)."""
        self.xi = backend.zeros((k, n))
        self.dtype = backend.dtype.type
        self.kernels = backend.kernels
        """:mod:`eventsim.compiled` (the numba backend's; imported only with it)."""
        self.idle = (backend.zeros((k, 1)), self.dtype(0.0), self.dtype(0.0),
                     backend.zeros((1,)))
        """Stand-ins for the coefficient row, the ξ constants and the rates when not learning."""

    def _learning(self, t0: int, count: int):
        """The coefficient row, the ξ constants and ``−η(t)`` of a learning slice."""
        coef = self.source.coef.astype(self.layer.z.dtype, copy=False)
        c1, c2 = self.kernels.xi_constants(self.source.rule.sigma_z,
                                           xi_scale(self.memory.count), self.dtype)
        return coef, c1, c2, self.synapses.neg_etas(t0, count)

    def run(self, t0: int, p0: int, p1: int, pre_trace, pre_held: bool, learn: bool) -> None:
        """Phases ``p0 … p1−1`` (ticks from ``t0``); ``pre_trace[p]`` is the presynaptic
        output at phase ``p`` (``pre_trace[0]`` for all when ``pre_held``). Without
        ``learn`` the layer only steps (the memories are paused)."""
        layer, syn = self.layer, self.synapses
        noise = layer.noise.take(p1 - p0)
        coef, c1, c2, neg_etas = self._learning(t0, p1 - p0) if learn else self.idle
        f = syn.factored
        if f is None:
            v = syn.velocity
            self.kernels.slice_layer(
                layer.W, layer.W if v is None else v, v is not None, pre_trace, pre_held,
                layer.u, layer.z, layer.drive, noise, layer.leak, self.trace, self.memory.z,
                coef, c1, c2, self.xi, neg_etas, self.dtype(syn.momentum), learn, p0, p1)
            return
        has_v = f.b is not None
        vx = f.prepare_input()
        f.c, f.decay = self.kernels.slice_factored(
            layer.W, layer.pre.z, layer.u, layer.z, layer.drive, noise, layer.leak,
            self.trace, self.memory.z, coef, c1, c2, self.xi, neg_etas, f.xx, f.w,
            f.b if has_v else f.w, f.wx, vx, has_v, f.pending, f.c, f.decay, f.momentum,
            learn, p0, p1)
        f.pending = f.pending or learn


class SampleSlicer:
    """Runs every layer of the network through the rest of a sample (module docstring)."""

    def __init__(self, sim, layers: list[LayerSlice]) -> None:
        self.sim = sim
        self.layers = layers
        self.traces = {s.layer.name: s.trace for s in layers}

    def mode(self) -> str | None:
        """How this tick may start a slice: 'learn' (learning on, memories full), 'step'
        (the memories paused, as in evaluation: nothing learns), or None (the per-tick
        path: a probe, a message in flight, no feed, or partly on)."""
        sim = self.sim
        if sim.feed is None or sim.probes or sim._due:
            return None
        if not sim.memories_run:
            return "step"
        if all(s.synapses.enabled and s.memory.count == s.memory.capacity
               for s in self.layers):
            return "learn"
        return None

    def run(self, t0: int, p0: int, count: int, learn: bool) -> None:
        """Ticks ``t0 … t0+count−1``, phases ``p0 …`` of the current sample."""
        sim, p1 = self.sim, p0 + count
        last = learn and sim.objectives_due(p1 - 1)
        for s in self.layers:
            pre = s.layer.pre
            held = pre.name not in self.traces
            s.run(t0, p0, p1, pre.z[None] if held else self.traces[pre.name], held, learn)
            if last:
                sim.log_objectives(s.layer.name, t0 + count - 1, p1 - 1)
        for s in self.layers if learn else ():
            for tick in range(t0, t0 + count):
                s.channel.record_send(tick)
        for window in sim.windows.values():
            trace = self.traces.get(window.pop.name)
            for p in range(p0, p1):
                window.record(p, window.pop.z if trace is None else trace[p])


def slicer_for(sim) -> SampleSlicer | None:
    """A :class:`SampleSlicer` when every population is the input or a layer on the
    immediate path whose channel sends every tick; else None (the per-tick path)."""
    slices = []
    for name, pop in sim.populations.items():
        if pop.kind == "input":
            continue
        channel = sim.channels.get(name)
        if (name not in sim.immediate or not channel.every_tick
                or sim.memories[name].capacity < 2):
            return None
        slices.append(LayerSlice(pop, sim.memories[name], sim.xi_sources[name],
                                 sim.synapses[name], channel, sim.sample_ticks, sim.backend))
    return SampleSlicer(sim, slices) if slices else None
