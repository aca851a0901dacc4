"""Run a scenario: build data and simulator, drive the phases, evaluate, collect metrics.

Phases run in order. An ``epochs`` phase presents the training set once per
epoch in a fresh per-trial order; a ``duration`` phase keeps cycling through
it. Evaluation (``evaluate.every`` epochs and at the end) presents the training
set and then the test set with all learning off, records the last layer's mean
rate over each sample window, fits the linear readout on the training windows
and scores it on the test windows. When the run's last epoch is one of every
``evaluate.every``, the final evaluation is its evaluation (phase ``final`` in
the metrics), not a second one. The working memories and the reservoirs pause
during an evaluation (no sample enters them and no objective is logged), so
evaluation samples never enter learning or the training metrics.

Signal data (the reservoir test of DL §6.1) has no classes: it is presented
like a training set (a clamped layer holds its named signal) and there is no
evaluation. In reservoir mode every reservoir's readout is scored against its
true ξ over the first and the last ``readout.window`` of every phase
(metrics ``xi_corr/<layer>``, ``xi_nmse/<layer>``, summary ``xi_scores``); the
end window of an ``epochs`` phase lies within its last epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint, units
from .backend import Backend, RandomStreams, get_backend
from .config import channels as channel_settings
from .config.scenario import Scenario
from .data.dataset import Dataset, load_dataset
from .engine.simulator import LayerRule, ReadoutRule, Simulator
from .errors import ConfigError, Interrupted
from .evaluate import fit_readout, readout_accuracy
from .feed import SampleFeed, SignalFeed
from .plasticity.kernels import default_sigma


@dataclass
class Position:
    """Where a run stands, so that it can continue from a checkpoint.

    ``phase``: index of the current phase (``len(phases)``: the final
    evaluation); ``phase_start``: its first tick (None until it begins);
    ``epoch_in_phase``: epochs of it completed; ``segment_start``: first tick of
    the stretch of training under way (None between stretches); ``evaluate``: an
    evaluation is due before the next epoch.
    """

    phase: int = 0
    phase_start: int | None = None
    epoch_in_phase: int = 0
    segment_start: int | None = None
    evaluate: bool = False


@dataclass
class RunResult:
    """What a run produced (host arrays and tidy metric rows)."""

    scenario: Scenario
    backend: Backend
    metrics: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    """Per modulatory channel its compact record (:mod:`eventsim.records`)."""
    traces: dict = field(default_factory=dict)
    phases: list = field(default_factory=list)
    weights: dict = field(default_factory=dict)
    ticks: int = 0
    wall_time_s: float = 0.0

    @property
    def test_accuracy(self) -> np.ndarray:
        return np.asarray(self.summary.get("test_accuracy", []))


def _backend(scenario: Scenario, name: str | None) -> Backend:
    return get_backend(name or scenario.spec.backend, scenario.spec.dtype)


def build_rules(sc: Scenario, ds: Dataset) -> dict[str, LayerRule]:
    """One :class:`LayerRule` per layer, bandwidths ``σ = s·sqrt(D)``."""
    r = sc.spec.rule
    g = sc.network.graph
    rules = {}
    form = "phsic" if r.name == "phsic" else r.xi
    for layer in sc.network.nodes_of("layer"):
        gamma = r.gamma[layer] if isinstance(r.gamma, dict) else r.gamma
        rules[layer] = LayerRule(
            gamma=float(gamma), memory=r.memory,
            sigma_x=default_sigma(r.sigma.x, ds.input_dim),
            sigma_y=default_sigma(r.sigma.y, ds.label_dim),
            sigma_z=default_sigma(r.sigma.z, g.nodes[layer]["size"]),
            form=form, momentum=r.lr.momentum,
            tau_e_ms=r.trace if isinstance(r.trace, float) else 0.0,
            window=r.trace if isinstance(r.trace, str) else None)
    return rules


def make_simulator(sc: Scenario, ds: Dataset, backend: Backend) -> Simulator:
    t = sc.spec.timing
    sample_ticks = _ticks(sc, t.sample, ("timing", "sample"), t.dt)
    overrides = channel_settings.overrides(sc)
    ro = sc.spec.readout
    sim = Simulator(sc.network, seeds=sc.seeds, backend=backend, dt_ms=t.dt,
                    sample_ticks=sample_ticks, label_dim=ds.label_dim,
                    rules=build_rules(sc, ds), modulator=sc.spec.modulator.source,
                    readout=ReadoutRule(eta0=ro.eta0, tau_decay_ms=ro.decay, tau_lpf_ms=ro.lpf,
                                        reward=ro.reward),
                    channel_overrides=overrides)
    sim.objective_every = sc.spec.evaluate.objective_every
    return sim


def _ticks(sc: Scenario, ms: float, path: tuple, dt: float) -> int:
    try:
        return units.to_ticks(ms, dt)
    except ValueError as exc:
        raise sc.error(path, str(exc)) from None


def load_scenario_dataset(sc: Scenario) -> Dataset:
    d = sc.spec.dataset
    try:
        ds = load_dataset(d.name, trials=sc.spec.trials, seed=d.seed, **d.params)
    except ConfigError:
        raise
    except Exception as exc:  # dataset factories raise DatasetError; name the field
        param = getattr(exc, "param", None)
        where = ("dataset", "params", param) if param in d.params else ("dataset",)
        raise sc.error(where, str(exc)) from None
    inputs = sc.network.inputs()
    size = sc.network.graph.nodes[inputs[0]]["size"]
    if size != ds.input_dim:
        raise sc.error(("dataset", "name"),
                       f"size mismatch: dataset {d.name!r} has {ds.input_dim} inputs but "
                       f"population {inputs[0]!r} has size {size}",
                       "match the network's input size to the data")
    signals = getattr(ds, "signals", {})
    net = sc.network
    for layer in net.nodes_of("layer"):
        spec = net.graph.nodes[layer]["spec"]
        if spec.clamp is None:
            continue
        base = ("network",) if isinstance(sc.spec.network, dict) else ()
        where = (*base, "populations", layer, "clamp")
        if spec.clamp not in signals:
            raise net.doc.error(where, f"dataset {d.name!r} has no signal {spec.clamp!r} to clamp "
                                       f"layer {layer!r} to",
                                "signals: " + (", ".join(signals) or "none (a classification "
                                               "dataset)"))
        dim = signals[spec.clamp].shape[-1]
        if dim != spec.size:
            raise net.doc.error(where, f"size mismatch: signal {spec.clamp!r} has {dim} "
                                       f"dimensions but layer {layer!r} has size {spec.size}",
                                "match the layer's size to the signal")
    return ds


def eta_for_epoch(lr, epoch: int) -> float:
    """The rate of ``epoch`` (0-based): the last schedule entry at or before it."""
    eta = lr.eta
    for start in sorted(lr.schedule):
        if epoch >= start:
            eta = lr.schedule[start]
    return eta


class Runner:
    """Drives one scenario on the engine (rules ``hsic`` and ``phsic`` in engine mode).

    The run can stop and continue: :mod:`eventsim.checkpoint` captures the
    simulator and :attr:`position` and restores them into a new runner. With
    :attr:`checkpoints` set (a :class:`~eventsim.checkpoint.Checkpointer`) it
    saves every ``checkpoint.every`` epochs, and :attr:`stop_requested` (set by
    Ctrl-C or SIGTERM) makes it save and raise :class:`~eventsim.errors.Interrupted` at the
    next chunk boundary inside a stretch of ticks, or at the end of the epoch or
    phase.
    """

    def __init__(self, sc: Scenario, *, backend: str | None = None, progress=None) -> None:
        self.sc = sc
        self.backend = _backend(sc, backend)
        self.ds = load_scenario_dataset(sc)
        self.sim = make_simulator(sc, self.ds, self.backend)
        self.classification = isinstance(self.ds, Dataset)
        self.out_layer = sc.network.nodes_of("layer")[-1]
        self.progress = progress
        self.result = RunResult(scenario=sc, backend=self.backend)
        self.train_streams = RandomStreams(sc.seeds, "presenter")
        self.feeds: dict[str, SampleFeed | SignalFeed] = {}
        """One training feed per presentation order; a phase continues its order's pass."""
        self.epoch = 0
        self.position = Position()
        self.probes = [self.sim.probe(p.target, p.every) for p in sc.spec.probes]
        self.checkpoints = None
        self.stop_requested = False
        self._resume_point = None
        self._started = time.time()

    def total_ticks(self) -> int:
        """Ticks the whole run will take (phases plus evaluation passes)."""
        t = self.sim.sample_ticks
        n_train = self.samples
        n_test = self.ds.x_test.shape[1] if self.classification else 0
        total, epochs = 0, 0
        for phase in self.sc.spec.phases:
            if phase.epochs is not None:
                total += phase.epochs * n_train * t
                epochs += phase.epochs
            else:
                total += int(round(phase.duration / self.sim.dt_ms))
        every = self.sc.spec.evaluate.every
        periodic = epochs // every if every else 0
        if periodic and self.sc.spec.phases[-1].epochs is not None and epochs % every == 0:
            periodic -= 1  # the last epoch's evaluation is the final one
        evaluations = 1 + periodic if self.classification else 0
        return total + evaluations * (n_train + n_test) * t

    @property
    def samples(self) -> int:
        return self.ds.x_train.shape[1] if self.classification else self.ds.samples

    def _feed(self, split: str, shuffle: bool) -> SampleFeed | SignalFeed:
        streams = self.train_streams if shuffle else None
        if not self.classification:
            return SignalFeed(self.ds, self.backend, streams)
        x = getattr(self.ds, f"x_{split}")
        y = getattr(self.ds, f"y_{split}")
        return SampleFeed(x, y, self.ds.n_classes, self.backend, streams)

    def train_feed(self, order: str) -> SampleFeed | SignalFeed:
        """The training feed of presentation ``order`` ('shuffled' or 'fixed')."""
        if order not in self.feeds:
            self.feeds[order] = self._feed("train", shuffle=order == "shuffled")
        return self.feeds[order]

    def _metric(self, phase: str, metric: str, values, epoch=None) -> None:
        for k, v in enumerate(np.ravel(values)):
            self.result.metrics.append({"phase": phase, "epoch": epoch, "tick": self.sim.tick,
                                        "trial": k, "metric": metric, "value": float(v)})

    def _advance(self, ticks: int) -> None:
        end = self.sim.tick + ticks
        chunk = max(self.sim.sample_ticks, 1000 // self.sim.sample_ticks * self.sim.sample_ticks)
        while self.sim.tick < end:
            target = min(end, self.sim.tick + chunk)
            self.sim.run(target)
            if self.progress is not None:
                self.progress.advance(self.sim.tick)
            if self.sim.tick < end:  # at the end, the caller's bookkeeping comes first
                self._stop_if_requested()

    def elapsed_s(self) -> float:
        """Wall time of this run so far, earlier sessions of a resumed run included."""
        return time.time() - self._started

    def _stop_if_requested(self) -> None:
        """On a stop request save a checkpoint (during an evaluation: the state from just
        before it) and raise :class:`~eventsim.errors.Interrupted`."""
        if not self.stop_requested:
            return
        state = self._resume_point or checkpoint.capture(self)
        where = checkpoint.describe(state)
        if self.checkpoints is None:
            raise Interrupted(f"interrupted; {where} was not saved")
        self.checkpoints.save(state)
        directory = self.checkpoints.directory
        raise Interrupted(f"interrupted; {where}; saved in {directory} "
                          f"(hint: continue with: eventsim run --resume {directory})")

    def _checkpoint_if_due(self) -> None:
        every = self.sc.spec.checkpoint.every
        if self.checkpoints is not None and every and self.epoch % every == 0:
            self.checkpoints.save(checkpoint.capture(self))

    def _flush_objectives(self, phase: str, epoch) -> None:
        by_key: dict[tuple[str, str], list] = {}
        for _, layer, metric, value in self.sim.objective_log:
            by_key.setdefault((metric, layer), []).append(value)
        self.sim.objective_log.clear()
        for (metric, layer), values in by_key.items():
            # mean over ticks per trial column: the same summation order for any K
            self._metric(phase, f"{metric}/{layer}", np.stack(values, axis=-1).mean(axis=-1),
                         epoch)

    def _track(self, phase: str, where: str, start: int, end: int) -> None:
        """Score every readout against its true ξ over ticks ``[start, end)``."""
        for tracker in self.sim.trackers.values():
            tracker.add(phase, where, start, end)

    def _xi_scores(self) -> None:
        scores = []
        for tracker in self.sim.trackers.values():
            for w in tracker.done:
                for key in ("corr", "nmse"):
                    for k, v in enumerate(w.scores[key]):
                        self.result.metrics.append({
                            "phase": w.phase, "epoch": None, "tick": w.end, "trial": k,
                            "metric": f"xi_{key}/{tracker.layer}", "value": float(v)})
                scores.append({"layer": tracker.layer, "reservoir": tracker.reservoir,
                               "phase": w.phase, "window": w.where, "start_tick": w.start,
                               "end_tick": w.end,
                               **{key: [float(v) for v in w.scores[key]]
                                  for key in ("corr", "nmse")}})
            self.result.traces.update(tracker.traces())
        if scores:
            self.result.summary["xi_scores"] = scores

    def _learn(self, phase) -> None:
        """Switch on what ``phase`` trains (at its start and after each evaluation)."""
        lr = self.sc.spec.rule.lr
        learn_layers = "layers" in phase.learn
        self.sim.set_learning(layers=learn_layers, readouts="readouts" in phase.learn,
                              explore=phase.explore, layer_decay_ms=lr.decay,
                              t_on=self.position.phase_start)
        self.sim.reservoir_drives_layers = learn_layers

    def _train(self, ticks: int, eta: float) -> None:
        """Run a stretch of ``ticks`` at rate ``eta`` (the rest of it, when resumed inside it)."""
        pos = self.position
        if pos.segment_start is None:
            pos.segment_start = self.sim.tick
            self.sim.set_eta(eta)
        self._advance(pos.segment_start + ticks - self.sim.tick)
        pos.segment_start = None

    def _evaluate_resumable(self, phase: str) -> dict:
        """:meth:`evaluate`; a stop during it saves the state from just before it."""
        self._stop_if_requested()
        if self.checkpoints is not None:
            self._resume_point = checkpoint.capture(self)
        try:
            return self.evaluate(phase)
        finally:
            self._resume_point = None

    def _ends_training(self, phase) -> bool:
        """Whether the epoch just completed is the run's last: no epoch of ``phase`` and no
        phase after it are left, so the final evaluation follows it directly."""
        return (self.position.phase == len(self.sc.spec.phases) - 1
                and self.position.epoch_in_phase == phase.epochs)

    def _run_phase(self, phase) -> None:
        sim, pos = self.sim, self.position
        sim.phase = phase.name
        if self.progress is not None:
            self.progress.set_phase(phase.name)
        lr = self.sc.spec.rule.lr
        every = self.sc.spec.evaluate.every
        window = _ticks(self.sc, self.sc.spec.readout.window, ("readout", "window"), sim.dt_ms)
        epoch_ticks = self.samples * sim.sample_ticks
        ticks = (_ticks(self.sc, phase.duration, ("phases",), sim.dt_ms)
                 if phase.epochs is None else None)
        if pos.phase_start is None:
            pos.phase_start = start = sim.tick
            self._learn(phase)
            if ticks is None:
                self._track(phase.name, "start", start, start + min(window, epoch_ticks))
            else:
                self._track(phase.name, "start", start, start + min(window, ticks))
                self._track(phase.name, "end", start + max(0, ticks - window), start + ticks)
        feed = self.train_feed(phase.order)
        sim.set_feed(feed)
        if phase.epochs is not None:
            while pos.epoch_in_phase < phase.epochs or pos.evaluate:
                if not pos.evaluate:
                    if pos.epoch_in_phase == phase.epochs - 1 and pos.segment_start is None:
                        end = sim.tick + epoch_ticks
                        self._track(phase.name, "end", max(sim.tick, end - window), end)
                    self._train(self.samples * sim.sample_ticks, eta_for_epoch(lr, self.epoch))
                    self.epoch += 1
                    pos.epoch_in_phase += 1
                    self._flush_objectives(phase.name, self.epoch)
                    self._report(f"epoch {self.epoch}")
                    pos.evaluate = bool(every) and self.epoch % every == 0
                if pos.evaluate and self._ends_training(phase):
                    pos.evaluate = False  # the final evaluation, next, is this epoch's
                if pos.evaluate:
                    self._evaluate_resumable(phase.name)
                    pos.evaluate = False
                    self._learn(phase)
                    sim.set_feed(feed)
                self._checkpoint_if_due()
                self._stop_if_requested()
        else:
            self._train(ticks, eta_for_epoch(lr, self.epoch))
            self._flush_objectives(phase.name, None)
        self.result.phases.append({"name": phase.name, "start_tick": pos.phase_start,
                                   "end_tick": sim.tick})

    def run(self) -> RunResult:
        """Run the phases and the final evaluation, from :attr:`position` on."""
        self._started = time.time() - self.result.wall_time_s
        phases = self.sc.spec.phases
        while self.position.phase < len(phases):
            self._run_phase(phases[self.position.phase])
            self.position = Position(phase=self.position.phase + 1)
            self._stop_if_requested()
        self._xi_scores()
        if self.classification:
            self.sim.phase = "evaluate"
            eval_start = self.sim.tick
            accuracy = self._evaluate_resumable("final")
            self.result.phases.append({"name": "evaluate", "start_tick": eval_start,
                                       "end_tick": self.sim.tick})
            self.result.summary["test_accuracy"] = accuracy["test"]
            self.result.summary["train_accuracy"] = accuracy["train"]
            self._weight_ratio()
        self.result.weights = final_weights(self.sim)
        self.result.channels = {name: ch.record() for name, ch in self.sim.channels.items()}
        self.result.traces.update({p.name: p.data() for p in self.probes})
        self.result.ticks = self.sim.tick
        self.result.wall_time_s = self.elapsed_s()
        return self.result

    def _report(self, prefix: str) -> None:
        if self.progress is None:
            return
        last = {}
        for row in self.result.metrics:
            last[row["metric"]] = row
        wanted = ("accuracy/test", f"objective_dl/{self.out_layer}")
        shown = [m for m in last if m.startswith(wanted)]
        parts = []
        for metric in shown:
            vals = [r["value"] for r in self.result.metrics
                    if r["metric"] == metric and r["tick"] == last[metric]["tick"]]
            parts.append(f"{metric}={np.mean(vals):.4g}")
        self.progress.metric(f"{prefix} " + " ".join(parts))

    def evaluate(self, phase: str) -> dict:
        """Fit the readout on training windows, score on test windows (learning off).

        The last layer's scores are ``accuracy/train`` and ``accuracy/test``; each layer
        of ``evaluate.layers`` gets a readout of its own, ``accuracy/<split>/<layer>``.
        """
        sim = self.sim
        sim.set_learning(layers=False, readouts=False, explore=False)
        sim.memories_run = False
        scored = [self.out_layer] + [n for n in self.sc.spec.evaluate.layers
                                     if n != self.out_layer]
        windows = {name: sim.window(name) for name in scored}
        for window in windows.values():
            window.enabled = True
        feats = {name: {} for name in scored}
        for split in ("train", "test"):
            n = getattr(self.ds, f"x_{split}").shape[1]
            sim.set_feed(self._feed(split, shuffle=False))
            self._advance(n * sim.sample_ticks)
            for name, window in windows.items():
                feats[name][split] = window.take()
        for window in windows.values():
            window.enabled = False
        sim.memories_run = True
        epoch = self.epoch
        accuracy = {name: self._score(feats[name]) for name in scored}
        for name, acc in accuracy.items():
            suffix = "" if name == self.out_layer else f"/{name}"
            self._metric(phase, f"accuracy/train{suffix}", acc["train"], epoch)
            self._metric(phase, f"accuracy/test{suffix}", acc["test"], epoch)
        self._report(f"evaluation after epoch {epoch}")
        test_feats = feats[self.out_layer]["test"]
        self.result.summary["code_words"] = _code_words(test_feats, self.ds)
        n_test = test_feats.shape[1]
        test_ticks = sim.tick - (n_test - np.arange(n_test)) * sim.sample_ticks
        self.result.traces[f"{self.out_layer}.code"] = (test_ticks,
                                                        test_feats.swapaxes(0, 1))
        self.result.traces[f"{self.out_layer}.label"] = (test_ticks,
                                                         np.asarray(self.ds.y_test).T)
        return accuracy[self.out_layer]

    def _score(self, feats: dict) -> dict:
        """Readout fitted on ``feats['train']`` (K, samples, units); accuracy per split."""
        be = self.backend
        readout = fit_readout(be.asarray(feats["train"]), be.xp.asarray(self.ds.y_train),
                              self.ds.n_classes)
        return {split: be.to_host(readout_accuracy(readout, be.asarray(feats[split]),
                                                   be.xp.asarray(getattr(self.ds, f"y_{split}"))))
                for split in ("train", "test")}

    def _weight_ratio(self) -> None:
        """DL Fig. 5B: learned ``W[1]/W[0]`` vs the true ``w[1]/w[0]`` (2-input perceptron)."""
        w_true = self.ds.meta.get("w")
        layers = self.sc.network.nodes_of("layer")
        if w_true is None or len(layers) != 1:
            return
        W = self.backend.to_host(self.sim.populations[layers[0]].W)
        if W.shape[1:] != (1, 2):
            return
        self.result.summary["weight_ratio"] = W[:, 0, 1] / W[:, 0, 0]
        self.result.summary["true_ratio"] = np.asarray(w_true)[:, 1] / np.asarray(w_true)[:, 0]


def final_weights(sim) -> dict[str, np.ndarray]:
    """Host copies of the learned weights: ``<layer>.W`` and ``<reservoir>.W_o``."""
    out = {}
    for name, pop in sim.populations.items():
        for var in ("W", "W_o"):
            if var in pop.state():
                out[f"{name}.{var}"] = sim.backend.to_host(pop.state()[var]).copy()
    return out


def _code_words(features: np.ndarray, ds: Dataset) -> np.ndarray:
    """Mean last-layer rate per class on the test set (DL Fig. 8), (K, classes, units)."""
    y = np.asarray(ds.y_test)
    out = np.zeros((features.shape[0], ds.n_classes, features.shape[2]))
    for c in range(ds.n_classes):
        mask = (y == c)[..., None]
        out[:, c] = (features * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
    return out


def run_scenario(sc: Scenario, *, backend: str | None = None, progress=None) -> RunResult:
    """Run ``sc`` and return its :class:`RunResult`."""
    if sc.spec.rule.name == "backprop":
        from .baselines.runner import run_backprop_scenario  # noqa: PLC0415

        return run_backprop_scenario(sc, backend=_backend(sc, backend))
    if sc.spec.rule.name == "phsic" and sc.spec.rule.mode == "static":
        from .baselines.phsic_static import run_phsic_static_scenario  # noqa: PLC0415

        return run_phsic_static_scenario(sc, backend=_backend(sc, backend), progress=progress)
    if not sc.spec.phases:
        raise sc.error(("phases",), "the scenario has no phases",
                       "add e.g. phases: [{name: train, epochs: 50, learn: [layers]}]")
    return Runner(sc, backend=backend, progress=progress).run()
