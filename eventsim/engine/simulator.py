"""The discrete-event engine: a SimPy environment whose clock counts integer ticks.

Two SimPy processes drive it: the presenter, which wakes every ``sample_ticks``
ticks, and the tick process, which wakes every tick after it and runs the
tick's stages. Events of one tick run in this order (inside a stage, in the
network's topological order):

1. ``PRESENT``     the presenter starts a sample (every ``sample_ticks``)
2. ``POPULATION``  populations step in topological order; a layer stores its
   output in its working memory; a modulator source (the analytic ξ or a
   reservoir readout) sends on its channel
3. ``DELIVER``     channels deliver the messages due this tick
4. ``PLASTICITY``  layers apply delivered modulators; reservoir readouts learn
5. ``PROBE``       probes and sample-window recorders read the state

Stages 2–5 share one process because they run every tick: one SimPy event per
tick instead of four (the order is the same). On the ``numba`` backend a layer
whose analytic ξ travels with no delay, jitter or loss applies it right after
it steps, in stage 2 (:mod:`eventsim.engine.immediate`; the same numbers), and
when every layer does and nothing watches single ticks, each layer runs the rest
of the sample in one call (:mod:`eventsim.engine.slicing`).

``Simulator.run(until)`` processes every tick before ``until``. The scenario
runner (``eventsim.runner``) switches phases between calls to ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy
from simpy.events import Event

from .. import units
from ..backend import Backend, get_backend
from ..config.network import LABELS, Network
from ..config.yamlfile import dotted
from ..errors import ConfigError, DivergenceError
from ..plasticity import hsic
from ..plasticity.kernels import centre, dl_objective_centred, gaussian_kernel, pl_objective
from ..plasticity.memory import SampleMemory, WorkingMemory
from ..plasticity.readout import ReadoutLearning
from ..plasticity.traces import ThreeFactorSynapses
from ..populations.clamped import ClampedLayer
from ..populations.input import InputPopulation
from ..populations.layer import Layer
from ..populations.reservoir import Reservoir
from .channels import Channel
from .immediate import ImmediateModulation
from .immediate import applies as immediate_applies
from .slicing import slicer_for
from .tracking import ReadoutTracker

PRESENT, TICK = 10_000, 20_000
"""SimPy priorities (lower first): in every tick the presenter runs before the stages."""
FACTORED_MIN_WEIGHTS = 4096
"""A first layer with at least this many weights per trial keeps each sample's updates
factored (:mod:`eventsim.plasticity.factored`); below it the bookkeeping costs more
than updating the small matrix every tick."""


@dataclass(frozen=True)
class LayerRule:
    """How one layer learns. ``form``: 'paper' (DL Eq. 8), 'exact' (ξ*) or 'phsic'.

    Bandwidths are absolute (already ``s·sqrt(D)``)."""

    gamma: float
    memory: int
    sigma_x: float
    sigma_y: float
    sigma_z: float
    form: str = "paper"
    tau_e_ms: float = 0.0
    momentum: float = 0.0
    window: str | None = None
    """Fixed-window eligibility ('tick' or 'sample') instead of the exponential trace."""


@dataclass(frozen=True)
class ReadoutRule:
    """Reservoir readout learning (DL Eq. 10/13); durations in ms."""

    eta0: float = 1e-4
    tau_decay_ms: float = 20_000.0
    tau_lpf_ms: float = 5.0
    reward: str = "total"
    """'total' (DL Eq. 10) or 'per_output' (one reward and gate per readout element)."""


class _At(Event):
    """An event that fires ``delay`` ticks from now with SimPy priority ``priority``."""

    def __init__(self, env, delay: int, priority: int) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, priority, delay)


def _in_order(steps):
    """One callable ``f(tick)`` that runs ``steps`` in order."""
    def run(tick: int) -> None:
        for step in steps:
            step(tick)
    return run


class SampleKernels:
    """X and Y kernels of one :class:`SampleMemory`, computed once per sample.

    Every layer with the same memory capacity sees the same inputs and labels,
    so the kernel rows of ξ (per bandwidth pair and form) and the full kernel
    matrices of the logged objectives are shared by all of them.
    """

    def __init__(self, samples: SampleMemory, xp) -> None:
        self.samples = samples
        self.xp = xp
        self._version = -1
        self._cache: dict = {}

    def _get(self, key, compute):
        if self._version != self.samples.version:
            self._cache.clear()
            self._version = self.samples.version
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def xy(self):
        # The newest-first buffers are contiguous once full; the first N−1 samples
        # use contiguous copies, so the batched arithmetic (matmul) stays
        # bit-identical to K separate single-trial runs.
        def compute():
            x, y = self.samples.xy()
            return self.xp.ascontiguousarray(x), self.xp.ascontiguousarray(y)
        return self._get("xy", compute)

    def rows(self, form: str, sigma_x: float, sigma_y: float):
        """:func:`hsic.xy_kernel_rows` of the current memory."""
        def compute():
            x, y = self.xy()
            return hsic.xy_kernel_rows(x, y, sigma_x=sigma_x, sigma_y=sigma_y, form=form)
        return self._get(("rows", form, sigma_x, sigma_y), compute)

    def gaussian(self, which: str, sigma: float):
        """The full Gaussian kernel matrix of ``x`` or ``y`` over the memory, (K, N, N)."""
        def compute():
            a = self.xy()[0 if which == "x" else 1]
            return gaussian_kernel(a, a, sigma)
        return self._get((which, sigma), compute)

    def centred(self, which: str, sigma: float):
        """``H K H`` of :meth:`gaussian` (the logged DL objective's X and Y kernels)."""
        return self._get((which, sigma, "centred"), lambda: centre(self.gaussian(which, sigma)))


class AnalyticXi:
    """The third factor computed from the working memory (DL Eq. 8, ξ*, or pHSIC)."""

    def __init__(self, memory: WorkingMemory, rule: LayerRule, kernels: SampleKernels,
                 compiled=None) -> None:
        self.memory = memory
        self.rule = rule
        self.kernels = kernels
        self.contract = None if compiled is None else compiled.xi
        """The compiled contraction of DL Eq. 8 / ξ* on the ``numba`` backend, else None."""
        self.coef = None

    def _z(self, phase: int):
        return self.kernels.xp.ascontiguousarray(self.memory.z_at(phase))

    def new_sample(self) -> None:
        """Recompute the per-sample coefficient row (the X and Y kernels)."""
        r = self.rule
        if r.form == "phsic":
            self.coef = hsic.phsic_coefficients_from_kernel(
                self.kernels.gaussian("y", r.sigma_y), gamma=r.gamma)
        else:
            rows = self.kernels.rows(r.form, r.sigma_x, r.sigma_y)
            self.coef = hsic.coefficients_from_rows(rows, gamma=r.gamma, form=r.form)

    def __call__(self, phase: int):
        z = self._z(phase)
        if self.rule.form == "phsic":
            return hsic.xi_phsic_from_coefficients(self.coef, z, self.rule.sigma_z)
        return hsic.xi_from_coefficients(self.coef, z, self.rule.sigma_z, self.contract)

    def objectives(self, phase: int) -> dict:
        """DL and PL objectives of the layer over the memory at ``phase``, each (K,).

        ``HSIC(X,Z) − γ HSIC(Y,Z)`` (DL Eq. 2/3; zero while N < 2) and
        ``pHSIC(Z,Z) − γ pHSIC(Y,Z)`` (PL Eq. 34).
        """
        r = self.rule
        z = self._z(phase)
        ky = self.kernels.gaussian("y", r.sigma_y)
        kz = gaussian_kernel(z, z, r.sigma_z)
        if z.shape[-2] < 2:
            dl = self.kernels.xp.zeros(z.shape[:-2], dtype=z.dtype)
        else:
            dl = dl_objective_centred(self.kernels.centred("x", r.sigma_x),
                                      self.kernels.centred("y", r.sigma_y), kz, r.gamma)
        return {"objective_dl": dl, "objective_pl": pl_objective(ky, kz, r.gamma)}


class Probe:
    """Copies a state variable to host memory every ``every`` ticks."""

    def __init__(self, name: str, getter, every: int, backend: Backend) -> None:
        self.name = name
        self.getter = getter
        self.every = every
        self.backend = backend
        self.ticks: list[int] = []
        self.values: list[np.ndarray] = []

    def record(self, tick: int) -> None:
        self.ticks.append(tick)
        self.values.append(self.backend.to_host(self.getter()).copy())

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """(ticks (T,), values (T, trials, ...))."""
        return np.asarray(self.ticks, dtype=np.int64), np.asarray(self.values)


class WindowMean:
    """Mean of a population's rate over each sample window (evaluation features)."""

    def __init__(self, population, sample_ticks: int, backend: Backend) -> None:
        self.pop = population
        self.sample_ticks = sample_ticks
        self.backend = backend
        self.acc = backend.zeros(population.z.shape)
        self.means: list[np.ndarray] = []
        self.enabled = False

    def record(self, phase: int, z) -> None:
        """Add the population's output ``z`` at ``phase`` of the sample."""
        self.acc += z
        if phase == self.sample_ticks - 1:
            if self.enabled:
                self.means.append(self.backend.to_host(self.acc) / self.sample_ticks)
            self.acc[...] = 0.0

    def take(self) -> np.ndarray:
        """Collected window means, (trials, samples, size); clears the list."""
        out = np.stack(self.means, axis=1) if self.means else np.zeros((0,))
        self.means = []
        return out


class Simulator:
    """Builds populations, channels and rules from a network graph and runs them.

    Args:
        network: a validated :class:`~eventsim.config.network.Network`.
        seeds: one seed per trial; trials are batched on the leading axis.
        backend: an array :class:`~eventsim.backend.Backend` (default NumPy float32).
        dt_ms: the tick in ms.
        sample_ticks: presentation time of one sample, in ticks.
        label_dim: dimension of the label vectors (1 for binary tasks).
        rules: learning rule per layer (layers without one do not learn).
        modulator: 'analytic' (ξ from the working memory) or 'reservoir'
            (the reservoirs are simulated and their readouts are broadcast).
        readout: reservoir readout learning parameters.
        channel_overrides: per target layer, fields that replace the modulatory
            edge's delay / jitter / jitter_dist / loss / period / broadcast / phase / burst.
        factored_updates: let a large layer that reads the network input keep each
            sample's updates as rank-1 factors when its eligibility is ``e = β``
            (exact algebra, different rounding); False updates every ``W`` every tick.
        immediate_modulation: apply a zero-delay analytic ξ in the tick that computes it,
            skipping the channel queue and the synapse stage, where
            :mod:`eventsim.engine.immediate` allows (the same numbers bit for bit);
            False sends every ξ through the general path.
        slicing: step the layers through the rest of a sample in one compiled call each
            where :mod:`eventsim.engine.slicing` allows (the same numbers to rounding);
            False steps every tick.
    """

    def __init__(self, network: Network, *, seeds, backend: Backend | None = None,
                 dt_ms: float = 1.0, sample_ticks: int = 1, label_dim: int = 1,
                 rules: dict[str, LayerRule] | None = None, modulator: str = "analytic",
                 readout: ReadoutRule | None = None,
                 channel_overrides: dict[str, dict] | None = None,
                 factored_updates: bool = True, immediate_modulation: bool = True,
                 slicing: bool = True) -> None:
        self.network = network
        self.factored_updates = factored_updates
        self.immediate_modulation = immediate_modulation
        self.seeds = [int(s) for s in seeds]
        self.trials = len(self.seeds)
        self.backend = backend or get_backend()
        self.dt_ms = float(dt_ms)
        self.sample_ticks = int(sample_ticks)
        self.label_dim = int(label_dim)
        self.modulator = modulator
        self.rules = dict(rules or {})
        self.env = simpy.Environment()
        self.phase = "init"
        self.feed = None
        self.sample_start = 0
        self.samples_presented = 0
        self.samples_remembered = 0
        """Samples the working memories took in (evaluation samples are not)."""
        self.labels = self.backend.zeros((self.trials, self.label_dim))
        self.current_labels = np.zeros(self.trials, dtype=np.int64)
        self.probes: list[Probe] = []
        self.windows: dict[str, WindowMean] = {}
        self.objective_log: list[tuple[int, str, str, np.ndarray]] = []
        self.populations: dict = {}
        self.memories: dict[str, WorkingMemory] = {}
        self.sample_memories: dict[int, tuple[SampleMemory, SampleKernels]] = {}
        self._due: dict[int, list] = {}
        self.xi_sources: dict[str, AnalyticXi] = {}
        self.synapses: dict[str, ThreeFactorSynapses] = {}
        self.channels: dict[str, Channel] = {}
        self.immediate: dict[str, ImmediateModulation] = {}
        """Layers whose ξ takes the immediate path (:mod:`eventsim.engine.immediate`)."""
        self.readouts: dict[str, ReadoutLearning] = {}
        self.trackers: dict[str, ReadoutTracker] = {}
        self.clamped: dict[str, ClampedLayer] = {}
        self._served: dict[str, str] = {}
        self._taps: dict[str, list[str]] = {}
        self._xi_cache: dict[str, tuple[int, object]] = {}
        self._build(readout or ReadoutRule(), channel_overrides or {})
        self.slicer = slicer_for(self) if slicing else None
        """Steps the layers through the rest of a sample at once where it applies."""
        self._until = 0
        """The end of the current :meth:`run` (a slice stops there)."""
        self._start_processes()

    # ----------------------------------------------------------------- build
    def _ticks(self, ms: float, where: tuple, what: str | None = None) -> int:
        try:
            return units.to_ticks(ms, self.dt_ms)
        except ValueError as exc:
            raise ConfigError(str(exc), file=self.network.file, line=self.network.line_of(where),
                              field=what or dotted(where)) from None

    def _build(self, readout: ReadoutRule, overrides: dict) -> None:
        net, g, be = self.network, self.network.graph, self.backend
        inputs = net.inputs()
        self.input_name = inputs[0]
        self.x_dim = g.nodes[self.input_name]["size"]
        for name in net.order():
            attrs = g.nodes[name]
            kind, spec = attrs["kind"], attrs["spec"]
            where = ("populations", name)
            if kind == "input":
                self.populations[name] = InputPopulation(name, spec.size, be, self.trials)
            elif kind == "layer" and spec.clamp is not None:
                self.populations[name] = self.clamped[name] = ClampedLayer(
                    name, spec, backend=be, trials=self.trials)
            elif kind == "layer":
                self._ticks(spec.tau, (*where, "tau"), f"populations.{name}.tau")
                pre = net.ff_input(name)
                init = g.edges[pre, name]["spec"].init
                self.populations[name] = Layer(name, spec, self.populations[pre], init,
                                               backend=be, seeds=self.seeds, dt_ms=self.dt_ms)
            elif kind == "reservoir" and self.modulator == "reservoir":
                self._ticks(spec.tau, (*where, "tau"), f"populations.{name}.tau")
                layer = self._served[name] = net.served_layer(name)
                self._taps[name] = self._taps_of(name)
                in_size = sum(self._tap_size(t) for t in self._taps[name])
                self.populations[name] = Reservoir(
                    name, spec, in_size=in_size, out_size=g.nodes[layer]["size"], backend=be,
                    seeds=self.seeds, dt_ms=self.dt_ms)
                self.readouts[name] = ReadoutLearning(
                    self.populations[name], eta0=readout.eta0,
                    tau_decay_ticks=readout.tau_decay_ms / self.dt_ms,
                    tau_lpf_ticks=readout.tau_lpf_ms / self.dt_ms, backend=be,
                    reward=readout.reward)
        for layer, rule in self.rules.items():
            pop = self.populations[layer]
            if rule.memory not in self.sample_memories:
                samples = SampleMemory(rule.memory, self.x_dim, self.label_dim, backend=be,
                                       trials=self.trials)
                self.sample_memories[rule.memory] = (samples, SampleKernels(samples, be.xp))
            samples, kernels = self.sample_memories[rule.memory]
            self.memories[layer] = WorkingMemory(samples, self.sample_ticks, pop.size,
                                                 backend=be, trials=self.trials)
            self.xi_sources[layer] = AnalyticXi(self.memories[layer], rule, kernels,
                                                be.kernels)
            if layer in self.clamped:
                continue
            self.synapses[layer] = ThreeFactorSynapses(
                pop, dt_ms=self.dt_ms, tau_e_ms=rule.tau_e_ms, window=rule.window,
                momentum=rule.momentum, factored=self._factored(pop, rule), backend=be)
        for res, layer in self._served.items():
            if layer in self.xi_sources:
                self.trackers[res] = ReadoutTracker(
                    res, layer, lambda r=self.populations[res]: r.r_o,
                    lambda tick, layer=layer: self._xi(layer, tick), be)
        for source, layer, data in net.edges_of("modulatory"):
            if layer not in self.synapses:
                continue
            spec = data["spec"].model_copy(update=overrides.get(layer, {}))
            where = ("projections", data["index"])
            period_ms = self.dt_ms if spec.period is None else spec.period
            burst_ms = self.dt_ms if spec.burst is None else spec.burst
            channel = Channel(
                f"{source}->{layer}",
                delay=self._ticks(spec.delay, (*where, "delay")),
                jitter=self._ticks(spec.jitter, (*where, "jitter")),
                jitter_dist=spec.jitter_dist, loss=spec.loss,
                period=self._ticks(period_ms, (*where, "period")),
                broadcast=spec.broadcast, phase=self._ticks(spec.phase, (*where, "phase")),
                burst=self._ticks(burst_ms, (*where, "burst")),
                seeds=self.seeds, schedule=self._schedule_delivery)
            channel.receiver = self.synapses[layer]
            channel.source = source
            self.channels[layer] = channel
            if self.immediate_modulation and immediate_applies(
                    channel, self.synapses[layer], self.rules[layer], be, self.modulator):
                self.immediate[layer] = ImmediateModulation(self.xi_sources[layer], channel,
                                                            self.synapses[layer])

    def _factored(self, layer: Layer, rule: LayerRule) -> bool:
        """Whether ``layer`` keeps its updates factored (see ``factored_updates``)."""
        return (self.factored_updates and layer.pre.kind == "input"
                and rule.window is None and rule.tau_e_ms == 0
                and layer.W[0].size >= FACTORED_MIN_WEIGHTS)

    def _taps_of(self, reservoir: str) -> list[str]:
        taps = self.network.taps(reservoir)
        return taps or [self.input_name, LABELS, self.network.served_layer(reservoir)]

    def _tap_size(self, name: str) -> int:
        return self.label_dim if name == LABELS else self.network.graph.nodes[name]["size"]

    def _tap_value(self, name: str):
        return self.labels if name == LABELS else self.populations[name].z

    # ------------------------------------------------------------- processes
    def _schedule_delivery(self, delay: int, callback) -> None:
        """Call ``callback(tick)`` in the DELIVER stage ``delay`` ticks from now.

        Callbacks due in the same tick run in the order they were scheduled.
        """
        self._due.setdefault(self.env.now + delay, []).append(callback)

    def _deliver(self, tick: int) -> None:
        for callback in self._due.pop(tick, ()):
            callback(tick)

    def _every(self, fn, period: int, priority: int, first: int = 0):
        env = self.env

        def proc():
            yield _At(env, first, priority)
            while True:
                fn(env.now)
                yield _At(env, period, priority)

        return env.process(proc())

    def _start_processes(self) -> None:
        """The presenter and the tick process (stages POPULATION, DELIVER, PLASTICITY, PROBE).

        Samples start at multiples of ``sample_ticks``, also when restarted mid-sample.
        """
        self._every(self._present, self.sample_ticks, PRESENT,
                    first=-self.tick % self.sample_ticks)
        stages = []
        for name, pop in self.populations.items():
            if pop.kind == "layer":
                stages.append(lambda t, n=name: self._step_layer(n, t))
            elif pop.kind == "reservoir":
                stages.append(lambda t, n=name: self._step_reservoir(n, t))
        stages.append(self._deliver)
        stages += [syn.step for name, syn in self.synapses.items()
                   if name not in self.immediate]  # those apply ξ in POPULATION
        stages += [lambda t, r=res: self._learn_readout(r, t) for res in self.readouts]
        stages.append(self._probe)
        self.env.process(self._ticks_process(_in_order(stages)))

    def _ticks_process(self, stages):
        """Every tick runs ``stages``, unless a slice runs several ticks at once
        (:mod:`eventsim.engine.slicing`); it then wakes at the tick after the slice."""
        env = self.env
        yield _At(env, 0, TICK)
        while True:
            count = self._slice(env.now)
            if not count:
                stages(env.now)
                count = 1
            yield _At(env, count, TICK)

    def _slice(self, tick: int) -> int:
        """Run the slice that starts at ``tick`` (to the end of the sample or of the run);
        returns its length in ticks, 0 if this tick takes the per-tick path."""
        mode = None if self.slicer is None else self.slicer.mode()
        if mode is None:
            return 0
        phase = self.phase_of(tick)
        count = min(self.sample_ticks - phase, self._until - tick)
        self.slicer.run(tick, phase, count, learn=mode == "learn")
        return count

    def phase_of(self, tick: int) -> int:
        """Tick index within the current sample."""
        return (tick - self.sample_start) % self.sample_ticks

    def _present(self, tick: int) -> None:
        for syn in self.synapses.values():
            syn.new_sample()
        if self.samples_presented:
            self._check_finite(tick)
        self.sample_start = tick
        if self.feed is None:
            return
        x, y_vec, labels = self.feed.next()
        self.populations[self.input_name].set(x)
        self.labels[...] = y_vec
        self.current_labels = labels
        self.samples_presented += 1
        for pop in self.clamped.values():
            pop.set(self.feed.signal(pop.signal))
        if not self.memories_run:
            return
        self.samples_remembered += 1
        for samples, _ in self.sample_memories.values():
            samples.push(x, y_vec)
        for layer, mem in self.memories.items():
            mem.new_sample()
            self.xi_sources[layer].new_sample()

    def _xi(self, layer: str, tick: int):
        """The analytic ξ of ``layer`` at ``tick`` (computed once per tick)."""
        cached = self._xi_cache.get(layer)
        if cached is not None and cached[0] == tick:
            return cached[1]
        value = self.xi_sources[layer](self.phase_of(tick))
        self._xi_cache[layer] = (tick, value)
        return value

    def _sends(self, layer: str, tick: int, phase: int) -> bool:
        """Whether ``layer``'s modulatory channel sends at ``tick`` (``phase`` in the sample)."""
        ch = self.channels.get(layer)
        return (ch is not None and ch.receiver.enabled and self.feed is not None
                and ch.due(tick, phase))

    def _step_layer(self, name: str, tick: int) -> None:
        pop = self.populations[name]
        pop.step()
        mem = self.memories.get(name)
        if mem is None or self.feed is None or not self.memories_run:
            return
        phase = self.phase_of(tick)
        mem.write_z(phase, pop.z)
        if self.modulator == "analytic" and self._sends(name, tick, phase):
            immediate = self.immediate.get(name)
            if immediate is None:
                self.channels[name].send(tick, self._xi(name, tick))
            else:
                immediate(tick, phase)
        if self.objectives_due(phase):
            self.log_objectives(name, tick, phase)

    def objectives_due(self, phase: int) -> bool:
        """Whether the layer objectives are logged at ``phase``: the last of every
        ``objective_every``-th remembered sample."""
        return (phase == self.sample_ticks - 1
                and self.samples_remembered % self.objective_every == 0)

    def log_objectives(self, name: str, tick: int, phase: int) -> None:
        """Log ``name``'s objectives over its memory at ``phase`` (the sample's last)."""
        for metric, value in self.xi_sources[name].objectives(phase).items():
            self.objective_log.append((tick, name, metric, self.backend.to_host(value)))

    def _step_reservoir(self, name: str, tick: int) -> None:
        if not self.memories_run:
            return
        res = self.populations[name]
        res.step([self._tap_value(t) for t in self._taps[name]])
        layer = self._served[name]
        if self.reservoir_drives_layers and self._sends(layer, tick, self.phase_of(tick)):
            self.channels[layer].send(tick, res.r_o.copy())

    def _learn_readout(self, name: str, tick: int) -> None:
        readout = self.readouts[name]
        layer = self._served[name]
        if not readout.enabled or self.feed is None or layer not in self.xi_sources:
            return
        readout.step(tick, self._xi(layer, tick))

    def _probe(self, tick: int) -> None:
        phase = self.phase_of(tick)
        for window in self.windows.values():
            window.record(phase, window.pop.z)
        for probe in self.probes:
            if tick % probe.every == 0:
                probe.record(tick)
        for tracker in self.trackers.values():
            if tracker.pending:
                tracker.record(tick)

    def _check_finite(self, tick: int) -> None:
        xp = self.backend.xp
        for name, pop in self.populations.items():
            for var, arr in pop.state().items():
                if not bool(xp.isfinite(arr).all()):
                    raise DivergenceError(
                        f"diverged: {name}.{var} is not finite at tick {tick} "
                        f"(t = {units.format_ms(tick * self.dt_ms)}) in phase {self.phase!r} "
                        "(hint: lower the learning rate or check the inputs)")

    # ------------------------------------------------------------ public API
    objective_every = 1
    """Log the layer objectives at the end of every this-many-th sample (see
    ``evaluate.objective_every``)."""
    reservoir_drives_layers = False
    """In reservoir mode: whether readouts are broadcast to the layers (train phases)."""
    memories_run = True
    """Whether the working memories take in samples and the reservoirs step (with the
    logged objectives); off during evaluation, which neither reads nor changes them."""

    @property
    def tick(self) -> int:
        return int(self.env.now)

    def run(self, until: int) -> None:
        """Process every tick before ``until`` (an absolute tick).

        Floating-point overflow is not warned about: the divergence guard checks
        every state at each sample boundary and stops the run with its location.
        """
        if until > self.env.now:
            self._until = until
            with np.errstate(over="ignore", invalid="ignore"):
                self.env.run(until=until)

    def restart_clock(self, tick: int) -> None:
        """Continue at ``tick`` on a fresh SimPy environment (restoring a checkpoint).

        Every periodic process first fires at its next due tick; the caller
        restores the state and re-schedules the messages in flight
        (:mod:`eventsim.engine.state`).
        """
        self.env = simpy.Environment(initial_time=int(tick))
        self._start_processes()

    def set_feed(self, feed) -> None:
        """Samples to present: ``feed.next() -> (x (K,D), y_vec (K,Dy), labels (K,))``."""
        self.feed = feed

    def set_learning(self, *, layers: bool, readouts: bool, explore: bool = True,
                     layer_decay_ms: float = 0.0, t_on: int | None = None) -> None:
        """Switch what learns (called at phase boundaries)."""
        t_on = self.tick if t_on is None else t_on
        for syn in self.synapses.values():
            syn.enabled = layers
            syn.decay_ticks = layer_decay_ms / self.dt_ms
            syn.t_on = t_on
        for ro in self.readouts.values():
            if readouts and not ro.enabled:
                ro.t_on = t_on
            ro.enabled = readouts
        for pop in self.populations.values():
            if pop.kind == "reservoir":
                pop.explore = explore

    def set_eta(self, eta: float) -> None:
        for syn in self.synapses.values():
            syn.eta_base = float(eta)

    def probe(self, target: str, every: int = 1) -> Probe:
        """Record ``'<population>.<variable>'`` (or ``'<layer>.xi'``) every ``every`` ticks."""
        pop_name, _, var = target.partition(".")
        if var == "xi":
            if pop_name not in self.xi_sources:
                raise ConfigError(f"cannot probe {target!r}: {pop_name!r} has no learning rule")
            def getter():
                return self._xi(pop_name, self.tick)
        else:
            if pop_name not in self.populations:
                raise ConfigError(f"cannot probe {target!r}: no population {pop_name!r}",
                                  hint="one of " + ", ".join(self.populations))
            state = self.populations[pop_name].state()
            if var not in state:
                raise ConfigError(f"cannot probe {target!r}: {pop_name!r} has no {var!r}",
                                  hint="one of " + ", ".join(state))
            def getter():
                return self.populations[pop_name].state()[var]
        probe = Probe(target, getter, every, self.backend)
        self.probes.append(probe)
        return probe

    def window(self, population: str) -> WindowMean:
        """Sample-window mean recorder for ``population`` (created once)."""
        if population not in self.windows:
            self.windows[population] = WindowMean(self.populations[population],
                                                  self.sample_ticks, self.backend)
        return self.windows[population]
