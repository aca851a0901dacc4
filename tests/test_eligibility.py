"""Eligibility variants (SCIENCE.md §4): every delivered message m moves W by −η m ⊙ e,
with e the exponential trace at arrival, the β of the sending tick, or the mean β of the
sending sample up to the send tick.

Each variant is checked against a reference rebuilt tick by tick from probed z, zpre and
ξ and from the channel's own record of which trial received which message when, through
delays, jitter and loss. The zero-delay equivalences with the instant rule are checked
through whole scenario runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _shared import F64, NET_ONE_LAYER, REPO

from eventsim.config.network import parse_network
from eventsim.config.scenario import parse_scenario
from eventsim.engine.simulator import LayerRule, Simulator
from eventsim.errors import ConfigError
from eventsim.records import expand_channel
from eventsim.runner import Runner

ETA = 0.3

NET = NET_ONE_LAYER


class ListFeed:
    """Presents ``x[:, i]`` with 0/1 labels for i = 0, 1, ... (cycling)."""

    def __init__(self, x, labels):
        self.x, self.labels, self.i = x, labels, 0

    def next(self):
        s = self.i % self.x.shape[1]
        self.i += 1
        return (F64.asarray(self.x[:, s]), F64.asarray(self.labels[:, s, None].astype(float)),
                self.labels[:, s])


def _sim(seeds, extra, trace=0.0, S=5):
    window = trace if isinstance(trace, str) else None
    rule = LayerRule(gamma=3.0, memory=4, sigma_x=0.4, sigma_y=0.5, sigma_z=0.7,
                     tau_e_ms=0.0 if window else trace, window=window)
    sim = Simulator(parse_network(NET.replace("{extra}", extra)), seeds=seeds, backend=F64,
                    dt_ms=1.0, sample_ticks=S, rules={"h": rule})
    xs, ys = [], []
    for s in seeds:
        g = np.random.default_rng(500 + s)
        xs.append(g.uniform(-1.0, 1.0, size=(9, 3)))
        ys.append(g.integers(0, 2, size=9))
    sim.set_feed(ListFeed(np.array(xs), np.array(ys)))
    sim.set_learning(layers=True, readouts=False)
    sim.set_eta(ETA)
    return sim


def _reference_updates(sim, trace, T):
    """Run ``sim`` for T ticks; return (actual ΔW, reference ΔW), both (T, K, n, m)."""
    probes = {n: sim.probe(n) for n in ("h.z", "x.z", "h.xi", "h.W")}
    W0 = np.array(sim.populations["h"].W)
    sim.run(T)
    z, zpre, xi, W = (probes[n].data()[1] for n in ("h.z", "x.z", "h.xi", "h.W"))
    beta = (1.0 - z * z)[..., :, None] * zpre[..., None, :]           # (T, K, n, m)
    actual = np.diff(np.concatenate([W0[None], W]), axis=0)
    rec = expand_channel(sim.channels["h"].record())
    S = sim.sample_ticks
    # the eligibility each variant offers at tick t for a message sent at tick s
    if trace == "tick":
        def elig(s, t):
            return beta[s]
    elif trace == "sample":
        def elig(s, t):
            return beta[s - s % S:s + 1].mean(axis=0)
    else:
        e = np.zeros_like(beta)
        gain = 1.0 - math.exp(-1.0 / trace) if trace else 1.0
        prev = np.zeros_like(beta[0])
        for t in range(T):
            prev = prev + gain * (beta[t] - prev)
            e[t] = prev

        def elig(s, t):
            return e[t]
    expected = np.zeros_like(actual)
    K = W0.shape[0]
    for i, s in enumerate(rec["sent_tick"]):
        for k in range(K):
            t = rec["deliver_tick"][i, k]
            if 0 <= t < T:
                expected[t, k] -= ETA * xi[s, k][:, None] * elig(s, t)[k]
    return actual, expected, rec


CASES = [
    # (eligibility, channel fields, sample ticks)
    (0.0, ", delay: 3 ms, jitter: 2 ms, loss: 0.3", 5),       # e = β of the arrival tick
    (3.0, ", delay: 4 ms, jitter: 2 ms, loss: 0.2", 5),       # exponential trace
    ("tick", ", delay: 6 ms, jitter: 3 ms, loss: 0.3", 5),    # β of the sending tick
    ("tick", ", delay: 7 ms, broadcast: sample, phase: 3 ms", 5),
    ("sample", ", delay: 2 ms, jitter: 2 ms, loss: 0.2", 5),  # mean β of the sending sample
    ("sample", ", delay: 4 ms, broadcast: sample, phase: 4 ms", 5),
    ("sample", ", broadcast: burst, period: 3 ms, burst: 2 ms, phase: 1 ms, delay: 5 ms", 6),
]


@pytest.mark.parametrize("trace, extra, S", CASES)
def test_weight_updates_match_the_eligibility_of_each_variant(trace, extra, S):
    sim = _sim([1, 2, 3], extra, trace, S=S)
    actual, expected, rec = _reference_updates(sim, trace, 90)
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-14)
    # not vacuous: learning happened, and messages arrived late or not at all
    assert np.abs(actual).max() > 1e-3
    late = rec["deliver_tick"] > rec["sent_tick"][:, None]
    assert late.any()


def test_fixed_windows_differ_from_the_trace_at_arrival():
    """With a delay, 'tick' (β of the send tick) and 'sample' really use other β than the
    instant e = β(arrival); at zero delay 'tick' and e = β coincide."""
    runs = {}
    for trace in (0.0, "tick", "sample"):
        for delay in (0, 4):
            sim = _sim([7], f", delay: {delay} ms", trace)
            sim.run(80)
            runs[trace, delay] = np.array(sim.populations["h"].W)
    np.testing.assert_array_equal(runs[0.0, 0], runs["tick", 0])
    assert np.abs(runs[0.0, 4] - runs["tick", 4]).max() > 1e-4
    assert np.abs(runs["sample", 0] - runs[0.0, 0]).max() > 1e-4


def test_window_copies_are_freed_after_the_last_delivery():
    sim = _sim([4, 5], ", delay: 5 ms, jitter: 2 ms, loss: 0.4", "tick")
    syn, ch = sim.synapses["h"], sim.channels["h"]
    sim.run(200)
    pending = {sent for entries in ch.in_flight.values() for *_, sent in entries}
    assert set(syn.tags) == pending == set(syn.expected)
    assert 0 < len(syn.tags) <= 5 + 2 + 1
    sim.set_learning(layers=False, readouts=False)  # nothing more is sent
    sim.run(220)
    assert syn.tags == {} and syn.expected == {}


# ======================================================== whole scenario runs
def _scenario(trace, *, delay=0, dtype="float32", epochs=2):
    return parse_scenario(f"""name: eligibility
