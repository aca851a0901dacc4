"""The ``sweep:`` block of a scenario: which variations of it to run.

::

    sweep:
      grid:                              # every combination (the last key varies fastest)
        modulator.all.delay: [0, 5, 20]  # a dotted path to a scalar field -> its values
        rule.trace: [0, 20 ms, tick]
      zip:                               # keys that vary together: the i-th values of every
        rule.memory: [2, 4, 32]          # key make one setting (equal-length lists); the
        rule.lr.eta: [1e-6, 1e-5, 5e-4]  # zip is one more axis, outside the grid's keys
      variants:                          # named sets of dotted overrides
        - {name: tanh}
        - {name: linear, network: ../networks/perceptron.yaml, dataset.name: linear}
      plots:                             # default: the first grid key against the second
        - {x: modulator.all.delay, lines: rule.trace}
        - {kind: heatmap, x: rule.memory, y: epoch, normalise: max}

A *point* is one variant (or the bare scenario when there are none) with one
zip setting and one grid combination applied on top (variants outermost, then
the zip, then the grid's keys, the last varying fastest); every point is
validated like a scenario of its own before anything runs, and an invalid value
is reported at its place in the ``sweep`` block. A path may be set by one of the
grid, the zip and the variants only. ``name`` in a variant labels it (it is not
an override). :func:`check_zip` checks the zip (at least two keys, equal
lengths, no key of the grid or a variant, no setting twice), each error at
``sweep.zip.<key>``.

A plot's axes are sweep keys (grid or zip keys) or ``epoch``: the evaluations
after every ``evaluate.every`` epochs of each run (then the scenario must set
``evaluate.every``). Two zip keys cannot be two axes of one plot (they vary
together); a zip key on an axis carries the other zip keys with it, so they make
no panels. :func:`check_plots` checks the axes against the sweep and the
scenario, each error located at the offending field.
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
                raise ValueError("a heatmap needs a y axis (a sweep key or epoch)")
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
    zip: dict[str, list[Any]] = {}  # checked by check_zip, located at sweep.zip.<key>
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
        if not self.grid and not self.zip and not self.variants:
            raise ValueError("a sweep needs a grid, a zip or variants")
        both = set(self.grid) & {p for v in self.variants for p in v if p != "name"}
        if both:
            raise ValueError(f"{sorted(both)[0]} is set by both the grid and a variant")
        return self

    def keys(self) -> list[str]:
        """The swept keys in point order: the zip's, then the grid's."""
        return [*self.zip, *self.grid]

    def settings(self) -> list[dict]:
        """The zip's settings, ``[{key: i-th value}, ...]`` (``[{}]`` without a zip)."""
        if not self.zip:
            return [{}]
        n = len(next(iter(self.zip.values())))
        return [{k: v[i] for k, v in self.zip.items()} for i in range(n)]

    def companions(self, key: str) -> list[str]:
        """The other zip keys that vary together with ``key`` (none for a grid key)."""
        return [k for k in self.zip if k != key] if key in self.zip else []


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
    """Every point: variants outermost, then the zip's settings, then the grid's
    combinations (its last key varying fastest)."""
    variants = sweep.variants or [{}]
    keys = list(sweep.grid)
    out = []
    for variant in variants:
        fixed = {k: v for k, v in variant.items() if k != "name"}
        for setting in sweep.settings():
            for combo in itertools.product(*(sweep.grid[k] for k in keys)):
                out.append(Point(len(out), variant.get("name"),
                                 {**fixed, **setting, **dict(zip(keys, combo, strict=True))}))
    return out


def default_plots(sweep: Sweep) -> list[SweepPlot]:
    """The block's plots; by default one line plot of the first axis (the zip's first key,
    else the first grid key) against the second (the first grid key, or the second)."""
    if sweep.plots is not None:
        return list(sweep.plots)
    keys = list(sweep.grid)
    if sweep.zip:
        keys.insert(0, next(iter(sweep.zip)))
    if not keys:
        return []
    return [SweepPlot(x=keys[0], lines=keys[1] if len(keys) > 1 else None)]


