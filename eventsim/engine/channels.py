"""Modulatory broadcast channels (third factor in transit).

A channel carries messages from a sender (a reservoir readout or the analytic ξ)
to one layer. When it sends is its broadcast mode (all counts in ticks):

* ``tick``:   at every tick ``t`` with ``(t − phase) mod period = 0`` (default:
  every tick);
* ``sample``: once per sample, at ``phase`` ticks into the presentation (or a
  burst of ``burst`` consecutive ticks from there);
* ``burst``:  ``burst`` consecutive ticks out of every ``period``, starting at
  ``phase`` (``(t − phase) mod period < burst``).

A message sent at tick ``t`` reaches trial ``k`` at ``t + delay + j_k``, where
``j_k`` is the jitter drawn from trial k's own stream (``uniform``: an integer
uniform in [−jitter, +jitter]; ``normal``: a rounded N(0, jitter²)); arrival is
never before the send tick. With probability ``loss`` the message is dropped
for that trial. Deliveries run in the DELIVER stage of their tick and tell the
receiver the tick the message was sent in. Every send and delivery tick is
recorded, compactly: send ticks as arithmetic runs ``(first, step, count)`` (a
channel that sends every tick of a long run keeps one run per training
stretch), and delivery ticks only where jitter or loss make them differ from
``send + delay``. :meth:`Channel.record` gives this compact record (the form
``traces.h5`` stores); :func:`eventsim.records.expand_channel` expands it.
"""

from __future__ import annotations

from array import array

import numpy as np

from ..backend import RandomStreams
from ..records import runs_of

BROADCASTS = ("tick", "sample", "burst")


class Channel:
    """One modulatory edge."""

    def __init__(self, name: str, *, delay: int, jitter: int, jitter_dist: str, loss: float,
                 period: int, seeds, schedule, broadcast: str = "tick", phase: int = 0,
                 burst: int = 1) -> None:
        if broadcast not in BROADCASTS:
            raise ValueError(f"unknown broadcast mode {broadcast!r}")
        self.name = name
        self.delay = int(delay)
        self.jitter = int(jitter)
        self.jitter_dist = jitter_dist
        self.loss = float(loss)
        self.period = max(1, int(period))
        self.broadcast = broadcast
        self.phase = int(phase)
        self.burst = max(1, int(burst))
        self.trials = len(seeds)
        self.streams = RandomStreams(seeds, f"channel/{name}")
        self.schedule = schedule
        """``schedule(delay, callback)``: call ``callback(tick)`` in that tick's DELIVER stage."""
        self.receiver = None
        self.in_flight: dict[int, list] = {}
        self.sent_runs: list[list[int]] = []
        """Send ticks as arithmetic runs ``[first, step, count]``, in order."""
        self.delivered = array("q")
        """Delivery ticks, K per message, kept only when the channel is random."""

    def due(self, tick: int, sample_phase: int) -> bool:
        """Whether the channel sends at ``tick`` (``sample_phase``: tick index in the sample)."""
        if self.broadcast == "sample":
            return 0 <= sample_phase - self.phase < self.burst
        return (tick - self.phase) % self.period < self.burst

    @property
    def every_tick(self) -> bool:
        """Whether the channel sends at every tick (:meth:`due` is always true)."""
        return self.broadcast == "tick" and self.period == 1

    @property
    def random(self) -> bool:
        return self.jitter > 0 or self.loss > 0

    def _arrivals(self, tick: int) -> np.ndarray:
        """Arrival tick per trial (−1 for dropped)."""
        out = np.full(self.trials, tick + self.delay, dtype=np.int64)
        if not self.random:
            return out
        for k, g in enumerate(self.streams.generators):
            lost = self.loss > 0 and g.random() < self.loss
            if self.jitter > 0:
                if self.jitter_dist == "uniform":
                    j = int(g.integers(-self.jitter, self.jitter + 1))
                else:
                    j = int(round(g.normal(0.0, self.jitter)))
                out[k] = max(tick, out[k] + j)
            if lost:
                out[k] = -1
        return out

    def record_send(self, tick: int) -> None:
        """Add ``tick`` to the send record (:meth:`send` does; so does the engine's
        immediate path, :mod:`eventsim.engine.immediate`, which delivers itself)."""
        runs = self.sent_runs
        if runs:
            first, step, count = runs[-1]
            if count == 1:  # any second tick continues a run of one
                runs[-1][1:] = [tick - first, 2]
                return
            if tick == first + step * count:
                runs[-1][2] = count + 1
                return
        runs.append([tick, 0, 1])

    def send(self, tick: int, message) -> None:
        """Send ``message`` (K, n) at ``tick``; schedules its deliveries."""
        self.record_send(tick)
        if not self.random:  # every trial gets it after exactly ``delay`` ticks
            when = tick + self.delay
            self.receiver.on_send(tick, 1)
            if when not in self.in_flight:
                self.in_flight[when] = []
                self.schedule(self.delay, self._deliver_due)
            self.in_flight[when].append((message, None, tick))
            return
        arrivals = self._arrivals(tick)
        self.delivered.extend(arrivals.tolist())
        whens = np.unique(arrivals[arrivals >= 0]).tolist()
        self.receiver.on_send(tick, len(whens))
        for when in whens:
            mask = arrivals == when
            entry = (message, None if mask.all() else _as_like(mask, message), tick)
            if when not in self.in_flight:
                self.in_flight[when] = []
                self.schedule(when - tick, self._deliver_due)
            self.in_flight[when].append(entry)

    def _deliver_due(self, tick: int) -> None:
        for message, mask, sent in self.in_flight.pop(tick):
            self.receiver.deliver(message, mask, sent)

    def get_state(self) -> dict:
        """Messages in flight, the RNG states and the records (for checkpoints)."""
        return {"in_flight": self.in_flight, "rng": self.streams.get_state(),
                "sent_runs": np.array(self.sent_runs, dtype=np.int64).reshape(-1, 3),
                "delivered": np.array(self.delivered, dtype=np.int64)}

    def set_state(self, state: dict, now: int) -> None:
        """Restore ``state`` and schedule its messages in flight relative to tick ``now``."""
        self.in_flight = state["in_flight"]
        self.streams.set_state(state["rng"])
        # a checkpoint from before the compact record holds the plain send ticks
        runs = runs_of(state["sent"]) if "sent" in state else state["sent_runs"]
        self.sent_runs = np.asarray(runs, dtype=np.int64).tolist()
        self.delivered = array("q")
        if self.random:
            self.delivered.frombytes(np.asarray(state["delivered"], dtype=np.int64).tobytes())
        for when in sorted(self.in_flight):
            self.schedule(when - now, self._deliver_due)

    def record(self) -> dict:
        """The compact record (:mod:`eventsim.records`): ``sent_runs`` (R, 3),
        ``trials``, ``delay`` and ``deliver_tick`` ((M, K), −1 where dropped; None
        when the channel is not random)."""
        deliver = None
        if self.random:
            deliver = np.array(self.delivered, dtype=np.int64).reshape(-1, self.trials)
        return {"sent_runs": np.array(self.sent_runs, dtype=np.int64).reshape(-1, 3),
                "trials": self.trials, "delay": self.delay, "deliver_tick": deliver}


def _as_like(mask: np.ndarray, like):
    """Host boolean mask -> array on the same backend as ``like``."""
    if type(like).__module__.startswith("cupy"):
        import cupy  # noqa: PLC0415

        return cupy.asarray(mask, dtype=like.dtype)
    return mask.astype(like.dtype)
