"""The figures users expect, drawn headless from the files of a run directory.

Each ``plot_*`` function takes already-loaded data (see :mod:`eventsim.rundir`),
writes one PNG into ``out_dir`` (created if needed, written atomically) and
returns its path. :func:`plot_run` regenerates every figure whose data a run
directory holds. Figures are built on :class:`matplotlib.figure.Figure` with the
Agg canvas directly, so no pyplot state or GUI backend is involved and the
global matplotlib backend is left alone.

Where the data come from in a run directory:

* objectives, accuracy: ``metrics.csv`` rows ``objective_dl/<layer>``,
  ``objective_pl/<layer>``, ``accuracy/test``, ``accuracy/train``;
* reservoir readout vs true ξ: trace ``<res>.readout`` with ``<res>.xi_true`` or,
  failing that, the probed analytic ξ ``<layer>.xi`` of the layer the reservoir
  modulates;
* output code words: trace ``<pop>.code`` (per recorded sample, the layer's
  mean rate over the sample window, shape (samples, trial, units)) together
  with trace ``<pop>.label`` (the class of each of those samples, shape
  (samples, trial)); only samples of the test phase are used when it is known;
* modulator arrivals: the channel records in ``traces.h5``;
* network graph: ``config.resolved.yaml`` key ``network``
  (``{populations: {...}, projections: [...]}``).

Phase boundaries (the end of training / start of test for the readout figure:
a phase named ``test``, else the final ``evaluate``, where learning is off; the
phase markers on the objective figure) are taken from ``meta.json`` key
``phases``, a list of ``{name, start_tick, end_tick}`` that the engine passes
to :meth:`~eventsim.rundir.RunDir.write_meta`. A run without it falls back to
the first and last tick at which each phase logged a metric, which is close
enough for plotting. The tick length comes from ``traces.h5`` (``dt_ms``),
else ``meta.json`` ``dt_ms``, else the config's ``timing.dt``; without any,
time axes are drawn in ticks.

Sweep figures (:func:`plot_sweep`, :func:`plot_sweep_heatmap`) take the tidy
rows of :mod:`eventsim.sweep` instead; the memory-capacity heat map of DL
Fig. 10 is a heat map of a sweep over ``rule.memory`` against the epoch.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from . import records, rundir
from .units import to_ms

NODE_COLOURS = {"input": "#4c72b0", "layer": "#dd8452", "reservoir": "#55a868"}
EDGE_STYLES = {  # kind -> (colour, line style, arc radius)
    "feedforward": ("#333333", "solid", 0.0),
    "modulatory": ("#c44e52", "dashed", 0.25),
    "tap": ("#8172b3", "dotted", 0.25),
}
DPI = 120


# ---------------------------------------------------------------------------
# Shared helpers


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_dir: str | os.PathLike, name: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    with rundir.atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=DPI)
    return path


def _time_axis(ticks, dt_ms: float | None, unit: str = "s") -> tuple[np.ndarray, str]:
    """Ticks as time in ``unit`` ('s' or 'ms'), or as ticks when ``dt_ms`` is unknown."""
    ticks = np.asarray(ticks, dtype=np.float64)
    if dt_ms is None:
        return ticks, "time (ticks)"
    scale = dt_ms / 1e3 if unit == "s" else dt_ms
    return ticks * scale, f"time ({unit})"


def _band(rows: Iterable[Mapping[str, Any]], key: str) -> tuple[np.ndarray, ...]:
    """Group rows by ``row[key]``; return x, mean, min, max over the grouped values."""
    groups: dict[Any, list[float]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row["value"])
    xs = sorted(groups)
    vals = [np.asarray(groups[x], dtype=np.float64) for x in xs]
    return (np.asarray(xs, dtype=np.float64), np.array([v.mean() for v in vals]),
            np.array([v.min() for v in vals]), np.array([v.max() for v in vals]))


def _draw_band(ax, x, mean, lo, hi, label: str, **line_kw) -> str:
    """Mean line with a shaded min-max band; a single point gets a min-max error bar.

    Returns the colour used.
    """
    if len(x) == 1:
        bar = ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="o", capsize=4,
                          label=label)
        return bar.lines[0].get_color()
    (line,) = ax.plot(x, mean, label=label, **line_kw)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.25, lw=0)
    return line.get_color()


def _trial_count(rows: Iterable[Mapping[str, Any]]) -> int:
    return len({row["trial"] for row in rows})


def phases_from_metrics(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Approximate phases ``{name, start_tick, end_tick}`` from the ticks metrics were logged at."""
    spans: dict[str, list[int]] = {}
    for row in rows:
        span = spans.setdefault(row["phase"], [row["tick"], row["tick"]])
        span[0] = min(span[0], row["tick"])
        span[1] = max(span[1], row["tick"])
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    return [{"name": name, "start_tick": a, "end_tick": b} for name, (a, b) in ordered]


def _phase(phases: Sequence[Mapping[str, Any]] | None, name: str) -> Mapping[str, Any] | None:
    """The last phase called ``name`` (case-insensitive), or None."""
    found = [p for p in phases or () if str(p["name"]).lower() == name]
    return found[-1] if found else None


