"""Broadcast modes of a modulatory channel (every tick / once per sample at a phase /
bursts): which ticks send, when each trial receives, the statistics of delivered ticks
under jitter and loss relative to the sample boundaries, scenario overrides
(``modulator.all`` and per layer), and the located errors of bad settings."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from _shared import drive_channel

from eventsim.backend import get_backend
from eventsim.config.network import parse_network
from eventsim.config.scenario import parse_scenario
from eventsim.engine.simulator import LayerRule, Simulator
from eventsim.errors import ConfigError
from eventsim.records import expand_channel
from eventsim.runner import Runner

REPO = Path(__file__).resolve().parents[1]
F64 = get_backend("numpy", "float64")

NET = """name: one-layer
populations:
  x: {kind: input, size: 2}
  h: {kind: layer, size: 3}
  m: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h}
  - {from: m, to: h, kind: modulatory{extra}}
"""


class Feed:
    def __init__(self, trials):
        self.g = np.random.default_rng(0)
        self.trials = trials

    def next(self):
        x = self.g.uniform(-1, 1, size=(self.trials, 2))
        labels = self.g.integers(0, 2, size=self.trials)
        return F64.asarray(x), F64.asarray(labels[:, None].astype(float)), labels


def _sim_record(extra, *, S=10, T=200, seeds=(1,)):
    rule = LayerRule(gamma=2.0, memory=3, sigma_x=0.5, sigma_y=0.5, sigma_z=0.5)
    sim = Simulator(parse_network(NET.replace("{extra}", extra)), seeds=list(seeds),
                    backend=F64, sample_ticks=S, rules={"h": rule})
    sim.set_feed(Feed(len(seeds)))
    sim.set_learning(layers=True, readouts=False)
    sim.set_eta(0.1)
    sim.run(T)
    return expand_channel(sim.channels["h"].record())


def test_every_tick_is_the_default_and_period_phase_select_ticks():
    rec = _sim_record("", T=50)
    np.testing.assert_array_equal(rec["sent_tick"], np.arange(50))
    rec = _sim_record(", period: 7 ms, phase: 3 ms", T=50)
    np.testing.assert_array_equal(rec["sent_tick"], np.arange(3, 50, 7))


def test_sample_broadcast_sends_once_per_sample_at_its_phase():
    S, phase, delay = 10, 7, 5
    rec = _sim_record(f", broadcast: sample, phase: {phase} ms, delay: {delay} ms", S=S)
    starts = np.arange(0, 200, S)
    np.testing.assert_array_equal(rec["sent_tick"], starts + phase)
    # delivered 5 ticks later: at phase 2 of the next sample
    np.testing.assert_array_equal(rec["deliver_tick"][:, 0], starts + phase + delay)
    assert set((rec["deliver_tick"][:, 0] % S).tolist()) == {(phase + delay) % S}


def test_sample_broadcast_with_a_burst_sends_consecutive_ticks():
    rec = _sim_record(", broadcast: sample, phase: 2 ms, burst: 3 ms", S=8, T=80)
    expected = [s + p for s in range(0, 80, 8) for p in (2, 3, 4)]
    np.testing.assert_array_equal(rec["sent_tick"], expected)


def test_burst_broadcast_sends_burst_ticks_out_of_every_period():
    rec = _sim_record(", broadcast: burst, period: 12 ms, burst: 4 ms, phase: 5 ms",
                      S=10, T=120)
    t = np.arange(120)
    np.testing.assert_array_equal(rec["sent_tick"], t[(t - 5) % 12 < 4])
    assert len(rec["sent_tick"]) == 10 * 4


def _direct(seeds, *, samples, S, **kw):
    """Drive a Channel for ``samples`` samples of S ticks; returns its record."""
    return expand_channel(drive_channel(seeds, samples * S, sample=S, **kw)[0].record())


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_arrival_phase_statistics_of_a_jittered_lossy_once_per_sample_broadcast(dist):
    """Once per sample at phase φ, delay d, jitter j, loss p: the arrival, counted from the
    start of the sending sample, is φ + d + J (J uniform on [−j, j] or a rounded N(0, j²));
    a fraction p is lost, independently per trial."""
    S, phase, d, j, p = 20, 6, 15, 4, 0.25
    seeds, samples = [11, 12, 13], 1500
    rec = _direct(seeds, samples=samples, S=S, broadcast="sample", phase=phase, delay=d,
                  jitter=j, jitter_dist=dist, loss=p)
    sent, deliver = rec["sent_tick"], rec["deliver_tick"]
    np.testing.assert_array_equal(sent, np.arange(samples) * S + phase)  # one per sample
    kept = deliver >= 0
    n = deliver.size
    assert abs((~kept).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    arrival = (deliver - (sent - phase)[:, None])[kept]  # ticks after the sample start
    offsets = arrival - phase - d
    m = offsets.size
    if dist == "uniform":
        assert offsets.min() == -j and offsets.max() == j
        var = ((2 * j + 1) ** 2 - 1) / 12
    else:
        var = j * j + 1 / 12
    assert abs(offsets.mean()) < 5 * math.sqrt(var / m)
    assert abs(offsets.var() - var) < 5 * var * math.sqrt(2 / m) * (1.5 if dist == "normal"
                                                                     else 1.0)
    # the share of messages that land in the next sample: P(φ + d + J ≥ S)
    if dist == "uniform":
        share = np.mean(np.arange(-j, j + 1) + phase + d >= S)
        observed = (arrival >= S).mean()
        assert abs(observed - share) < 5 * math.sqrt(share * (1 - share) / m)
    # trials are independent streams: the same seed alone gives the same column
    alone = _direct([12], samples=samples, S=S, broadcast="sample", phase=phase, delay=d,
                    jitter=j, jitter_dist=dist, loss=p)["deliver_tick"][:, 0]
    np.testing.assert_array_equal(deliver[:, 1], alone)


def test_burst_counts_and_loss_per_burst():
    S, seeds = 10, [3, 4]
    rec = _direct(seeds, samples=300, S=S, broadcast="burst", period=25, burst=5, phase=0,
                  loss=0.5, delay=2)
    sent = rec["sent_tick"]
    assert len(sent) == 300 * S // 25 * 5
    assert set((sent % 25).tolist()) == {0, 1, 2, 3, 4}
    deliver = rec["deliver_tick"]
    ok = deliver >= 0
    np.testing.assert_array_equal(deliver[ok], np.broadcast_to(sent[:, None] + 2,
                                                               deliver.shape)[ok])
    assert abs((~ok).mean() - 0.5) < 5 * math.sqrt(0.25 / deliver.size)


# ================================================================= scenarios
SCENARIO = """name: broadcast
network:
  name: two-layer
  populations:
    x: {{kind: input, size: 2}}
    h1: {{kind: layer, size: 2}}
    out: {{kind: layer, size: 1}}
    m1: {{kind: reservoir, size: 10}}
    m2: {{kind: reservoir, size: 10}}
  projections:
    - {{from: x, to: h1}}
    - {{from: h1, to: out}}
    - {{from: m1, to: h1, kind: modulatory, delay: 3 ms, jitter: 1 ms}}
    - {{from: m2, to: out, kind: modulatory{edge}}}
