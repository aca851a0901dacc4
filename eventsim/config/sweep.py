"""The ``sweep:`` block of a scenario: which variations of it to run.

::

    sweep:
      grid:                              # every combination (the last key varies fastest)
        modulator.all.delay: [0, 5, 20]  # a dotted path to a scalar field -> its values
        rule.trace: [0, 20 ms, tick]
      variants:                          # named sets of dotted overrides
        - {name: tanh}
        - {name: linear, network: ../networks/perceptron.yaml, dataset.name: linear}
      plots:                             # default: the first grid key against the second
        - {x: modulator.all.delay, lines: rule.trace}
        - {kind: heatmap, x: rule.memory, y: epoch, normalise: max}

A *point* is one variant (or the bare scenario when there are none) with one
grid combination applied on top; every point is validated like a scenario of
its own before anything runs, and an invalid value is reported at its place in
the ``sweep`` block. A path may be set by the grid or by the variants, not
both. ``name`` in a variant labels it (it is not an override).

A plot's axes are grid keys or ``epoch``: the evaluations after every
``evaluate.every`` epochs of each run (then the scenario must set
``evaluate.every``). :func:`check_plots` checks the axes against the grid and
the scenario, each error located at the offending field.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import field_validator, model_validator

from ..errors import ConfigError
from .schema import Strict

SCALARS = (str, int, float, bool)
EPOCH = "epoch"
"""The plot axis of the evaluation epochs (not a grid key)."""
EPOCH_METRICS = {"accuracy/test": "test_accuracy", "accuracy/train": "train_accuracy"}
"""The metrics.csv rows logged at each evaluation -> the metric a plot with an epoch axis
names (the columns of a sweep's epochs.csv)."""


def _check_path(path: str) -> str:
    parts = path.split(".")
    if not path or any(not p.strip() for p in parts):
        raise ValueError(f"{path!r} is not a dotted path such as rule.gamma")
    if parts[0] == "sweep":
        raise ValueError("a sweep cannot change the sweep")
    return path


def _check_value(path: str, value):
    if value is not None and not isinstance(value, SCALARS):
        raise ValueError(f"{path}: sweep values must be scalars (numbers, strings, booleans), "
                         f"got a {type(value).__name__}")
    return value


class SweepPlot(Strict):
    """One figure of a sweep's ``metric`` (mean over trials).

    ``kind: line``: mean ± SD against the values of ``x``, one line per value of
    ``lines``. ``kind: heatmap``: one cell per value of ``x`` (columns) and ``y``
    (rows), annotated with its mean; ``normalise: max`` divides every value by
    the largest cell mean of the whole sweep, so the best cell is 1. Either kind
    draws one panel per variant and combination of the other grid keys.
    """

    kind: Literal["line", "heatmap"] = "line"
    x: str
    y: str | None = None
    lines: str | None = None
    metric: str = "test_accuracy"
    normalise: Literal["none", "max"] = "none"

    @model_validator(mode="after")
    def _fields_of_kind(self):
        if self.kind == "line":
            if self.y is not None:
                raise ValueError("a line plot has no y axis (its y is the metric)")
            if self.normalise != "none":
                raise ValueError("normalise applies to heatmaps only")
        else:
            if self.y is None:
                raise ValueError("a heatmap needs a y axis (a grid key or epoch)")
            if self.lines is not None:
                raise ValueError("a heatmap has no lines")
            if self.y == self.x:
                raise ValueError("a heatmap needs two different axes")
        return self

    def axes(self) -> dict[str, str]:
        """The axis fields that are set: ``{field: grid key or 'epoch'}``."""
        return {f: v for f in ("x", "y", "lines") if (v := getattr(self, f)) is not None}


class Sweep(Strict):
    grid: dict[str, list[Any]] = {}
    variants: list[dict[str, Any]] = []
    plots: list[SweepPlot] | None = None

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid):
        for path, values in grid.items():
            _check_path(path)
            if not values:
                raise ValueError(f"{path}: give at least one value")
            for value in values:
                _check_value(path, value)
            if len({repr(v) for v in values}) != len(values):
                raise ValueError(f"{path}: a value is listed twice")
        return grid

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants):
        names = []
        for variant in variants:
            for path, value in variant.items():
                if path == "name":
                    if not isinstance(value, str):
                        raise ValueError("a variant's name must be a string")
                    names.append(value)
                    continue
                _check_path(path)
                _check_value(path, value)
        if len(set(names)) != len(names):
            raise ValueError("two variants have the same name")
        if names and len(names) != len(variants):
            raise ValueError("name every variant or none")
        return variants

    @model_validator(mode="after")
    def _consistent(self):
        if not self.grid and not self.variants:
            raise ValueError("a sweep needs a grid or variants")
        both = set(self.grid) & {p for v in self.variants for p in v if p != "name"}
        if both:
            raise ValueError(f"{sorted(both)[0]} is set by both the grid and a variant")
        return self