def panel_keys(sweep: Sweep, plot: SweepPlot) -> list[str]:
    """The sweep keys that make a plot's panels: those not on an axis and not zipped with a
    key on an axis (the variant, when there are variants, is added by the caller)."""
    axes = set(plot.axes().values())
    carried = {c for key in axes for c in sweep.companions(key)}
    return [k for k in sweep.keys() if k not in axes and k not in carried]


def check_zip(sc) -> None:
    """``sc.spec.sweep.zip``: at least two keys, each a dotted path with a non-empty list
    of scalars, all lists as long as the first, no key also in the grid or a variant, no
    setting listed twice; otherwise a ConfigError at ``sweep.zip.<key>``."""
    sweep = sc.spec.sweep
    if not sweep.zip:
        return
    keys = list(sweep.zip)
    first = keys[0]
    if len(keys) < 2:
        raise sc.error(("sweep", "zip", first), "a zip needs at least two keys that vary "
                       "together", f"put {first} in grid: instead")
    in_variants = {p for v in sweep.variants for p in v if p != "name"}
    for key, values in sweep.zip.items():
        where = ("sweep", "zip", key)
        try:
            _check_path(key)
        except ValueError as exc:
            raise sc.error(where, str(exc), "a key is a dotted path such as rule.lr.eta") \
                from None
        if key in sweep.grid:
            raise sc.error(where, f"{key} is also a grid key", "a key is swept either on its "
                           "own (grid) or together with others (zip), not both")
        if key in in_variants:
            raise sc.error(where, f"{key} is also set by a variant",
                           "set it in the zip or in the variants, not both")
        if not values:
            raise sc.error(where, f"{key}: give at least one value")
        for i, value in enumerate(values):
            try:
                _check_value(key, value)
            except ValueError as exc:
                raise sc.error((*where, i), str(exc)) from None
        if len(values) != len(sweep.zip[first]):
            raise sc.error(where, f"{len(values)} values, but {first} has "
                           f"{len(sweep.zip[first])}", "zipped keys vary together: give "
                           "every key of the zip the same number of values")
    seen: dict[str, int] = {}
    for i, setting in enumerate(sweep.settings()):
        j = seen.setdefault(repr(list(setting.values())), i)
        if j != i:
            raise sc.error(("sweep", "zip", first, i), f"the zip's settings {j} and {i} are "
                           "the same", "each position of the zip lists must differ in some key")


def check_plots(sc) -> None:
    """Every axis of ``sc.spec.sweep.plots`` is a sweep key (grid or zip), or ``epoch`` when
    the scenario evaluates every few epochs and the plot's metric is one of
    :data:`EPOCH_METRICS`; two axes of one plot are not zipped together; otherwise a
    ConfigError at ``sweep.plots[i].<field>``."""
    sweep = sc.spec.sweep
    for i, plot in enumerate(sweep.plots or []):
        on_axes: dict[str, str] = {}
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
            elif key not in sweep.grid and key not in sweep.zip:
                raise sc.error(("sweep", "plots", i, field),
                               f"plot axis {key!r} is not a grid key, a zip key or {EPOCH!r}",
                               "one of " + ", ".join([*sweep.keys(), EPOCH]))
            else:
                together = [f for f, k in on_axes.items() if k in sweep.companions(key)]
                if together:
                    raise sc.error(("sweep", "plots", i, field),
                                   f"{key} varies together with {on_axes[together[0]]} "
                                   f"(the {together[0]} axis): both are in sweep.zip",
                                   "put one zip key on an axis; the others follow it")
                on_axes[field] = key


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
    for i, setting in enumerate(sweep.settings() if sweep.zip else []):
        try:
            load({**base, **setting})
        except ConfigError as exc:
            key = exc.field if exc.field in setting else next(iter(setting))
            raise located(("sweep", "zip", key, i), key, setting[key], exc) from None
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
