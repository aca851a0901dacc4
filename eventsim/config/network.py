"""Network files: YAML -> validated models -> ``networkx.DiGraph``.

Nodes are populations (attribute ``kind`` in ``input``, ``layer``, ``reservoir``,
plus the implicit ``labels`` source when a tap names it), with ``size`` and
``spec`` (the validated model). Edges are projections with ``kind`` in
``feedforward``, ``modulatory`` and ``tap`` and their ``spec``. Every error
names the file, the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import networkx as nx
from pydantic import Discriminator, Field, Tag

from ..units import format_ms
from . import channels
from .schema import Duration, NonNeg, PosInt, Probability, Strict, did_you_mean, validate
from .yamlfile import YamlDoc, load_yaml, parse_yaml

LABELS = "labels"
"""Reserved source name for taps that feed the current label vector to a reservoir."""


class InitSpec(Strict):
    """Initial feed-forward weights: ``normal`` (mean 0, ``std``) or ``uniform`` in ±``scale``.

    Without ``std`` / ``scale`` the width is ``1/sqrt(fan_in)``.
    """

    dist: Literal["normal", "uniform"] = "normal"
    std: NonNeg | None = None
    scale: NonNeg | None = None


class InputPop(Strict):
    """Input rates held for a sample's presentation."""

    kind: Literal["input"]
    size: PosInt


class LayerPop(Strict):
    """Rate 'LIF' layer, DL Eq. 6: ``u += dt/τ(−u + W z_pre)``, ``z = tanh(u) + ζ``.

    ``clamp``: the name of a data signal (e.g. ``z`` of the ``reservoir_test``
    data, DL §6.1); the layer's output is then that signal, held for each
    sample, with no feed-forward input and no learning.
    """

    kind: Literal["layer"]
    size: PosInt
    tau: Duration = 5.0
    noise: NonNeg = 0.05
    clamp: str | None = None


class ReservoirNoise(Strict):
    """Uniform noise amplitudes ζ_r (hidden rates) and ζ_o (readout), DL Eq. 9."""

    hidden: NonNeg = 0.05
    readout: NonNeg = 0.25


class ReservoirPop(Strict):
    """Recurrent reservoir with a linear readout, DL Eq. 9.

    ``seed``: without it every trial draws its own matrices from its trial seed;
    with it the matrices are drawn once from this seed and shared by all trials
    (trials then differ in data, layer weights, noise and readout, not in the
    reservoir), which keeps K trials' matrices in cache.
    """

    kind: Literal["reservoir"]
    size: PosInt
    tau: Duration = 50.0
    chaos: NonNeg = 1.5
    density: Probability = 0.1
    noise: ReservoirNoise = ReservoirNoise()
    readout: PosInt | None = None
    seed: int | None = None


def _kind_of(value, default=None):
    if isinstance(value, dict):
        return value.get("kind", default)
    return getattr(value, "kind", default)


Population = Annotated[
    Annotated[InputPop, Tag("input")]
    | Annotated[LayerPop, Tag("layer")]
    | Annotated[ReservoirPop, Tag("reservoir")],
    Discriminator(_kind_of),
]


class _Edge(Strict):
    source: str = Field(alias="from")
    target: str = Field(alias="to")


class Feedforward(_Edge):
    """Feed-forward weights ``W`` of the target layer (one per layer)."""

    kind: Literal["feedforward"] = "feedforward"
    init: InitSpec = InitSpec()


class Modulatory(_Edge):
    """A third-factor broadcast channel from a reservoir (or the analytic ξ) to a layer.

    Each message is delivered ``delay`` (± ``jitter``) later, or lost with
    probability ``loss``. ``broadcast`` says when messages are sent: ``tick``
    (every ``period``, default every tick), ``sample`` (once per sample at
    ``phase``, or a ``burst`` from there) or ``burst`` (``burst`` out of every
    ``period``, from ``phase``); see :mod:`eventsim.config.channels`.
    """

    kind: Literal["modulatory"]
    delay: Duration = 0.0
    jitter: Duration = 0.0
    jitter_dist: Literal["uniform", "normal"] = "uniform"
    loss: Probability = 0.0
    period: Duration | None = None
    broadcast: Literal["tick", "sample", "burst"] = "tick"
    phase: Duration = 0.0
    burst: Duration | None = None


class Tap(_Edge):
    """What a reservoir listens to: a population's rates or ``labels``."""

    kind: Literal["tap"]


Projection = Annotated[
    Annotated[Feedforward, Tag("feedforward")]
    | Annotated[Modulatory, Tag("modulatory")]
    | Annotated[Tap, Tag("tap")],
    Discriminator(lambda v: _kind_of(v, "feedforward")),
]


class NetworkFile(Strict):
    """Top level of a network file."""

    name: str
    description: str = ""
    populations: dict[str, Population]
    projections: list[Projection] = []


