"""A run directory's state and scores as text: what ``eventsim show RUN_DIR`` prints.

Reads only the files a run writes as it goes (``meta.json``, ``metrics.csv``), so
it works on a finished run, on one still running in another process, and on one
that was stopped or killed (whose checkpoint ``eventsim run --resume`` continues).
"""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np

from .rundir import METRICS_FILE, load_meta, load_metrics

STATUS_TEXT = {"running": "running, or stopped without a clean exit"}
"""How a ``meta.json`` status reads where its own word would mislead (a killed run
still says ``running``); every other status is printed as it is."""


def _seconds(s: float) -> str:
    h, rest = divmod(int(round(s)), 3600)
    m, sec = divmod(rest, 60)
    return f"{s:,.0f} s ({h} h {m:02d} min)" if h else f"{s:,.0f} s ({m} min {sec:02d} s)"


def _header(run_dir, meta: dict) -> list[str]:
    seeds = meta.get("seeds") or []
    array = " ".join(str(meta[k]) for k in ("backend", "dtype") if meta.get(k))
    lines = [f"{run_dir}: {meta.get('scenario', '?')}, {len(seeds)} trial(s) (seeds "
             f"{', '.join(map(str, seeds))})" + (f", {array}" if array else "")]
    status = meta.get("status", "?")
    text = STATUS_TEXT.get(status, status)
    point = meta.get("checkpoint")
    if status != "finished" and point:
        where = (f"after epoch {point['epoch']} of phase {point['phase']!r} (tick "
                 f"{point['tick']:,})" if point.get("epoch") is not None
                 else f"at tick {point['tick']:,} of phase {point['phase']!r}")
        text += f"; last checkpoint {where}: eventsim run --resume {run_dir}"
    elif status != "finished":
        text += "; no checkpoint (checkpoint.every makes one)"
    lines.append(f"status: {text}")
    if meta.get("error"):
        lines.append(f"error: {meta['error']}")
    if meta.get("wall_time_s") is not None:
        ticks = f" for {meta['ticks']:,} ticks" if meta.get("ticks") else ""
        upto = "" if status == "finished" else " up to its last save"
        lines.append(f"run time{upto}: {_seconds(meta['wall_time_s'])}{ticks}")
    code = (f"code: eventsim {meta.get('eventsim_version', '?')}, commit "
            f"{(meta.get('git_commit') or 'unknown')[:7]}"
            f"{' (uncommitted changes)' if meta.get('git_dirty') else ''}")
    resumed = meta.get("resumed") or []
    if resumed:
        code += (f"; resumed {len(resumed)} time(s), last at commit "
                 f"{(resumed[-1].get('git_commit') or 'unknown')[:7]}")
    lines.append(code)
    return lines


def describe_run(run_dir: str | os.PathLike, prefix: str = "accuracy/") -> list[str]:
    """Text lines: the run's scenario, status, run time, code, and every metric named
    ``prefix…`` at each (phase, epoch) it was scored, as the mean over trials and per
    trial, in the order the run wrote them."""
    meta = load_meta(run_dir)
    lines = _header(run_dir, meta)
    if not os.path.isfile(os.path.join(run_dir, METRICS_FILE)):
        return [*lines, "no metrics yet"]
    values: dict[str, dict[tuple, dict[int, float]]] = defaultdict(dict)
    for row in load_metrics(run_dir):
        if row["metric"].startswith(prefix):
            key = (row["phase"], row["epoch"])
            values[row["metric"]].setdefault(key, {})[row["trial"]] = row["value"]
    if not values:
        return [*lines, f"no metric named {prefix}… yet"]
    for metric, points in values.items():
        lines.append(f"{metric}: mean over trials [per trial]")
        width = max(len(phase) for phase, _ in points)
        for (phase, epoch), trials in points.items():
            per_trial = [trials[k] for k in sorted(trials)]
            when = f"{phase:<{width}}" + ("" if epoch is None else f" epoch {epoch:>3}")
            lines.append(f"  {when}  {np.mean(per_trial):.4f}  "
                         f"[{', '.join(f'{v:.4f}' for v in per_trial)}]")
    return lines
