"""Modulatory channel settings: one edge's fields, merged with a scenario's overrides.

A modulatory edge of the network file sets ``delay``, ``jitter``,
``jitter_dist``, ``loss``, ``period`` and the broadcast mode (``broadcast``,
``phase``, ``burst``; see :mod:`eventsim.engine.channels`). A scenario may
override any of them for every edge (``modulator.all``) and per target layer
(``modulator.channels.<layer>``, which wins). The merged values are checked
here, each error located at the file and field that set the offending value:

* ``broadcast: tick``   ``period`` (default one tick) and ``phase < period``;
  no ``burst`` (that is ``broadcast: burst``);
* ``broadcast: sample`` no ``period`` (it is the sample time);
  ``phase + burst`` (burst default one tick) within the sample;
* ``broadcast: burst``  needs ``period`` and ``burst``, with ``burst ≤ period``
  and ``phase < period``;
* with the tick ``dt`` known, every duration is a whole number of ticks
  (``period`` and ``burst`` at least one).
"""

from __future__ import annotations

from .. import units

FIELDS = ("delay", "jitter", "jitter_dist", "loss", "period", "broadcast", "phase", "burst")


class Located:
    """Channel field values with the (doc, path) that set each of them."""

    def __init__(self, values: dict, origin: dict, fallback: tuple) -> None:
        self.values = values
        self.origin = origin
        self.fallback = fallback

    def error(self, field: str, message: str, hint: str | None = None):
        """An error at the place that set ``field``; when the broadcast mode was set
        elsewhere, the message says where."""
        doc, path = self.origin.get(field) or self.origin.get("broadcast") or self.fallback
        mode = self.origin.get("broadcast")
        if mode is not None and (mode[0] is not doc or mode[0].line(mode[1]) != doc.line(path)):
            message += f" (broadcast: {self.values['broadcast']} is set at " \
                       f"{mode[0].file}:{mode[0].line(mode[1])})"
        return doc.error(path, message, hint)


def edge_settings(doc, where: tuple, spec) -> Located:
    """The fields of one modulatory edge as written in its network file."""
    values = {f: getattr(spec, f) for f in FIELDS}
    given = spec.model_fields_set
    origin = {f: (doc, (*where, f)) for f in FIELDS if f in given}
    return Located(values, origin, (doc, where))


def merged_settings(sc, layer: str, doc, where: tuple, spec) -> Located:
    """Edge fields overridden by ``modulator.all`` and then ``modulator.channels.<layer>``."""
    out = edge_settings(doc, where, spec)
    mod = sc.spec.modulator
    for path, override in ((("modulator", "all"), mod.all),
                           (("modulator", "channels", layer), mod.channels.get(layer))):
        if override is None:
            continue
        for field, value in override.model_dump().items():
            if value is not None:
                out.values[field] = value
                out.origin[field] = (sc.doc, (*path, field))
    return out


def overrides(sc) -> dict[str, dict]:
    """Per modulated layer, the fields the scenario overrides (``all``, then the layer's)."""
    out = {}
    every = {k: v for k, v in sc.spec.modulator.all.model_dump().items() if v is not None}
    for _, layer, _ in sc.network.edges_of("modulatory"):
        own = sc.spec.modulator.channels.get(layer)
        own = {} if own is None else {k: v for k, v in own.model_dump().items() if v is not None}
        out[layer] = {**every, **own}
    return out


def check(s: Located, *, dt: float | None = None, sample: float | None = None) -> None:
    """Check a channel's merged settings (durations in ms); see the module docstring."""
    v = s.values
    mode, period, phase, burst = v["broadcast"], v["period"], v["phase"], v["burst"]
    if period is not None and period <= 0:
        raise s.error("period", "period must be positive", "e.g. period: 1 ms")
    if burst is not None and burst <= 0:
        raise s.error("burst", "burst must be positive", "e.g. burst: 5 ms")
    if mode == "tick":
        if burst is not None:
            raise s.error("burst", "burst applies to broadcast: burst or broadcast: sample",
                          "set broadcast: burst (bursts every period) or remove burst")
        every = period if period is not None else dt  # default: every tick
        if phase > 0 and every is None:
            raise s.error("phase", "phase needs a period: without one the channel sends "
                                   "every tick", "add e.g. period: 10 ms")
        if every is not None and phase >= every:
            raise s.error("phase", f"phase {_ms(phase)} is not shorter than the period "
                                   f"{_ms(every)}", "use 0 <= phase < period (the default "
                                                    "period is one tick)")
    elif mode == "sample":
        if period is not None:
            raise s.error("period", "broadcast: sample sends once per sample, so its period "
                                    "is the sample time", "remove period, or use broadcast: tick")
        if sample is not None:
            end = phase + (burst if burst is not None else dt or 0.0)
            if end > sample:
                field = "phase" if burst is None else "burst"
                raise s.error(field, f"phase {_ms(phase)} + burst {_ms(end - phase)} does not "
                                     f"fit in the {_ms(sample)} sample",
                              "phase counts from the start of each sample")
    elif mode == "burst":
        if period is None:
            raise s.error("broadcast", "broadcast: burst needs a period (the time from one "
                                       "burst start to the next)", "add e.g. period: 50 ms")
        if burst is None:
            raise s.error("broadcast", "broadcast: burst needs a burst length",
                          "add e.g. burst: 5 ms")
        if burst > period:
            raise s.error("burst", f"burst {_ms(burst)} is longer than the period {_ms(period)}",
                          "use burst <= period")
        if phase >= period:
            raise s.error("phase", f"phase {_ms(phase)} is not shorter than the period "
                                   f"{_ms(period)}", "use 0 <= phase < period")
    if dt is not None:
        for field, minimum in (("delay", 0), ("jitter", 0), ("period", 1), ("phase", 0),
                               ("burst", 1)):
            if v[field] is not None:
                _whole(s, field, v[field], dt, minimum)


def _whole(s: Located, field: str, ms: float, dt: float, minimum: int) -> None:
    try:
        ticks = units.to_ticks(ms, dt)
    except ValueError:
        raise s.error(field, f"{ms:.12g} ms is {ms / dt:.12g} ticks of dt = {dt:.12g} ms, "
                             "not a whole number", f"use a multiple of {dt:.12g} ms") from None
    if ticks < minimum:
        raise s.error(field, f"{ms:.12g} ms is shorter than one tick (dt = {dt:.12g} ms)",
                      f"use a positive multiple of {dt:.12g} ms")


def _ms(ms: float) -> str:
    return units.format_ms(ms)
