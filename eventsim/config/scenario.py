"""Scenario files: which network, data, rule, timing and phases to run.

A scenario is validated against the models below; every error names the file,
the line and the field. The network is either a path (relative to the scenario
file) or an inline mapping. ``load_scenario(path, overrides)`` applies dotted
overrides such as ``{"rule.gamma": 10}`` before validation, so overridden values
are checked like any other.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .. import units
from ..errors import ConfigError
from . import channels
from .network import Network, network_from_doc
from .schema import Duration, NonNeg, PosInt, Probability, Strict, validate
from .sweep import Sweep, check_plots, check_zip
from .yamlfile import YamlDoc, load_yaml, parse_yaml

RULES = ("hsic", "phsic", "backprop")


class DatasetSpec(Strict):
    """``name`` of a registered dataset, its ``seed`` (trial k uses seed + k) and the
    factory's own parameters under ``params``."""

    name: str
    seed: int = 0
    params: dict[str, Any] = {}


class Timing(Strict):
    dt: Duration = 1.0
    sample: Duration = 50.0


class Sigma(Strict):
    """Kernel bandwidth scales ``s``; the bandwidth is ``σ = s·sqrt(D)`` (SCIENCE.md §1)."""

    x: NonNeg = 0.2
    y: NonNeg = 0.5
    z: NonNeg = 0.5


class LearningRate(Strict):
    """``eta``: base rate; ``decay``: τ of η/(1 + t/τ) (0 = none); ``schedule``: a map
    from the first epoch of a stage to its rate (replaces ``eta`` from that epoch)."""

    eta: NonNeg = 5e-3
    decay: Duration = 0.0
    momentum: Probability = 0.0
    schedule: dict[int, NonNeg] = {}


TRACE_WINDOWS = ("tick", "sample")


def _trace(value):
    if isinstance(value, str) and value.strip() in TRACE_WINDOWS:
        return value.strip()
    try:
        return units.to_ms(value)
    except ValueError as exc:
        raise PydanticCustomError(
            "trace", str(exc).split(" (")[0],
            {"hint": "give the exponential trace's τ_e (e.g. 20 ms; 0 = e is β) or a fixed "
                     "window: tick | sample"}) from None


Trace = Annotated[float | str, BeforeValidator(_trace)]
"""Eligibility (plasticity/traces.py): a duration τ_e (exponential trace) or a window name."""


class StaticPHSIC(Strict):
    """PL's static trainer (``rule: phsic``, ``mode: static``; PL Eqs. 10–22, 59–62).

    ``sigma`` is the absolute Gaussian bandwidth on the kernel input (PL's
    convention, not a scale); ``online: true`` is the two-point rule on
    consecutive samples (needs ``rule.batch: 2``); ``readout_lr`` is the
    cross-entropy readout's rate (default: the layers' rate), scaled by the same
    schedule; ``beta`` is the two-point rule's running-mean rate.
    ``weight_decay`` / ``readout_weight_decay``: PyTorch SGD's L2 term ``λ`` on
    the layers / the readout (the gradient gains ``λ θ``, before momentum);
    ``dropout``: the probability ``p`` in ``[0, 1)`` that each entry of a layer's
    output is zeroed in training (the kept ones scaled by ``1/(1−p)``); PL's
    MNIST scripts use 1e-7, 1e-6 and 0.01. Defaults 0: neither."""

    sigma: NonNeg = 5.0
    grouping: Literal["none", "grouped", "divisive"] = "none"
    groups: PosInt = 32
    delta: NonNeg = 1.0
    power: NonNeg | None = None
    activation: Literal["leaky_relu", "tanh"] = "leaky_relu"
    online: bool = False
    beta: Probability = 0.1
    readout_lr: NonNeg | None = None
    weight_decay: NonNeg = 0.0
    readout_weight_decay: NonNeg = 0.0
    dropout: Probability = 0.0