dataset: {{name: tanh_boundary, params: {{samples: 6, test_samples: 10}}}}
timing: {{dt: 1 ms, sample: 8 ms}}
rule: {{name: hsic, gamma: 2, memory: 3}}
modulator:
  source: analytic
{modulator}phases:
  - {{name: train, epochs: 1, learn: [layers]}}
"""


def _scenario(modulator="", edge="", file="s.yaml"):
    return parse_scenario(SCENARIO.format(modulator=modulator, edge=edge), file=file)


def test_the_record_is_compact_and_expands_to_every_send_and_delivery():
    """A channel that sends every tick keeps one run per stretch of sends, and a
    deterministic one no delivery ticks; the record expands to the same ticks as a
    plain list, through a checkpoint of either the compact or the old (plain) form."""
    def sends(t):
        return t % 1000 < 600 or t % 1000 in (700, 740, 780, 950)  # stretches and a gap

    seeds = [3, 4]
    ch, _ = drive_channel(seeds, 5000, sample=1, delay=2)
    ch_gappy, _ = drive_channel(seeds, 5000, sends=sends, delay=2)
    for channel, expected in ((ch, np.arange(5000)),
                              (ch_gappy, np.array([t for t in range(5000) if sends(t)]))):
        rec = expand_channel(channel.record())
        np.testing.assert_array_equal(rec["sent_tick"], expected)
        np.testing.assert_array_equal(rec["deliver_tick"],
                                      np.repeat(expected[:, None] + 2, 2, axis=1))
        assert len(channel.delivered) == 0 and channel.record()["deliver_tick"] is None
    assert ch.sent_runs == [[0, 1, 5000]]
    assert len(ch_gappy.sent_runs) <= 5 * 3  # per 1000 ticks: the stretch, the 3 singles
    state = ch_gappy.get_state()
    old = {**state, "sent": expand_channel(ch_gappy.record())["sent_tick"]}
    del old["sent_runs"]
    for saved in (state, old):
        again, _ = drive_channel(seeds, 0, delay=2)
        again.set_state(saved, now=5000)
        assert again.sent_runs == ch_gappy.sent_runs
    lossy, _ = drive_channel(seeds, 300, loss=0.3, jitter=2, delay=4)
    assert lossy.record()["deliver_tick"].shape == (300, 2)
    rec = expand_channel(lossy.record())
    assert rec["deliver_tick"].shape == (300, 2) and (rec["deliver_tick"] == -1).any()


def test_modulator_all_overrides_every_edge_and_a_layer_entry_wins():
    sc = _scenario("  all: {delay: 4 ms, broadcast: sample, phase: 5 ms}\n"
                   "  channels: {out: {delay: 1 ms, burst: 2 ms}}\n")
    runner = Runner(sc)
    h1, out = runner.sim.channels["h1"], runner.sim.channels["out"]
    assert (h1.delay, h1.jitter, h1.broadcast, h1.phase, h1.burst) == (4, 1, "sample", 5, 1)
    assert (out.delay, out.jitter, out.broadcast, out.phase, out.burst) == (1, 0, "sample", 5, 2)
    result = runner.run()
    for layer, sends in (("h1", [5]), ("out", [5, 6])):
        sent = expand_channel(result.channels[layer])["sent_tick"]
        assert sorted(set((sent % 8).tolist())) == sends
        assert len(sent) == 6 * len(sends)  # learning phase only: 6 samples


@pytest.mark.parametrize("edge, line, field, words", [
    (", broadcast: sample, period: 4 ms", 14, "network.projections[3].period",
     "once per sample"),
    (", broadcast: burst, period: 4 ms", 14, "network.projections[3].broadcast",
     "needs a burst length"),
    (", broadcast: burst, burst: 2 ms", 14, "network.projections[3].broadcast",
     "needs a period"),
    (", broadcast: burst, period: 4 ms, burst: 5 ms", 14, "network.projections[3].burst",
     "longer than the period"),
    (", burst: 2 ms", 14, "network.projections[3].burst", "broadcast: burst or"),
    (", period: 4 ms, phase: 4 ms", 14, "network.projections[3].phase", "not shorter"),
    (", broadcast: ticks", 14, "network.projections[3].broadcast", "invalid value 'ticks'"),
    (", phase: -1 ms", 14, "network.projections[3].phase", "negative"),
    (", broadcast: sample, phase: 8 ms", 14, "network.projections[3].phase",
     "does not fit in the 8 ms sample"),
    (", broadcast: sample, phase: 1.5 ms", 14, "network.projections[3].phase",
     "not a whole number"),
])
def test_bad_broadcast_settings_in_the_network_are_located(edge, line, field, words):
    with pytest.raises(ConfigError) as info:
        _scenario(edge=edge)
    err = info.value
    assert (err.file, err.line, err.field) == ("s.yaml", line, field)
    assert words in str(err) and "\n" not in str(err)


@pytest.mark.parametrize("modulator, edge, line, field, words", [
    ("  all: {broadcast: sample, phase: 6 ms, burst: 3 ms}\n", "", 20,
     "modulator.all.burst", "does not fit in the 8 ms sample"),
    ("  channels: {out: {broadcast: burst, period: 4 ms}}\n", "", 20,
     "modulator.channels.out.broadcast", "needs a burst length"),
    ("  all: {delay: 2.5 ms}\n", "", 20, "modulator.all.delay", "not a whole number"),
    ("  all: {broadcast: every}\n", "", 20, "modulator.all.broadcast",
     "invalid value 'every'"),
    # the conflicting period is in the network; the message says where the mode was set
    ("  all: {broadcast: sample}\n", ", period: 2 ms", 14, "network.projections[3].period",
     "broadcast: sample is set at s.yaml:20"),
])
def test_bad_overrides_are_located_where_they_are_set(modulator, edge, line, field, words):
    with pytest.raises(ConfigError) as info:
        _scenario(modulator, edge)
    err = info.value
    assert (err.file, err.line, err.field) == ("s.yaml", line, field)
    assert words in str(err)


def test_network_summary_shows_the_broadcast_fields():
    net = parse_network(NET.replace("{extra}", ", broadcast: sample, phase: 5 ms"))
    summary = net.summary()
    assert "broadcast=sample" in summary and "phase=5 ms" in summary
