"""Compact tick records: arithmetic runs, and the modulatory channels' records.

A long run's channel sends at millions of ticks, almost all of them in a few
regular stretches, so ticks are kept as **runs**: an int64 array of shape
(R, 3) whose rows ``(first, step, count)`` stand for the ticks ``first + step·i``,
``i < count`` (``step`` is 0 in a run of one), in increasing order.

A **channel record** (what :meth:`eventsim.engine.channels.Channel.record`
returns, what ``traces.h5`` stores and :func:`eventsim.rundir.load_channels`
gives back) is a dict:

``sent_runs``     the send ticks as runs, (R, 3);
``trials``        K, the number of trials;
``delay``         the channel's delay in ticks (None when unknown);
``deliver_tick``  None when every trial receives every message exactly ``delay``
                  ticks after it was sent, else the delivery tick of each
                  message in each trial, (M, K), −1 where it was dropped;
``sample_runs``   the ticks at which samples start, as runs (only in records
                  of a run directory; :func:`expand_channel` leaves it out
                  when absent).

:func:`expand_channel` turns a record into plain tick arrays, for the whole run
or for a window of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: The columns of a runs array.
RUN_COLUMNS = ("first", "step", "count")


def runs_of(ticks) -> np.ndarray:
    """The increasing ``ticks`` as runs (R, 3).

    Greedy from the left: each run takes the next two ticks and then every
    following tick at the same step (the runs a channel builds send by send).
    """
    t = np.asarray(ticks, dtype=np.int64).ravel()
    if t.size and (np.diff(t) <= 0).any():
        raise ValueError("ticks must be strictly increasing to be stored as runs")
    steps = np.diff(t)
    # stretch_end[j]: one past the last index of the stretch of equal steps holding steps[j]
    ends = np.append(np.flatnonzero(steps[1:] != steps[:-1]) + 1, steps.size)
    stretch_end = np.repeat(ends, np.diff(ends, prepend=0))
    runs, i = [], 0
    while i < t.size:
        if i == t.size - 1:
            runs.append((t[i], 0, 1))
            break
        last = int(stretch_end[i])  # ticks i .. last are evenly spaced
        runs.append((t[i], steps[i], last - i + 1))
        i = last + 1
    return np.array(runs, dtype=np.int64).reshape(-1, 3)


def _ceil_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -(-a // b)


def _window(runs, start: int | None, stop: int | None) -> tuple[np.ndarray, int]:
    """Ticks of ``runs`` in ``[start, stop)``, and how many ticks come before them."""
    runs = np.asarray(runs, dtype=np.int64).reshape(-1, 3)
    first, step, count = runs.T
    step = np.maximum(step, 1)  # a run of one: any step finds its single tick
    lo = (np.zeros_like(count) if start is None
          else np.clip(_ceil_div(start - first, step), 0, count))  # ticks before start
    hi = count if stop is None else np.clip(_ceil_div(stop - first, step), 0, count)
    n = np.maximum(hi - lo, 0)
    ticks = np.arange(int(n.sum()), dtype=np.int64)  # in place from here: two arrays of M
    ticks -= np.repeat(np.cumsum(n) - n - lo, n)  # the index of each tick in its run
    ticks *= np.repeat(step, n)
    ticks += np.repeat(first, n)
    return ticks, int(lo.sum())


def expand_runs(runs, start: int | None = None, stop: int | None = None) -> np.ndarray:
    """The ticks (int64, increasing) of ``runs`` that lie in ``[start, stop)`` (None: no bound)."""
    return _window(runs, start, stop)[0]


def expand_channel(record: Mapping[str, Any], start: int | None = None,
                   stop: int | None = None) -> dict[str, np.ndarray]:
    """The plain ticks of a channel record (module docstring), for sends in ``[start, stop)``.

    Returns ``sent_tick`` (M,), ``deliver_tick`` (M, K) with −1 where a message
    was dropped, ``dropped`` (M, K) and, when the record has ``sample_runs``,
    ``sample_ticks`` (the sample starts in the same window). Only the window is
    expanded, so a plot of a few samples of a long run stays small.
    """
    sent, before = _window(record["sent_runs"], start, stop)
    if record["deliver_tick"] is None:
        deliver = np.repeat((sent + int(record["delay"]))[:, None], int(record["trials"]), axis=1)
    else:  # the window's messages are consecutive: a view, no copy
        deliver = np.asarray(record["deliver_tick"], dtype=np.int64)[before:before + sent.size]
    out = {"sent_tick": sent, "deliver_tick": deliver, "dropped": deliver < 0}
    if "sample_runs" in record:
        out["sample_ticks"] = expand_runs(record["sample_runs"], start, stop)
    return out


def message_count(record: Mapping[str, Any]) -> int:
    """M, the number of messages a channel record holds (without expanding it)."""
    return int(np.asarray(record["sent_runs"], dtype=np.int64).reshape(-1, 3)[:, 2].sum())