# ---------------------------------------------------------------------------
# Metrics figures


def plot_objectives(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, *,
                    dt_ms: float | None = None,
                    phases: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Per-layer objectives over training (DL Figs. 5C, 6B): ``objectives.png``.

    One panel per family present (``objective_dl``, ``objective_pl``), one line
    per layer: the mean over trials with a min-max band. When every row has an
    epoch the x axis counts epochs, and each phase starts where its first epoch
    begins; otherwise (phases of a fixed duration) it is simulated time, with
    ``phases`` (dicts with ``name`` and ``start_tick``) marked by vertical lines.
    """
    families = [f for f in ("objective_dl", "objective_pl")
                if any(r["metric"].startswith(f + "/") for r in rows)]
    if not families:
        raise ValueError("no objective_dl/<layer> or objective_pl/<layer> metrics to plot")
    titles = {"objective_dl": "DL objective  HSIC(X,Z) − γ HSIC(Y,Z)",
              "objective_pl": "PL objective  pHSIC(Z,Z) − γ pHSIC(Y,Z)"}
    objective_rows = [r for r in rows if r["metric"].startswith(tuple(f + "/" for f in families))]
    by_epoch = all(r["epoch"] is not None for r in objective_rows)
    if by_epoch:
        xlabel = "epochs"
        starts: dict[str, float] = {}
        for r in objective_rows:
            starts[r["phase"]] = min(starts.get(r["phase"], math.inf), r["epoch"] - 1)
        markers = sorted(starts.items(), key=lambda item: item[1])
    else:
        markers = [(p["name"], _time_axis([p["start_tick"]], dt_ms)[0][0]) for p in phases or ()]
    fig = _figure(7.0, 3.2 * len(families))
    axes = fig.subplots(len(families), 1, squeeze=False, sharex=True)[:, 0]
    for ax, family in zip(axes, families, strict=True):
        family_rows = [r for r in objective_rows if r["metric"].startswith(family + "/")]
        layers = sorted({r["metric"].split("/", 1)[1] for r in family_rows})
        for layer in layers:
            layer_rows = [r for r in family_rows if r["metric"] == f"{family}/{layer}"]
            if by_epoch:
                x, mean, lo, hi = _band(layer_rows, "epoch")
            else:
                ticks, mean, lo, hi = _band(layer_rows, "tick")
                x, xlabel = _time_axis(ticks, dt_ms)
            n = _trial_count(layer_rows)
            _draw_band(ax, x, mean, lo, hi, f"{layer} (mean of {n} trials)", lw=1.2,
                       marker="o" if by_epoch else None, ms=3)
        for name, px in markers:
            ax.axvline(px, color="0.5", ls=":", lw=0.8)
            ax.annotate(str(name), (px, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -3), textcoords="offset points", va="top", ha="left",
                        rotation=90, fontsize=7, color="0.35")
        if by_epoch:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(titles[family], fontsize=10)
        ax.set_ylabel("objective (a.u.)")
        ax.legend(fontsize=8, title="layer (band: min–max)", title_fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(xlabel)
    return _save(fig, out_dir, "objectives")


def plot_accuracy(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike) -> Path:
    """Accuracy over epochs with a min-max band across trials (DL Fig. 7): ``accuracy.png``.

    Uses ``accuracy/test`` and ``accuracy/train`` (the last layer), and the test
    accuracy of every layer scored by ``evaluate.layers`` (``accuracy/test/<layer>``).
    Rows without an epoch (a single evaluation after training) are drawn as a
    "final" point with a min-max bar one step right of the last epoch.
    """
    present = {r["metric"] for r in rows}
    metrics = [m for m in ("accuracy/test", "accuracy/train") if m in present]
    if not metrics:
        raise ValueError("no accuracy/test or accuracy/train metrics to plot")
    metrics += sorted(m for m in present if m.startswith("accuracy/test/"))
    epochs = [r["epoch"] for r in rows if r["metric"] in metrics and r["epoch"] is not None]
    final_x = (max(epochs) + 1) if epochs else 0
    single = len(set(epochs)) == 1  # one evaluation: dodge the bars, keep integer ticks
    fig = _figure(6.5, 3.8)
    ax = fig.subplots()
    for i, metric in enumerate(metrics):
        _, split, *layer = metric.split("/")
        split = f"{split}, layer {layer[0]}" if layer else split
        mrows = [r for r in rows if r["metric"] == metric]
        n = _trial_count(mrows)
        by_epoch = [r for r in mrows if r["epoch"] is not None]
        colour = None
        if by_epoch:
            x, mean, lo, hi = _band(by_epoch, "epoch")
            if single:
                x = x + (i - (len(metrics) - 1) / 2) * 0.06
            colour = _draw_band(ax, x, mean, lo, hi, f"{split} (mean of {n} trials)",
                                marker="o", ms=3)
        final = [r["value"] for r in mrows if r["epoch"] is None]
        if final:
            v = np.asarray(final, dtype=np.float64)
            ax.errorbar([final_x], [v.mean()], yerr=[[v.mean() - v.min()], [v.max() - v.mean()]],
                        fmt="s", color=colour, capsize=4,
                        label=f"{split}, final (mean of {len(v)}, min–max)")
    ax.set_xlabel("epochs")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if single:
        ax.set_xlim(epochs[0] - 1, final_x + 0.5 if final_x > epochs[0] else epochs[0] + 1)
    ax.set_ylabel("accuracy (fraction correct)")
    ax.set_title("Linear-readout accuracy (band: min–max over trials)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "accuracy")


# ---------------------------------------------------------------------------
# Reservoir readout (DL Fig. 4)


def _first_element(trace: Mapping[str, Any], trial: int) -> np.ndarray:
    data = np.asarray(trace["data"])
    series = data[:, trial]
    return series.reshape(series.shape[0], -1)[:, 0]


def plot_readout(readout: Mapping[str, Any], xi_true: Mapping[str, Any],
                 out_dir: str | os.PathLike, *, name: str, test_start_tick: int | None,
                 dt_ms: float | None = None, window_ms: float = 2000.0,
                 trial: int = 0) -> Path:
    """Reservoir readout vs the true ξ, first element, one trial (DL Fig. 4).

    ``readout`` and ``xi_true`` are trace dicts (``data`` (time, trial, D),
    ``ticks``). Three panels of ``window_ms`` each: the end of training (just
    before ``test_start_tick``), the start of test and the end of test (the
    last recorded tick). With ``test_start_tick=None`` the panels show the
    start, middle and end of the recording instead. Without ``dt_ms`` the
    window is ``window_ms`` ticks. Writes ``readout_<name>.png``.
    """
    ticks_r = np.asarray(readout["ticks"], dtype=np.int64)
    ticks_x = np.asarray(xi_true["ticks"], dtype=np.int64)
    if ticks_r.size == 0:
        raise ValueError(f"trace {name}.readout is empty")
    first, last = int(min(ticks_r[0], ticks_x[0])), int(max(ticks_r[-1], ticks_x[-1]))
    width = window_ms / dt_ms if dt_ms else window_ms
    if test_start_tick is None:
        middle = (first + last) / 2
        windows = [("start of recording", first, first + width),
                   ("middle of recording", middle - width / 2, middle + width / 2),
                   ("end of recording", last - width, last + 1)]
    else:
        windows = [("end of training", test_start_tick - width, test_start_tick),
                   ("start of test", test_start_tick, test_start_tick + width),
                   ("end of test", max(last - width, test_start_tick), last + 1)]
    units = xi_true.get("units") or readout.get("units") or "a.u."
    series = [(ticks_r, _first_element(readout, trial), f"readout (trial {trial})", "#c44e52"),
              (ticks_x, _first_element(xi_true, trial), f"true ξ (trial {trial})", "#333333")]
    fig = _figure(11.0, 3.4)
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (title, lo, hi) in zip(axes, windows, strict=True):
        drawn = False
        for ticks, values, label, colour in series:
            keep = (ticks >= lo) & (ticks < hi)
            if keep.any():
                x, xlabel = _time_axis(ticks[keep], dt_ms)
                ax.plot(x, values[keep], color=colour, lw=1.0, label=label)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "nothing recorded here", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(_time_axis([0], dt_ms)[1])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"ξ, element 0 ({units})")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"Reservoir {name}: readout vs true third factor", fontsize=11)
    return _save(fig, out_dir, f"readout_{name}")


# ---------------------------------------------------------------------------
# Output code words (DL Fig. 8)


def plot_code_words(rates, labels, out_dir: str | os.PathLike, *, name: str = "out",
                    max_trials: int = 4) -> Path:
    """Mean output code word per class, as a classes × units image (DL Fig. 8).

    ``rates`` is the last layer's mean rate per sample, shape (samples, units)
    or (samples, trial, units); ``labels`` the class of each sample, shape
    (samples,) or (samples, trial). One panel per trial (at most
    ``max_trials``), on one symmetric colour scale. Writes ``code_words_<name>.png``.
    """
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim == 2:
        rates = rates[:, None, :]
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = np.repeat(labels[:, None], rates.shape[1], axis=1)
    if rates.ndim != 3 or labels.shape != rates.shape[:2]:
        raise ValueError(f"rates {rates.shape} and labels {labels.shape} do not match")
    labels = labels.astype(np.int64)
    classes = np.unique(labels)
    trials = min(rates.shape[1], max_trials)
    codes = np.full((trials, classes.size, rates.shape[2]), np.nan)
    for t in range(trials):
        for i, c in enumerate(classes):
            chosen = labels[:, t] == c
            if chosen.any():
                codes[t, i] = rates[chosen, t].mean(axis=0)
    vmax = float(np.nanmax(np.abs(codes))) or 1.0
    fig = _figure(1.0 + 3.2 * trials, 3.6)
    axes = fig.subplots(1, trials, squeeze=False)[0]
    for t, ax in enumerate(axes):
        image = ax.imshow(codes[t], cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto",
                          interpolation="nearest")
        if codes[t].size <= 144:
            for (i, j), v in np.ndenumerate(codes[t]):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(v) > 0.6 * vmax else "black")
        ax.set_title(f"trial {t}", fontsize=10)
        ax.set_xlabel("output unit")
        ax.set_yticks(range(classes.size), [str(c) for c in classes])
        ax.set_xticks(range(rates.shape[2]))
    axes[0].set_ylabel("class")
    fig.colorbar(image, ax=list(axes), label="mean rate over the sample window (a.u.)")
    fig.suptitle(f"{name}: mean output code word per class", fontsize=11)
    return _save(fig, out_dir, f"code_words_{name}")


# ---------------------------------------------------------------------------
# Sweeps

_DURATION_KEYS = ("delay", "jitter", "period", "phase", "burst", "trace", "sample", "dt", "tau")


def _swept_value(key: str, value) -> tuple[float | None, str]:
    """(value in ms or as a number, or None when not numeric; its label)."""
    text = str(value)
    is_duration = key.rsplit(".", 1)[-1] in _DURATION_KEYS
    try:
        number = to_ms(value) if is_duration or isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None, text
    if is_duration and not text.strip()[-1:].isalpha():
        text = f"{text} ms"
    return number, text


def _thinned(ax, values: np.ndarray, labels: list[str], gap: float = 0.05) -> list[str]:
    """``labels`` with those closer than ``gap`` (axis fraction) to a kept one blanked."""
    scale = ax.xaxis.get_transform()
    lo, hi = scale.transform(np.asarray(ax.get_xlim(), dtype=np.float64))
    where = (scale.transform(values) - lo) / (hi - lo)
    out, last = [], -np.inf
    for w, label in sorted(zip(where, labels, strict=True), key=lambda p: p[0]):
        keep = w - last >= gap
        out.append((w, label if keep else ""))
        last = w if keep else last
    by_position = dict(out)
    return [by_position[w] for w in where]


def _axis_label(key: str) -> str:
    name = key.rsplit(".", 1)[-1]
    return f"{name} (ms)" if name in _DURATION_KEYS else name


def plot_sweep(rows: Sequence[Mapping[str, Any]], spec, out_dir: str | os.PathLike, *,
               panels: Sequence[str] | None = None) -> Path:
    """A sweep's ``spec.metric`` (mean ± SD over trials) against the swept ``spec.x``, one
    line per value of ``spec.lines``.

    ``rows`` are the tidy rows of :mod:`eventsim.sweep` (columns ``point``, the
    swept values, ``trial``, ..., one per point and trial); only finished points
    are drawn. One panel per combination of the ``panels`` columns (default:
    every swept column but x and lines). Numeric x values (numbers, or durations
    in ms) go on a linear axis, or on a symmetric-log one when they span more
    than a factor of 20; other values are categories. Writes ``<metric>_vs_<x>[_by_<lines>].png``.
    """
    rows = [r for r in rows if r.get("status") == "finished"
            and r.get(spec.metric) not in (None, "")]
    if not rows:
        raise ValueError(f"no finished points with a {spec.metric!r} value to plot")
    if panels is None:
        keys = list(rows[0])
        swept = keys[keys.index("point") + 1:keys.index("trial")]
        panels = [k for k in swept if k not in (spec.x, spec.lines)]
    panel_keys = list(panels)
    groups: dict[tuple, dict[str, dict[str, list[float]]]] = {}
    x_order: list[str] = []
    line_order: list[str] = []
    for r in rows:
        panel = tuple(str(r[k]) for k in panel_keys)
        xv = str(r[spec.x])
        lv = "" if spec.lines is None else str(r[spec.lines])
        x_order += [xv] if xv not in x_order else []
        line_order += [lv] if lv not in line_order else []
        groups.setdefault(panel, {}).setdefault(lv, {}).setdefault(xv, []).append(
            float(r[spec.metric]))
    numbers = {x: _swept_value(spec.x, x)[0] for x in x_order}
    numeric = all(v is not None for v in numbers.values())
    n = len(groups)
    cols = min(n, 3)
    fig = _figure(4.6 * cols, 3.6 * math.ceil(n / cols))
    axes = np.atleast_1d(fig.subplots(math.ceil(n / cols), cols, squeeze=False)).ravel()
    x_name = spec.x.rsplit(".", 1)[-1]
    for ax, (panel, lines) in zip(axes, groups.items(), strict=False):
        for lv in line_order:
            if lv not in lines:
                continue
            xs = [x for x in x_order if x in lines[lv]]
            pos = [numbers[x] if numeric else x_order.index(x) for x in xs]
            vals = [np.asarray(lines[lv][x]) for x in xs]
            label = (None if spec.lines is None else
                     f"{spec.lines.rsplit('.', 1)[-1]} = {_swept_value(spec.lines, lv)[1]}")
            ax.errorbar(pos, [v.mean() for v in vals], yerr=[v.std() for v in vals],
                        marker="o", ms=4, capsize=3, lw=1.2, label=label)
        if numeric:
            values = np.asarray(list(numbers.values()), dtype=np.float64)
            positive = values[values > 0]
            if positive.size and values.max() > 20 * positive.min():
                ax.set_xscale("symlog", linthresh=float(positive.min()))
            labels = [_swept_value(spec.x, x)[1].removesuffix(" ms") for x in x_order]
            ax.set_xticks(values, _thinned(ax, values, labels))
        else:
            ax.set_xticks(range(len(x_order)), x_order)
        ax.set_xlabel(_axis_label(spec.x))
        ax.set_ylabel(spec.metric.replace("_", " "))
        title = ", ".join(f"{k} = {v}" for k, v in zip(panel_keys, panel, strict=True))
        ax.set_title(title or f"{spec.metric.replace('_', ' ')} vs {x_name}", fontsize=10)
        ax.grid(alpha=0.3)
        if spec.lines is not None:
            ax.legend(fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    name = f"{spec.metric}_vs_{x_name}"
    if spec.lines is not None:
        name += f"_by_{spec.lines.rsplit('.', 1)[-1]}"
    return _save(fig, out_dir, name)


def plot_sweep_heatmap(rows: Sequence[Mapping[str, Any]], spec, out_dir: str | os.PathLike,
                       *, panels: Sequence[str] = ()) -> list[Path]:
    """A heat map of a sweep's ``spec.metric``: one cell per value of ``spec.x`` (columns)
    and ``spec.y`` (rows, increasing upwards), annotated with its mean over trials.

    ``rows`` are tidy sweep rows (one per point and trial, or per point, epoch and
    trial when an axis is ``epoch``); only finished ones with a value are used.
    Axis values keep their order of appearance; epochs (and other numbers on the
    y axis) are sorted. One panel per combination of the ``panels`` columns, on a
    shared colour scale. With ``spec.normalise == "max"`` every value is divided
    by ``best``, the largest cell mean over all panels (so that cell reads 1 and
    a cell's mean of normalised values is its normalised mean). A missing cell
    (a failed point) is left blank.

    Writes ``<metric>_heatmap_<y>_vs_<x>.png`` and, next to it, the same name
    ``.csv``: one row per cell and trial with the panel columns, x, y, trial,
    the metric and (when normalised) ``<metric>_normalised``. Returns both paths.
    """
    metric = spec.metric
    rows = [r for r in rows if r.get("status") == "finished" and r.get(metric) not in (None, "")]
    if not rows:
        raise ValueError(f"no finished points with a {metric!r} value to plot")
    panel_keys = list(panels)
    cells: dict[tuple, dict[tuple, list[tuple[Any, float]]]] = {}
    xs: list = []
    ys: list = []
    for r in rows:
        xs += [r[spec.x]] if r[spec.x] not in xs else []
        ys += [r[spec.y]] if r[spec.y] not in ys else []
        panel = tuple(r[k] for k in panel_keys)
        cells.setdefault(panel, {}).setdefault((r[spec.x], r[spec.y]), []).append(
            (r["trial"], float(r[metric])))
    numbers = [_swept_value(spec.y, y)[0] for y in ys]
    if all(v is not None for v in numbers):
        ys = [y for _, y in sorted(zip(numbers, ys, strict=True), key=lambda p: p[0])]
    means = {panel: np.array([[np.mean([v for _, v in grid[(x, y)]]) if (x, y) in grid
                               else np.nan for x in xs] for y in ys])
             for panel, grid in cells.items()}
    best = max(float(np.nanmax(m)) for m in means.values())
    scale = best if spec.normalise == "max" else 1.0
    if scale <= 0:
        raise ValueError(f"cannot normalise by the best {metric} {best!r}: it is not positive")
    lo = min(float(np.nanmin(m)) for m in means.values()) / scale
    hi = best / scale
    n = len(cells)
    cols = min(n, 3)
    fig = _figure(max(5.0, 2.2 + 0.9 * len(xs) * cols), 1.3 + 0.5 * len(ys) * math.ceil(n / cols))
    axes = np.atleast_1d(fig.subplots(math.ceil(n / cols), cols, squeeze=False)).ravel()
    label = metric.replace("_", " ") + (" / best" if spec.normalise == "max" else "")
    heading = f"{label}, mean over trials" + (f" (best {best:.4f})"
                                              if spec.normalise == "max" else "")
    for ax, panel in zip(axes, cells, strict=False):
        values = means[panel] / scale
        image = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto",
                          cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        middle = (lo + hi) / 2
        for i, j in np.ndindex(values.shape):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if values[i, j] > middle else "white")
        ax.set_xticks(range(len(xs)), [_swept_value(spec.x, x)[1] for x in xs])
        ax.set_yticks(range(len(ys)), [_swept_value(spec.y, y)[1] for y in ys])
        ax.set_xlabel(_axis_label(spec.x))
        ax.set_ylabel(_axis_label(spec.y))
        title = ", ".join(f"{k} = {v}" for k, v in zip(panel_keys, panel, strict=True))
        ax.set_title(title or heading, fontsize=10)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes[:n].tolist(), label=label)
    if panel_keys:
        fig.suptitle(heading, fontsize=10)
    name = f"{metric}_heatmap_{spec.y.rsplit('.', 1)[-1]}_vs_{spec.x.rsplit('.', 1)[-1]}"
    table = [{**dict(zip(panel_keys, panel, strict=True)), spec.x: x, spec.y: y,
              "trial": trial, metric: value,
              **({f"{metric}_normalised": value / scale} if spec.normalise == "max" else {})}
             for panel, grid in cells.items() for x in xs for y in ys
             for trial, value in grid.get((x, y), [])]
    png = _save(fig, out_dir, name)
    return [png, rundir.write_csv(png.with_suffix(".csv"), table)]


# ---------------------------------------------------------------------------
# Modulator arrivals


def plot_modulator_timing(channels: Mapping[str, Mapping[str, Any]],
                          out_dir: str | os.PathLike, *, dt_ms: float | None = None,
                          n_samples: int = 4) -> Path:
    """When each modulatory message was sent and delivered, against sample boundaries.

    ``channels`` maps a name to a channel record (:mod:`eventsim.records`, as
    :func:`eventsim.rundir.load_channels` gives it). One row per channel. Left:
    the first ``n_samples`` samples that carry messages; each message is a line
    from its send time (top) to its delivery time (bottom), dropped ones a red
    cross; dotted lines mark sample starts. With several trials this panel shows
    trial 0. Right: the distribution of delays over all trials, with the share
    dropped. Only the shown window of a record is expanded (and, for a channel
    with jitter or loss, its send ticks). Writes ``modulator_timing.png``.
    """
    if not channels:
        raise ValueError("no channels to plot")
    fig = _figure(11.0, 2.8 * len(channels))
    axes = fig.subplots(len(channels), 2, squeeze=False, width_ratios=(3, 1))
    unit = "ms"
    for (name, rec), (ax, hax) in zip(channels.items(), axes, strict=True):
        runs = np.asarray(rec["sent_runs"], dtype=np.int64).reshape(-1, 3)
        starts = records.expand_runs(rec["sample_runs"])
        lo = int(runs[0, 0]) if runs.size else 0
        if starts.size:
            k = max(int(np.searchsorted(starts, lo, side="right")) - 1, 0)
            lo = int(starts[k])
            later = starts[starts > lo]
            hi = int(later[n_samples - 1]) if later.size >= n_samples else None
        else:
            hi = None
        window = records.expand_channel(rec, lo, hi)
        sent, every = window["sent_tick"], window["deliver_tick"]
        deliver = every[:, 0]
        dropped = deliver < 0
        if hi is None:
            hi = int(max(sent.max(initial=lo), deliver.max(initial=lo))) + 1
        ok, lost = ~dropped, dropped
        xs, xlabel = _time_axis(sent, dt_ms, unit)
        xd, _ = _time_axis(deliver, dt_ms, unit)
        ax.add_collection(LineCollection(
            [[(a, 1.0), (b, 0.0)] for a, b in zip(xs[ok], xd[ok], strict=True)],
            colors="0.6", lw=0.8))
        ax.plot(xs[ok], np.ones(ok.sum()), "|", color="#4c72b0", ms=10, label="sent")
        ax.plot(xd[ok], np.zeros(ok.sum()), "|", color="#55a868", ms=10, label="delivered")
        ax.plot(xs[lost], np.ones(lost.sum()), "x", color="#c44e52", ms=6, label="dropped")
        for tick in starts[(starts >= lo) & (starts <= hi)]:
            ax.axvline(_time_axis([tick], dt_ms, unit)[0][0], color="0.2", ls=":", lw=1.0)
        if not sent.size:
            ax.text(0.5, 0.5, "no messages recorded", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
        span = _time_axis([lo, hi], dt_ms, unit)[0]
        pad = 0.01 * (span[1] - span[0])  # markers on the edges stay visible
        ax.set_xlim(span[0] - pad, span[1] + pad)
        ax.set_ylim(-0.5, 2.0)
        ax.set_yticks([0, 1], ["delivered", "sent"])
        ax.set_xlabel(xlabel)
        which = f"channel {name}, trial 0" if every.shape[1] > 1 else f"channel {name}"
        ax.set_title(f"{which} (dotted: sample starts)", fontsize=10)
        ax.legend(fontsize=7, loc="upper right", ncols=3)
        lags, counts, n_lost, n_all = _delays(rec)
        if lags.size:
            span_ticks = int(lags.max() - lags.min()) + 1
            # One bin per tick of delay while that stays readable, else 30 bins.
            edges = (np.arange(lags.min(), lags.max() + 2) - 0.5 if span_ticks <= 60
                     else np.linspace(lags.min() - 0.5, lags.max() + 0.5, 31))
            hax.hist(_time_axis(lags, dt_ms, unit)[0], bins=_time_axis(edges, dt_ms, unit)[0],
                     weights=counts, color="#55a868", edgecolor="white", lw=0.5)
        share = n_lost / n_all if n_all else 0.0
        hax.set_title(f"{n_lost} of {n_all} deliveries\ndropped ({share:.1%})", fontsize=9)
        hax.yaxis.set_major_locator(MaxNLocator(integer=True))
        hax.set_xlabel(xlabel.replace("time", "delay"))
        hax.set_ylabel("messages")
    return _save(fig, out_dir, "modulator_timing")


def _delays(rec: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Delays of a channel record's delivered messages over all trials, as (distinct delays,
    how often each), the number of dropped deliveries and the number of all deliveries."""
    n_all = records.message_count(rec) * int(rec["trials"])
    if rec["deliver_tick"] is None:  # every delivery exactly ``delay`` after its send
        return (np.array([int(rec["delay"])] if n_all else [], dtype=np.int64),
                np.array([n_all] if n_all else [], dtype=np.int64), 0, n_all)
    plain = records.expand_channel(rec)
    delivered = ~plain["dropped"]
    lags, counts = np.unique((plain["deliver_tick"] - plain["sent_tick"][:, None])[delivered],
                             return_counts=True)
    return lags, counts, int(plain["dropped"].sum()), n_all


# ---------------------------------------------------------------------------
# Network graph


def graph_from_config(network: Mapping[str, Any]) -> nx.DiGraph:
    """A DiGraph from an inlined network ``{populations: {...}, projections: [...]}``.

    Nodes carry the population's attributes (``kind``, ``size``, ...); edges
    carry the projection's, with ``kind`` defaulting to ``feedforward``.
    """
    graph = nx.DiGraph(name=network.get("name", "network"))
    for pop, attrs in (network.get("populations") or {}).items():
        graph.add_node(pop, **dict(attrs or {}))
    for proj in network.get("projections") or ():
        attrs = {k: v for k, v in proj.items() if k not in ("from", "to")}
        attrs.setdefault("kind", "feedforward")
        graph.add_edge(proj["from"], proj["to"], **attrs)
    return graph


def _layout(graph: nx.DiGraph) -> dict[Any, tuple[float, float]]:
    """Feed-forward depth left to right; reservoirs below the populations they serve."""
    main = [n for n, d in graph.nodes(data=True) if d.get("kind") != "reservoir"]
    ff = nx.DiGraph()
    ff.add_nodes_from(main)
    ff.add_edges_from((u, v) for u, v, d in graph.edges(data=True)
                      if d.get("kind", "feedforward") == "feedforward" and u in ff and v in ff)
    if nx.is_directed_acyclic_graph(ff):
        generations = [sorted(g, key=str) for g in nx.topological_generations(ff)]
    else:
        generations = [sorted(main, key=str)]
    pos: dict[Any, tuple[float, float]] = {}
    for depth, nodes in enumerate(generations):
        for i, node in enumerate(nodes):
            pos[node] = (float(depth), (len(nodes) - 1) / 2 - i)
    floor = min((y for _, y in pos.values()), default=0.0) - 1.2
    taken: dict[float, int] = defaultdict(int)
    for node in sorted(set(graph) - set(pos), key=str):
        xs = [pos[m][0] for m in nx.all_neighbors(graph, node) if m in pos]
        x = float(np.mean(xs)) if xs else 0.0
        pos[node] = (x + 0.35 * taken[x], floor - 0.5 * taken[x])
        taken[x] += 1
    return pos


def plot_network(graph: nx.DiGraph, out_dir: str | os.PathLike, *,
                 name: str = "network") -> Path:
    """Draw a network graph: node colour by kind, edge colour/style by kind; ``<name>.png``.

    Nodes need attributes ``kind`` (input, layer, reservoir) and ``size``;
    edges ``kind`` (feedforward, modulatory, tap).
    """
    pos = _layout(graph)
    nodes = list(graph)
    sizes = [float(graph.nodes[n].get("size", 1) or 1) for n in nodes]
    node_size = [500 + 180 * math.log2(s) for s in sizes]
    colours = [NODE_COLOURS.get(graph.nodes[n].get("kind"), "#999999") for n in nodes]
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    fig = _figure(max(5.0, 2.2 * (max(xs) - min(xs) + 1) + 2.5),
                  max(3.0, 1.3 * (max(ys) - min(ys) + 1) + 0.8))
    ax = fig.subplots()
    nx.draw_networkx_nodes(graph, pos, nodelist=nodes, node_size=node_size,
                           node_color=colours, edgecolors="black", linewidths=0.8, ax=ax)
    for kind, (colour, style, rad) in EDGE_STYLES.items():
        edges = [(u, v) for u, v, d in graph.edges(data=True) if d.get("kind") == kind]
        # Edges that skip a column bow upwards, clear of the nodes between (and of
        # the reservoirs below): arc3 bends to the right of travel for rad > 0.
        skips = [(u, v) for u, v in edges if abs(pos[u][0] - pos[v][0]) > 1.01]
        groups = [([e for e in edges if e not in skips], rad)]
        groups += [([(u, v)], -0.25 if pos[v][0] > pos[u][0] else 0.25) for u, v in skips]
        for group, bend in groups:
            if group:
                nx.draw_networkx_edges(
                    graph, pos, edgelist=group, edge_color=colour, style=style, width=1.6,
                    arrows=True, arrowstyle="-|>", arrowsize=14, node_size=node_size,
                    nodelist=nodes, connectionstyle=f"arc3,rad={bend}", ax=ax)
    labels = {n: f"{n}\n({graph.nodes[n].get('size', '?')})" for n in nodes}
    nx.draw_networkx_labels(graph, pos, labels=labels, font_size=8, ax=ax)
    node_kinds = {d.get("kind") for _, d in graph.nodes(data=True)}
    edge_kinds = {d.get("kind") for _, _, d in graph.edges(data=True)}
    handles = [Line2D([], [], ls="", marker="o", ms=10, mfc=c, mec="black",
                      label=f"{kind} population")
               for kind, c in NODE_COLOURS.items() if kind in node_kinds]
    handles += [Line2D([], [], color=c, ls=s, lw=1.6, label=f"{kind} projection")
                for kind, (c, s, _) in EDGE_STYLES.items() if kind in edge_kinds]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              title="label: name (neurons)", title_fontsize=8)
    ax.margins(0.25)
    ax.set_axis_off()
    ax.set_title(f"Network {graph.graph.get('name', '')}".strip(), fontsize=11)
    return _save(fig, out_dir, name)


# ---------------------------------------------------------------------------
# A whole run


def run_dt_ms(run_dir: str | os.PathLike, config: Mapping[str, Any] | None = None,
              meta: Mapping[str, Any] | None = None) -> float | None:
    """The run's tick length in ms: from traces.h5, meta.json ``dt_ms`` or config ``timing.dt``."""
    dt = rundir.traces_dt_ms(run_dir)
    if dt is None and meta and meta.get("dt_ms") is not None:
        dt = float(meta["dt_ms"])
    if dt is None and config:
        timing = config.get("timing")
        if isinstance(timing, Mapping) and timing.get("dt") is not None:
            dt = to_ms(timing["dt"])
    return dt


def _served_layers(network) -> dict[str, str]:
    """Reservoir -> the layer its modulatory projection targets, from an inlined network."""
    if not isinstance(network, Mapping):
        return {}
    return {p["from"]: p["to"] for p in network.get("projections") or ()
            if p.get("kind") == "modulatory"}


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Regenerate into ``<run_dir>/plots/`` every figure whose data the run holds."""
    run = Path(run_dir)
    out = run / rundir.PLOTS_DIR
    has = {name: (run / name).is_file() for name in
           (rundir.CONFIG_FILE, rundir.META_FILE, rundir.METRICS_FILE, rundir.TRACES_FILE)}
    config = rundir.load_config(run) if has[rundir.CONFIG_FILE] else {}
    meta = rundir.load_meta(run) if has[rundir.META_FILE] else {}
    rows = rundir.load_metrics(run) if has[rundir.METRICS_FILE] else []
    dt_ms = run_dt_ms(run, config, meta)
    phases = meta.get("phases") or phases_from_metrics(rows)
    # DL's test phase; without one, the final evaluation (learning off) plays its part
    test = _phase(phases, "test") or _phase(phases, "evaluate")
    paths = []
    if isinstance(config.get("network"), Mapping):
        paths.append(plot_network(graph_from_config(config["network"]), out))
    if any(r["metric"].startswith(("objective_dl/", "objective_pl/")) for r in rows):
        paths.append(plot_objectives(rows, out, dt_ms=dt_ms, phases=phases))
    if any(r["metric"].startswith("accuracy/") for r in rows):
        paths.append(plot_accuracy(rows, out))
    if has[rundir.TRACES_FILE]:
        names = set(rundir.trace_names(run))
        served = _served_layers(config.get("network"))
        for res in sorted(n[: -len(".readout")] for n in names if n.endswith(".readout")):
            truth = next((t for t in (f"{res}.xi_true", f"{served.get(res)}.xi") if t in names),
                         None)
            if truth is not None:
                t = rundir.load_traces(run, [f"{res}.readout", truth])
                paths.append(plot_readout(
                    t[f"{res}.readout"], t[truth], out, name=res, dt_ms=dt_ms,
                    test_start_tick=None if test is None else int(test["start_tick"])))
        for pop in sorted(n[: -len(".code")] for n in names if n.endswith(".code")):
            if f"{pop}.label" in names:
                t = rundir.load_traces(run, [f"{pop}.code", f"{pop}.label"])
                code, label = t[f"{pop}.code"], t[f"{pop}.label"]
                keep = np.ones(code["ticks"].shape, dtype=bool)
                if test is not None:
                    keep = code["ticks"] >= int(test["start_tick"])
                    keep = keep if keep.any() else np.ones_like(keep)
                paths.append(plot_code_words(code["data"][keep], label["data"][keep], out,
                                             name=pop))
        channels = rundir.load_channels(run)
        if channels:
            paths.append(plot_modulator_timing(channels, out, dt_ms=dt_ms))
    return paths