@dataclass
class Network:
    """A validated network: its graph plus where it came from (for error messages)."""

    name: str
    graph: nx.DiGraph
    doc: YamlDoc
    description: str = ""

    @property
    def file(self) -> str:
        return self.doc.file

    def nodes_of(self, kind: str) -> list[str]:
        """Population names of ``kind`` in feed-forward topological order."""
        return [n for n in self.order() if self.graph.nodes[n]["kind"] == kind]

    def order(self) -> list[str]:
        """All populations in a deterministic topological order of the feed-forward path,
        each reservoir placed after the populations it listens to."""
        g = nx.DiGraph()
        g.add_nodes_from(self.graph.nodes)
        g.add_edges_from(
            (u, v) for u, v, k in self.graph.edges(data="kind") if k in ("feedforward", "tap")
        )
        g.add_edges_from(  # a reservoir reads its layer (the teacher ξ and the implicit taps)
            (v, u) for u, v, k in self.graph.edges(data="kind") if k == "modulatory"
        )
        return list(nx.lexicographical_topological_sort(g, key=self._file_position))

    def _file_position(self, name: str) -> str:
        return f"{self.graph.nodes[name].get('line', 0):08d}{name}"

    def edges_of(self, kind: str) -> list[tuple[str, str, dict]]:
        return [(u, v, d) for u, v, d in self.graph.edges(data=True) if d["kind"] == kind]

    def ff_input(self, layer: str) -> str:
        """The single feed-forward source of ``layer``."""
        return next(u for u, _, d in self.graph.in_edges(layer, data=True)
                    if d["kind"] == "feedforward")

    def modulator_of(self, layer: str) -> tuple[str, dict] | None:
        """(source, edge data) of the modulatory edge into ``layer``, if any."""
        for u, _, d in self.graph.in_edges(layer, data=True):
            if d["kind"] == "modulatory":
                return u, d
        return None

    def served_layer(self, reservoir: str) -> str | None:
        """The layer a reservoir modulates."""
        for _, v, d in self.graph.out_edges(reservoir, data=True):
            if d["kind"] == "modulatory":
                return v
        return None

    def taps(self, reservoir: str) -> list[str]:
        """Sources a reservoir listens to, in file order."""
        edges = [(d["index"], u) for u, _, d in self.graph.in_edges(reservoir, data=True)
                 if d["kind"] == "tap"]
        return [u for _, u in sorted(edges)]

    def inputs(self) -> list[str]:
        return self.nodes_of("input")

    def line_of(self, path) -> int | None:
        return self.doc.line(path)

    def summary(self) -> str:
        """Human-readable description of populations, sizes, edges and parameters."""
        g = self.graph
        lines = [f"network {self.name!r} ({self.file})"]
        if self.description:
            lines.append(f"  {self.description.strip()}")
        lines.append(f"populations ({sum(1 for n in g if g.nodes[n]['kind'] != LABELS)}):")
        for n in self.order():
            a = g.nodes[n]
            if a["kind"] == LABELS:
                continue
            params = a["spec"].model_dump(exclude={"kind", "size"})
            desc = ", ".join(f"{k}={_fmt(k, v)}" for k, v in params.items())
            lines.append(f"  {n:<12} {a['kind']:<10} size {a['size']:<6} {desc}")
        lines.append(f"projections ({g.number_of_edges()}):")
        for u, v, d in sorted(g.edges(data=True), key=lambda e: e[2]["index"]):
            params = d["spec"].model_dump(exclude={"kind", "source", "target"}, by_alias=False)
            desc = ", ".join(f"{k}={_fmt(k, val)}" for k, val in params.items())
            lines.append(f"  {u:>12} -> {v:<12} {d['kind']:<11} {desc}")
        return "\n".join(lines)


def _fmt(key, value):
    if key in ("tau", "delay", "jitter", "period", "phase", "burst") and isinstance(value, float):
        return format_ms(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(k, v)}" for k, v in value.items()) + "}"
    return value


def network_from_doc(doc: YamlDoc, base: tuple = ()) -> Network:
    """Validate a parsed network document (or a sub-tree at ``base``) into a Network."""
    data = doc.data
    for key in base:
        data = data[key]
    model = validate(NetworkFile, doc, data, base)
    g = nx.DiGraph(name=model.name)
    pops = model.populations
    if LABELS in pops:
        raise doc.error((*base, "populations", LABELS),
                        f"{LABELS!r} is a reserved name (the label source for taps)",
                        "rename the population")
    if not pops:
        raise doc.error((*base, "populations"), "a network needs at least one population")
    for name, spec in pops.items():
        g.add_node(name, kind=spec.kind, size=spec.size, spec=spec,
                   line=doc.line((*base, "populations", name)))
    names = set(pops)
    for i, proj in enumerate(model.projections):
        where = (*base, "projections", i)
        for role, ref in (("from", proj.source), ("to", proj.target)):
            if ref not in names and not (role == "from" and ref == LABELS and proj.kind == "tap"):
                raise doc.error((*where, role), f"unknown population {ref!r}",
                                did_you_mean(ref, names))
        if proj.source == proj.target:
            raise doc.error(where, f"projection from {proj.source!r} to itself",
                            "recurrence is internal to reservoirs")
        if g.has_edge(proj.source, proj.target):
            raise doc.error(where, f"duplicate projection {proj.source} -> {proj.target}",
                            "remove one of the two")
        if proj.source == LABELS and LABELS not in g:
            g.add_node(LABELS, kind=LABELS, size=None, spec=None, line=0)
        g.add_edge(proj.source, proj.target, kind=proj.kind, spec=proj, index=i,
                   line=doc.line(where))
        _check_edge(doc, g, where, proj)
    _check_structure(doc, g, base)
    return Network(name=model.name, graph=g, doc=doc, description=model.description)


