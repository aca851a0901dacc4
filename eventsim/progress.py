"""Progress display for long runs (tqdm).

On a terminal a live bar shows the phase, the simulated time, ticks per second,
the ETA and the latest metric. When stderr is not a terminal (CI logs, ``nohup``)
the bar is replaced by plain lines: one per reported metric (epochs,
evaluations) and, during long stretches without one, a line with the share done
and the ETA at most every ``every_s`` seconds. ``quiet`` turns everything off.
Engine runs count ticks (``dt_ms`` gives their simulated time); runs without an
engine (the static pHSIC trainer) count epochs (``unit="epoch"``, no ``dt_ms``).
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from .units import format_ms


class Progress:
    """Tracks ticks done out of a known total."""

    def __init__(self, total_ticks: int, dt_ms: float | None, *, quiet: bool = False,
                 stream=None, start_tick: int = 0, every_s: float = 60.0,
                 clock=time.time, unit: str = "tick") -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.dt_ms = dt_ms
        self.total = int(total_ticks)
        self.interactive = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = None
        if self.interactive:
            self.bar = tqdm(total=self.total, initial=start_tick, unit=unit, unit_scale=True,
                            file=self.stream, dynamic_ncols=True, smoothing=0.1)
        self.unit = unit
        self.done = self.first = int(start_tick)
        """Ticks done; ``first``: where this session started (a resumed run)."""
        self.phase = ""
        self.clock = clock
        self.every_s = every_s
        self.start = self.last_line = clock()

    def set_phase(self, name: str, detail: str = "") -> None:
        self.phase = name
        if self.bar is not None:
            self.bar.set_description(f"{name} {detail}".strip())

    def advance(self, tick: int, *, line: bool = True) -> None:
        """Move to ``tick`` (or epoch); ``line=False``: no share/ETA line (a metric follows)."""
        step = tick - self.done
        self.done = tick
        if self.bar is not None and step > 0:
            self.bar.update(step)
            self.bar.set_postfix_str(self._where(), refresh=False)
        elif self.bar is None and not self.quiet and line \
                and self.clock() - self.last_line >= self.every_s:
            rate = self._rate()
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            share = 100.0 * self.done / self.total if self.total else 100.0
            self._line(f"{share:.1f} % of {self.total:,} {self.unit}s, ETA {left / 60:.1f} min")

    def _rate(self) -> float:
        elapsed = self.clock() - self.start
        return (self.done - self.first) / elapsed if elapsed > 0 else 0.0

    def _where(self) -> str:
        """Simulated time (ticks), or ``epoch 3/100`` (other units)."""
        if self.dt_ms is None:
            return f"{self.unit} {self.done}/{self.total}"
        return f"t={format_ms(self.done * self.dt_ms)}"

    def _line(self, text: str) -> None:
        self.last_line = self.clock()
        if self.dt_ms is None:
            elapsed = self.clock() - self.start
            pace = (f"{elapsed / (self.done - self.first):.1f} s/{self.unit}"
                    if self.done > self.first else "")
        else:
            pace = f"{self._rate():,.0f} {self.unit}s/s"
        print(f"[{self.phase}] {self._where()} ({pace}) {text}", file=self.stream, flush=True)

    def metric(self, text: str) -> None:
        """Show the latest metric (on the bar, or as a plain line off a terminal)."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self._where()} {text}")
        else:
            self._line(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
