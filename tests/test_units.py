"""Durations and integer ticks (eventsim.units)."""

from __future__ import annotations

import math

import pytest

from eventsim.units import format_ms, to_ms, to_ticks


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("5 ms", 5.0),
        ("5ms", 5.0),
        ("  5 ms ", 5.0),
        ("550 s", 550_000.0),
        ("0.5 s", 500.0),
        (".5 s", 500.0),
        ("2 min", 120_000.0),
        ("250 us", 0.25),
        ("250 µs", 0.25),
        ("1e3 ms", 1000.0),
        ("+3 ms", 3.0),
        ("0 s", 0.0),
        ("7", 7.0),  # a bare number in a string is milliseconds
    ],
)
def test_to_ms_reads_units(text, ms):
    assert to_ms(text) == ms


@pytest.mark.parametrize(("value", "ms"), [(5, 5.0), (0, 0.0), (2.5, 2.5), (1e6, 1e6)])
def test_plain_numbers_are_milliseconds(value, ms):
    out = to_ms(value)
    assert out == ms
    assert isinstance(out, float)


@pytest.mark.parametrize(
    ("value", "dt", "ticks"),
    [
        ("5 ms", 1.0, 5),
        ("550 s", 1.0, 550_000),
        ("0.5 s", 1.0, 500),
        ("0.5 s", 0.5, 1000),
        ("550 s", 0.1, 5_500_000),  # 550000 / 0.1 is not exact in binary: still whole
        ("0.3 ms", 0.1, 3),  # 0.3 / 0.1 = 2.9999999999999996 in floating point
        (20, 1.0, 20),
        (20.0, 2.0, 10),
        ("0 ms", 1.0, 0),
        ("1 min", 1.0, 60_000),
    ],
)
def test_to_ticks_whole(value, dt, ticks):
    out = to_ticks(value, dt)
    assert out == ticks
    assert type(out) is int


@pytest.mark.parametrize(
    ("value", "unit_hint"),
    [("5 parsecs", "parsecs"), ("5 sec", "sec"), ("5 MS", "MS"), ("3 h", "h")],
)
def test_unknown_unit_is_an_error_naming_the_unit(value, unit_hint):
    with pytest.raises(ValueError, match="unknown time unit") as info:
        to_ms(value)
    message = str(info.value)
    assert repr(unit_hint) in message
    assert "ms" in message and "\n" not in message  # lists the accepted units, one line


@pytest.mark.parametrize("value", ["five ms", "", "ms", "5 m s", "5..0 ms", "1,5 ms", "inf ms",
                                   "nan"])
def test_unreadable_duration_is_an_error(value):
    with pytest.raises(ValueError, match="cannot read"):
        to_ms(value)


@pytest.mark.parametrize("value", [None, [5], {"ms": 5}, True, False])
def test_wrong_type_is_an_error(value):
    with pytest.raises(ValueError, match="expected a duration"):
        to_ms(value)


@pytest.mark.parametrize("value", ["-5 ms", "-0.5 s", -1, -1e-9])
def test_negative_is_an_error(value):
    with pytest.raises(ValueError, match="negative"):
        to_ms(value)
    with pytest.raises(ValueError, match="negative"):
        to_ticks(value, 1.0)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "1e400 ms", "1e400"])
def test_non_finite_is_an_error(value):
    with pytest.raises(ValueError, match="not finite"):
        to_ms(value)
    with pytest.raises(ValueError, match="not finite"):
        to_ticks(value, 1.0)


@pytest.mark.parametrize(
    ("value", "dt"),
    [
        ("2.5 ms", 1.0),
        ("5 ms", 2.0),
        ("0.5 ms", 1.0),
        ("1.0000001 ms", 1.0),  # close to a whole tick, but not floating-point noise
        ("50000.00001 s", 1.0),  # a hundredth of a tick on a long duration is not rounded
        (0.25, 0.1),
        ("1 us", 1.0),
    ],
)
def test_non_whole_tick_count_is_an_error_not_rounded(value, dt):
    with pytest.raises(ValueError, match="not a whole number") as info:
        to_ticks(value, dt)
    assert f"{dt:g} ms" in str(info.value)  # tells which dt it was measured against


@pytest.mark.parametrize("dt", [0.0, -1.0, math.inf, math.nan])
def test_bad_tick_length_is_a_value_error(dt):
    with pytest.raises(ValueError, match="dt"):
        to_ticks("5 ms", dt)


def test_whole_ticks_agree_with_an_explicit_count():
    # every multiple k*dt for dt in a few grids converts back to exactly k
    for dt in (0.1, 0.25, 1.0, 2.0):
        for k in range(0, 5001, 7):
            ms = k * dt
            assert to_ticks(ms, dt) == k
            assert to_ticks(f"{ms!r} ms", dt) == k


@pytest.mark.parametrize(
    ("ms", "text"), [(550_000.0, "550 s"), (5.0, "5 ms"), (1500.0, "1500 ms"), (0.25, "0.25 ms"),
                     (2000.0, "2 s")])
def test_format_ms(ms, text):
    assert format_ms(ms) == text
    assert to_ms(text) == ms