@dataclass(frozen=True)
class Point:
    """One sweep point: its position, variant name and the overrides it applies."""

    index: int
    variant: str | None
    overrides: dict

    def label(self) -> str:
        parts = [] if self.variant is None else [self.variant]
        parts += [f"{k}={v}" for k, v in self.overrides.items()]
        return ", ".join(parts) or "base"


def points(sweep: Sweep) -> list[Point]:
    """Every point, variants outermost and the grid's last key varying fastest."""
    variants = sweep.variants or [{}]
    keys = list(sweep.grid)
    out = []
    for variant in variants:
        fixed = {k: v for k, v in variant.items() if k != "name"}
        for combo in itertools.product(*(sweep.grid[k] for k in keys)):
            out.append(Point(len(out), variant.get("name"), {**fixed, **dict(zip(keys, combo,
                                                                                   strict=True))}))
    return out


def default_plots(sweep: Sweep) -> list[SweepPlot]:
    if sweep.plots is not None:
        return list(sweep.plots)
    keys = list(sweep.grid)
    if not keys:
        return []
    return [SweepPlot(x=keys[0], lines=keys[1] if len(keys) > 1 else None)]


def check_plots(sc) -> None:
    """Every axis of ``sc.spec.sweep.plots`` is a grid key, or ``epoch`` when the scenario
    evaluates every few epochs and the plot's metric is one of :data:`EPOCH_METRICS`;
    otherwise a ConfigError at ``sweep.plots[i].<field>``."""
    sweep = sc.spec.sweep
    for i, plot in enumerate(sweep.plots or []):
        for field, key in plot.axes().items():
            if key == EPOCH:
                if not sc.spec.evaluate.every:
                    raise sc.error(("sweep", "plots", i, field),
                                   "the epoch axis needs evaluations during training",
                                   "set evaluate: {every: N} (epochs)")
                if plot.metric not in EPOCH_METRICS.values():
                    raise sc.error(("sweep", "plots", i, "metric"),
                                   f"metric {plot.metric!r} is not recorded per epoch",
                                   "one of " + ", ".join(EPOCH_METRICS.values()))
            elif key not in sweep.grid:
                raise sc.error(("sweep", "plots", i, field),
                               f"plot axis {key!r} is not a grid key or {EPOCH!r}",
                               "one of " + ", ".join([*sweep.grid, EPOCH]))


def validate_points(sc, load, base: dict | None = None) -> list[tuple[Point, Any]]:
    """Build and validate the scenario of every point of ``sc.spec.sweep``.

    ``load(overrides)`` returns a validated scenario. A value that is invalid on
    its own is reported at its place in the sweep block; an invalid combination
    at the ``sweep`` key, naming the point.
    """
    sweep = sc.spec.sweep
    base = {**(base or {}), "sweep": None}

    def located(path, key, value, exc: ConfigError):
        return sc.error(path, f"{key} = {value!r} is not valid: {exc.message}"
                              + (f" ({exc.file}:{exc.line})" if exc.file != sc.doc.file
                                 else ""), exc.hint)

    for key, values in sweep.grid.items():
        for i, value in enumerate(values):
            try:
                load({**base, key: value})
            except ConfigError as exc:
                raise located(("sweep", "grid", key, i), key, value, exc) from None
    for i, variant in enumerate(sweep.variants):
        fixed = {k: v for k, v in variant.items() if k != "name"}
        try:
            load({**base, **fixed})
        except ConfigError as exc:
            key = exc.field if exc.field in fixed else next(iter(fixed), "name")
            raise located(("sweep", "variants", i, key), key, fixed.get(key), exc) from None
    out = []
    for point in points(sweep):
        try:
            out.append((point, load({**base, **point.overrides})))
        except ConfigError as exc:
            raise sc.error(("sweep",), f"point {point.index} ({point.label()}) is not valid: "
                                       f"{exc.message}", exc.hint) from None
    return out