class Rule(Strict):
    """The learning rule. ``hsic``: DL three-factor rule (``xi``: paper = DL Eq. 8,
    exact = ξ*); ``phsic``: PL pHSIC rule, on the engine or (``mode: static``) by
    PL's static minibatch / two-point trainer; ``backprop``: the SGD baseline. ``trace``:
    the eligibility, a duration τ_e (exponential) or ``tick`` / ``sample`` (fixed window)."""

    name: Literal["hsic", "phsic", "backprop"] = "hsic"
    xi: Literal["paper", "exact"] = "paper"
    gamma: NonNeg | dict[str, NonNeg] = 2.0
    memory: PosInt = 10
    sigma: Sigma = Sigma()
    lr: LearningRate = LearningRate()
    trace: Trace = 0.0
    batch: PosInt = 32
    kernel: Literal["gaussian", "cosine"] = "gaussian"
    mode: Literal["engine", "static"] = "engine"
    static: StaticPHSIC = StaticPHSIC()


class ChannelOverride(Strict):
    delay: Duration | None = None
    jitter: Duration | None = None
    jitter_dist: Literal["uniform", "normal"] | None = None
    loss: Probability | None = None
    period: Duration | None = None
    broadcast: Literal["tick", "sample", "burst"] | None = None
    phase: Duration | None = None
    burst: Duration | None = None


class Modulator(Strict):
    """``analytic``: ξ from the working memory; ``reservoir``: simulated reservoirs.
    ``all`` overrides every modulatory edge; ``channels.<layer>`` one layer's (wins)."""

    source: Literal["analytic", "reservoir"] = "analytic"
    all: ChannelOverride = ChannelOverride()
    channels: dict[str, ChannelOverride] = {}


class ReadoutSpec(Strict):
    """Reservoir readout learning (DL Eq. 10/13): ``eta0``, its ``decay`` τ_decay and the
    filters' ``lpf`` τ_lpf; ``window``: the readout is scored against the true ξ over the
    first and the last ``window`` of every phase. ``reward``: ``total`` (DL Eq. 10, one
    scalar reward and gate for the whole readout) or ``per_output`` (not the paper's: one
    reward, filter and gate per readout element)."""

    eta0: NonNeg = 1e-4
    decay: Duration = 20_000.0
    lpf: Duration = 5.0
    window: Duration = 5_000.0
    reward: Literal["total", "per_output"] = "total"


class Phase(Strict):
    """A stretch of the run. Give ``epochs`` (passes over the training set) or a
    ``duration``. ``learn`` lists what learns: ``layers`` and/or ``readouts``;
    ``explore``: the readout exploration noise ζ_o is on; ``order``: the training
    samples come in a fresh per-trial random order on every pass (``shuffled``) or
    in their stored order on every pass (``fixed``, as in the authors' warm-up,
    pre-training and reservoir test)."""

    name: str
    epochs: PosInt | None = None
    duration: Duration | None = None
    learn: list[Literal["layers", "readouts"]] = []
    explore: bool = True
    order: Literal["shuffled", "fixed"] = "shuffled"

    @model_validator(mode="after")
    def _one_length(self):
        if (self.epochs is None) == (self.duration is None):
            raise ValueError("give exactly one of 'epochs' and 'duration'")
        return self


class Evaluate(Strict):
    """Linear readout on the last layer (fit on train, scored on test) every
    ``every`` epochs (0: only at the end); ``layers`` adds a readout per listed layer.

    ``objective_every``: the layer objectives (DL Eq. 2/3 and PL Eq. 34 over the
    working memory, the metrics ``objective_dl/<layer>`` and ``objective_pl/<layer>``,
    each the mean over an epoch or phase) are computed at the end of every
    ``objective_every``-th training sample. 1 logs every sample; the memory capacity N
    gives memories that share no sample, at 1/N of the cost (on MNIST, logging every
    sample takes about 15 % of a training tick). Learning is the same either way.
    """

    every: int = Field(default=0, ge=0)
    objective_every: PosInt = 1
    layers: list[str] = []
    """Layers scored besides the last (engine runs): a readout of its own per layer,
    the metrics ``accuracy/train/<layer>`` and ``accuracy/test/<layer>``."""