def _check_edge(doc, g, where, proj) -> None:
    src, dst = g.nodes[proj.source], g.nodes[proj.target]
    if proj.kind == "feedforward":
        if dst["kind"] != "layer":
            raise doc.error((*where, "to"),
                            f"a feedforward projection must target a layer, "
                            f"{proj.target!r} is of kind {dst['kind']}",
                            "use kind: tap to feed a reservoir")
        if src["kind"] not in ("input", "layer"):
            raise doc.error((*where, "from"),
                            f"a feedforward projection must start at an input or a layer, "
                            f"{proj.source!r} is of kind {src['kind']}",
                            "a reservoir reaches a layer through kind: modulatory")
    elif proj.kind == "modulatory":
        if dst["kind"] != "layer":
            raise doc.error((*where, "to"),
                            f"a modulatory edge must target a layer, {proj.target!r} is of kind "
                            f"{dst['kind']}", "point it at the layer whose plasticity it gates")
        if src["kind"] != "reservoir":
            raise doc.error((*where, "from"),
                            f"a modulatory edge must come from a reservoir, {proj.source!r} "
                            f"is of kind {src['kind']}",
                            "the analytic ξ replaces the reservoir in a scenario")
        readout = src["spec"].readout
        if readout is not None and readout != dst["size"]:
            raise doc.error((*where, "to"),
                            f"size mismatch: reservoir {proj.source!r} has readout {readout} but "
                            f"layer {proj.target!r} has size {dst['size']}",
                            "the readout dimension must equal the layer width")
        channels.check(channels.edge_settings(doc, where, proj))
    elif proj.kind == "tap" and dst["kind"] != "reservoir":
        raise doc.error((*where, "to"),
                        f"a tap must target a reservoir, {proj.target!r} is of kind {dst['kind']}",
                        "use a feedforward projection to drive a layer")


def _check_structure(doc, g, base) -> None:
    ff = nx.DiGraph([(u, v) for u, v, k in g.edges(data="kind") if k == "feedforward"])
    if ff.number_of_edges():
        try:
            cycle = nx.find_cycle(ff)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            u, v = cycle[-1][0], cycle[-1][1]
            path = " -> ".join([c[0] for c in cycle] + [cycle[0][0]])
            raise doc.error((*base, "projections", g.edges[u, v]["index"]),
                            f"cycle in the feed-forward path: {path}",
                            "feed-forward projections must form a DAG")
    for name, attrs in g.nodes(data=True):
        kind = attrs["kind"]
        ff_in = [u for u, _, k in g.in_edges(name, data="kind") if k == "feedforward"]
        mod_in = [u for u, _, k in g.in_edges(name, data="kind") if k == "modulatory"]
        where = (*base, "populations", name)
        if kind == "layer" and attrs["spec"].clamp is not None:
            if ff_in:
                raise doc.error((*base, "projections", g.edges[ff_in[0], name]["index"]),
                                f"layer {name!r} is clamped to the data signal "
                                f"{attrs['spec'].clamp!r} and takes no feed-forward input",
                                "remove this projection or the clamp")
        elif kind == "layer" and len(ff_in) != 1:
            raise doc.error(where,
                            f"layer {name!r} has {len(ff_in)} feed-forward inputs, needs exactly 1",
                            "add one projection {from: <input or layer>, to: " + name + "}")
        if kind == "layer" and len(mod_in) > 1:
            raise doc.error(where, f"layer {name!r} has {len(mod_in)} modulatory inputs",
                            "one third-factor channel per layer")
        if kind == "reservoir":
            served = [v for _, v, k in g.out_edges(name, data="kind") if k == "modulatory"]
            if len(served) != 1:
                raise doc.error(where,
                                f"reservoir {name!r} modulates {len(served)} layers, "
                                "needs exactly 1",
                                f"add {{from: {name}, to: <layer>, kind: modulatory}}")
    if not any(a["kind"] == "input" for _, a in g.nodes(data=True)):
        raise doc.error((*base, "populations"), "the network has no input population",
                        "add e.g. x: {kind: input, size: 2}")


def load_network(path) -> Network:
    """Load and validate a network YAML file."""
    return network_from_doc(load_yaml(path))


def parse_network(text: str, file: str = "<string>") -> Network:
    """Validate a network given as YAML text."""
    return network_from_doc(parse_yaml(text, file))


def network_path(path) -> Path:
    return Path(path).resolve()