network: {REPO / "networks" / "tanh_mlp.yaml"}
seed: 5
trials: 2
dtype: {dtype}
dataset: {{name: tanh_boundary, params: {{samples: 12, test_samples: 40}}}}
timing: {{dt: 1 ms, sample: 6 ms}}
rule: {{name: hsic, gamma: 2, memory: 4, lr: {{eta: 0.05}}, trace: {trace}}}
modulator: {{all: {{delay: {delay} ms}}}}
phases:
  - {{name: train, epochs: {epochs}, learn: [layers]}}
""")


def _final(trace, **kw):
    runner = Runner(_scenario(trace, **kw))
    result = runner.run()
    weights = {n: np.array(p.W) for n, p in runner.sim.populations.items() if p.kind == "layer"}
    return runner, result, weights


def test_tick_window_at_zero_delay_is_the_instant_rule_bit_for_bit():
    _, instant, w_instant = _final(0)
    _, tick, w_tick = _final("tick")
    for name in w_instant:
        np.testing.assert_array_equal(w_tick[name], w_instant[name])
    assert instant.metrics == tick.metrics


def test_exponential_trace_tends_to_the_instant_rule_as_tau_goes_to_zero():
    """τ_e → 0 at zero delay: the trace code path (e stored and low-pass filtered every
    tick) gives the instant rule's weights to float64 rounding; a real τ_e does not."""
    runner, _, w_instant = _final(0, dtype="float64")
    assert runner.sim.synapses["h1"].e is None
    runner, _, w_tiny = _final("0.001 ms", dtype="float64")
    assert runner.sim.synapses["h1"].e is not None
    _, _, w_slow = _final("5 ms", dtype="float64")
    for name in w_instant:
        np.testing.assert_allclose(w_tiny[name], w_instant[name], rtol=1e-12, atol=1e-14)
        assert np.abs(w_slow[name] - w_instant[name]).max() > 1e-4


def test_trace_field_accepts_durations_and_window_names_only():
    assert _scenario("20 ms").spec.rule.trace == 20.0
    assert _scenario("sample").spec.rule.trace == "sample"
    with pytest.raises(ConfigError) as info:
        _scenario("window")
    text = str(info.value)
    assert "rule.trace" in text and "tick | sample" in text and "\n" not in text