def _epoch_count(value):
    """``1 epoch``, ``5 epochs`` or a plain integer (0: never)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(epochs?)?\s*", value)
        if match is None:
            raise PydanticCustomError("epochs", f"expected a number of epochs, got {value!r}",
                                      {"hint": "write e.g. '1 epoch' or '5 epochs'"})
        return int(match.group(1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PydanticCustomError("epochs", f"expected a number of epochs, got {value!r}",
                                  {"hint": "write e.g. '1 epoch' or '5 epochs' (0: never)"})
    return value


class Checkpoint(Strict):
    """Save the complete state into the run directory every ``every`` epochs (0: never;
    Ctrl-C always saves one)."""

    every: Annotated[int, BeforeValidator(_epoch_count)] = 0


class ProbeSpec(Strict):
    target: str
    every: PosInt = 1


class ScenarioFile(Strict):
    name: str
    description: str = ""
    network: str | dict[str, Any]
    backend: Literal["numpy", "numba", "cupy"] | None = None
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    trials: PosInt = 1
    dataset: DatasetSpec
    timing: Timing = Timing()
    rule: Rule = Rule()
    modulator: Modulator = Modulator()
    readout: ReadoutSpec = ReadoutSpec()
    phases: list[Phase] = []
    evaluate: Evaluate = Evaluate()
    probes: list[ProbeSpec] = []
    checkpoint: Checkpoint = Checkpoint()
    sweep: Sweep | None = None


@dataclass
class Scenario:
    """A validated scenario with its network and source document."""

    spec: ScenarioFile
    network: Network
    doc: YamlDoc
    path: Path | None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def seeds(self) -> list[int]:
        return [self.spec.seed + k for k in range(self.spec.trials)]

    def error(self, path, message: str, hint: str | None = None) -> ConfigError:
        return self.doc.error(path, message, hint)

    def resolved(self) -> dict:
        """The fully resolved configuration (defaults filled, network inlined)."""
        out = self.spec.model_dump(mode="json", by_alias=True)
        g = self.network.graph
        out["network"] = {
            "name": self.network.name,
            "description": self.network.description,
            "populations": {n: a["spec"].model_dump(mode="json")
                            for n, a in g.nodes(data=True) if a["spec"] is not None},
            "projections": [d["spec"].model_dump(mode="json", by_alias=True)
                            for _, _, d in sorted(g.edges(data=True),
                                                  key=lambda e: e[2]["index"])],
        }
        return out


def apply_overrides(data: dict, overrides: dict | None, doc: YamlDoc) -> dict:
    """Set dotted keys (``"rule.lr.eta"``) in a copy of ``data``."""
    if not overrides:
        return data
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        parts = key.split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part) if isinstance(node, dict) else None
            if nxt is None:
                nxt = {}
                node[part] = nxt
            if not isinstance(nxt, dict):
                raise doc.error(tuple(parts[: i + 1]),
                                f"cannot override {key!r}: {'.'.join(parts[: i + 1])} is not a "
                                "mapping")
            node = nxt
        node[parts[-1]] = value
    return data


def scenario_from_doc(doc: YamlDoc, path: Path | None, overrides: dict | None = None) -> Scenario:
    data = apply_overrides(doc.data, overrides, doc)
    spec = validate(ScenarioFile, doc, data)
    if isinstance(spec.network, dict):
        network = network_from_doc(doc, ("network",))
    else:
        base = path.parent if path is not None else Path.cwd()
        net_path = (base / spec.network).resolve()
        if not net_path.exists():
            raise doc.error(("network",), f"network file not found: {net_path}",
                            "the path is relative to the scenario file")
        network = network_from_doc(load_yaml(net_path))
    scenario = Scenario(spec=spec, network=network, doc=doc, path=path)
    _check(scenario)
    return scenario


def _check(sc: Scenario) -> None:
    layers = set(sc.network.nodes_of("layer"))
    gamma = sc.spec.rule.gamma
    if isinstance(gamma, dict):
        for layer in gamma:
            if layer not in layers:
                raise sc.error(("rule", "gamma", layer), f"unknown layer {layer!r}",
                               "one of " + ", ".join(sorted(layers)))
        missing = layers - set(gamma)
        if missing:
            raise sc.error(("rule", "gamma"), f"no gamma for layer(s) {', '.join(sorted(missing))}",
                           "give one value per layer, or a single number")
    rule = sc.spec.rule
    if rule.name == "phsic" and rule.mode == "static":
        if rule.static.online and rule.batch != 2:
            raise sc.error(("rule", "batch"), "the online two-point rule pairs consecutive "
                           "samples", "set batch: 2 with static.online: true")
        if not rule.static.online and rule.batch < 2:
            raise sc.error(("rule", "batch"), "the pHSIC batch rule needs a batch of at least 2",
                           "e.g. batch: 256, or static.online: true with batch: 2")
        if rule.static.dropout >= 1:
            raise sc.error(("rule", "static", "dropout"), "dropout 1 would drop every unit",
                           "use a probability in [0, 1), e.g. 0.01")
    for layer in sc.spec.modulator.channels:
        if layer not in layers:
            raise sc.error(("modulator", "channels", layer), f"unknown layer {layer!r}",
                           "channels are keyed by the layer they modulate")
    if sc.spec.modulator.source == "reservoir" and not sc.network.nodes_of("reservoir"):
        raise sc.error(("modulator", "source"), "the network has no reservoirs",
                       "use source: analytic")
    for i, phase in enumerate(sc.spec.phases):
        if "readouts" in phase.learn and sc.spec.modulator.source != "reservoir":
            raise sc.error(("phases", i, "learn"), "readouts learn only with reservoirs",
                           "set modulator.source: reservoir")
    for i, layer in enumerate(sc.spec.evaluate.layers):
        if layer not in layers:
            raise sc.error(("evaluate", "layers", i), f"unknown layer {layer!r}",
                           "one of " + ", ".join(sorted(layers)))
    if sc.spec.evaluate.layers and (rule.name == "backprop"
                                    or (rule.name == "phsic" and rule.mode == "static")):
        raise sc.error(("evaluate", "layers"), "per-layer readouts score engine runs only",
                       "remove evaluate.layers, or use rule hsic (or phsic, mode: engine)")
    if sc.spec.checkpoint.every and sc.spec.rule.name == "backprop":
        raise sc.error(("checkpoint", "every"), "the backprop baseline does not checkpoint",
                       "remove checkpoint, or use rule hsic or phsic")
    if sc.spec.sweep is not None:
        check_zip(sc)
        check_plots(sc)
    _check_ticks(sc)


def _check_ticks(sc: Scenario) -> None:
    """Every duration the clock counts must be a whole number of ticks of ``timing.dt``.

    Checked here, so that ``validate`` catches it, and located at the field that
    sets the value: the scenario (timing, phases, channel overrides) or the
    network (time constants and channel timing that the scenario does not override).
    """
    spec = sc.spec
    dt = spec.timing.dt
    if dt <= 0:
        raise sc.error(("timing", "dt"), "dt must be positive", "e.g. dt: 1 ms")

    def whole(doc, path, ms, minimum=0):
        try:
            ticks = units.to_ticks(ms, dt)
        except ValueError:
            raise doc.error(path, f"{ms:.12g} ms is {ms / dt:.12g} ticks of dt = {dt:.12g} ms, "
                                  "not a whole number",
                            f"use a multiple of {dt:.12g} ms") from None
        if ticks < minimum:
            raise doc.error(path, f"{ms:.12g} ms is shorter than one tick (dt = {dt:.12g} ms)",
                            f"use a positive multiple of {dt:.12g} ms")

    whole(sc.doc, ("timing", "sample"), spec.timing.sample, minimum=1)
    whole(sc.doc, ("readout", "window"), spec.readout.window)
    for i, phase in enumerate(spec.phases):
        if phase.duration is not None:
            whole(sc.doc, ("phases", i, "duration"), phase.duration)
    net = sc.network
    base = ("network",) if isinstance(spec.network, dict) else ()
    for name, attrs in net.graph.nodes(data=True):
        if attrs["kind"] == "layer" or (attrs["kind"] == "reservoir"
                                        and spec.modulator.source == "reservoir"):
            whole(net.doc, (*base, "populations", name, "tau"), attrs["spec"].tau)
    for _, layer, data in net.edges_of("modulatory"):
        where = (*base, "projections", data["index"])
        settings = channels.merged_settings(sc, layer, net.doc, where, data["spec"])
        channels.check(settings, dt=dt, sample=spec.timing.sample)


def load_scenario(path, overrides: dict | None = None) -> Scenario:
    """Load and validate a scenario file (and its network)."""
    p = Path(path)
    return scenario_from_doc(load_yaml(p), p.resolve(), overrides)


def parse_scenario(text: str, file: str = "<string>", overrides: dict | None = None) -> Scenario:
    return scenario_from_doc(parse_yaml(text, file), None, overrides)
