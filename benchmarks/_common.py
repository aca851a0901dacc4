"""Shared helpers for the benchmark scripts (not a benchmark itself).

* :func:`blas_settings` — the BLAS thread counts to measure: 1 (pinned with
  threadpoolctl) and the library default, unless they coincide.
* :func:`interleave` — run several timed variants side by side: every
  repetition runs each variant once (in a rotating order), and the result per
  variant is the median over repetitions. Timings of a shared machine drift;
  ratios of interleaved medians are much steadier than absolute numbers.
* :func:`table` — a plain fixed-width table.

Benchmarks never assert on time; they print.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl is a dev dependency
    threadpool_info = None
    threadpool_limits = None


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few-second smoke run")
    p.add_argument("--threads", choices=("both", "1", "default"), default="both",
                   help="BLAS threads: pinned to 1, the library default, or both (default)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    return p


def default_threads() -> int | None:
    if threadpool_info is None:
        return None
    counts = [d["num_threads"] for d in threadpool_info() if d.get("user_api") == "blas"]
    return max(counts) if counts else None


def blas_settings(choice: str = "both") -> list[tuple[str, int | None]]:
    """[(label, limit)]: limit None = library default."""
    dflt = default_threads()
    out = []
    if choice in ("both", "1"):
        out.append(("1 thread", 1))
    if choice in ("both", "default") and (dflt != 1 or choice == "default"):
        out.append((f"default ({dflt} threads)", None))
    return out


@contextlib.contextmanager
def blas_threads(limit: int | None):
    if limit is None or threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def header(title: str) -> None:
    blas = "unknown"
    if threadpool_info is not None:
        libs = [f"{d['internal_api']} {d.get('version')} ({d.get('architecture')}, "
                f"{d['num_threads']} threads)" for d in threadpool_info()
                if d.get("user_api") == "blas"]
        blas = "; ".join(libs) or "none found"
    print(f"== {title}")
    print(f"   python {platform.python_version()}, numpy {np.__version__}, BLAS: {blas}, "
          f"cpus: {os.cpu_count()}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')!r}")


def interleave(variants: dict[str, Callable[[], None]], reps: int,
               per_call: dict[str, int] | int = 1, max_s: float | None = None,
               min_reps: int = 5) -> dict[str, float]:
    """Median seconds per unit of each variant, measured interleaved.

    ``variants[name]()`` runs ``per_call`` units of work (ticks, calls); the
    result is the median over ``reps`` of (elapsed / per_call). The order of the
    variants rotates between repetitions so that no variant always runs
    right after another one. With ``max_s``, repetitions stop once that much
    time has passed (but not before ``min_reps``); ``"_reps"`` in the result
    says how many ran.
    """
    names = list(variants)
    samples: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    for rep in range(reps):
        if max_s is not None and rep >= min_reps and time.perf_counter() - start > max_s:
            break
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            units = per_call if isinstance(per_call, int) else per_call[name]
            t0 = time.perf_counter()
            variants[name]()
            samples[name].append((time.perf_counter() - t0) / units)
    out = {n: statistics.median(s) for n, s in samples.items()}
    out["_reps"] = len(samples[names[0]])
    out["_samples"] = samples
    return out


def paired_ratio(med: dict, a: str, b: str) -> str:
    """Median of the per-repetition ratios a/b (each pair ran back to back) and their range.

    A wide range means the machine was busy; the median is still the number to read.
    """
    s = med["_samples"]
    ratios = [x / y for x, y in zip(s[a], s[b], strict=True)]
    return f"{statistics.median(ratios):.3f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def per_unit(fn: Callable[[], None], units: int = 1, tries: int = 3) -> float:
    """Fastest of ``tries`` timed calls of ``fn`` (which does ``units`` units), per unit.

    Used to size the repetitions; the minimum is robust to a stall of the
    shared machine during calibration.
    """
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return max(best / units, 1e-9)


def calls_for(fn: Callable[[], None], budget_s: float, minimum: int = 1,
              maximum: int = 1_000_000) -> int:
    """How many calls of ``fn`` fill about ``budget_s`` seconds (calibrated once)."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > 0.02 or n >= maximum:
            break
        n *= 4
    per = dt / n
    return int(min(maximum, max(minimum, budget_s / max(per, 1e-9))))


def repeat(fn: Callable[[], None], n: int) -> Callable[[], None]:
    def run():
        for _ in range(n):
            fn()
    return run


def table(rows: list[list], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    def fmt(r):
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True)))
    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)
