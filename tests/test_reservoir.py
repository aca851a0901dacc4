"""The reservoir working memory: readout learning (DL Eq. 10 / 13) against an explicit
loop, learning a constant target, trial-shared reservoir matrices, the clamped layer of
the reservoir test (DL §6.1), scoring the readout against ξ, and the phases that say
what learns.

References are explicit loops written from SCIENCE.md §2, in float64, with random
numbers re-derived from the documented streams
``SeedSequence(seed, spawn_key=(crc32(name),))``.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from _shared import F32, F64, REPO, reference_generator

from eventsim.config.network import ReservoirNoise, ReservoirPop, parse_network
from eventsim.config.scenario import parse_scenario
from eventsim.data.synthetic import reservoir_test
from eventsim.engine.tracking import score
from eventsim.errors import ConfigError
from eventsim.plasticity.readout import ReadoutLearning
from eventsim.populations.reservoir import Reservoir
from eventsim.runner import Runner


def _reservoir(seeds, *, n=20, n_in=3, n_out=2, seed=None, readout=0.1, backend=F64):
    spec = ReservoirPop(kind="reservoir", size=n, tau=10.0, chaos=1.2, density=0.2, seed=seed,
                        noise=ReservoirNoise(hidden=0.01, readout=readout))
    return Reservoir("mem", spec, in_size=n_in, out_size=n_out, backend=backend, seeds=seeds,
                     dt_ms=1.0)


# ============================================================ readout rule
@pytest.mark.parametrize("reward", ["total", "per_output"])
def test_readout_rule_matches_eq10_eq13_loop(reward):
    """W_o, P̄ and r̄_o tick by tick against DL Eq. 10 with the Eq. 13 filters, η decay.

    ``per_output`` (not the paper's): one reward P_o, filter P̄_o and gate M_o per element."""
    seeds, n, n_out, ticks = [3, 8], 20, 2, 120
    eta0, tau_decay, tau_lpf, t_on, zo = 0.05, 40.0, 4.0, 10, 0.1
    per_output = reward == "per_output"
    res = _reservoir(seeds, n=n, n_out=n_out, readout=zo)
    ro = ReadoutLearning(res, eta0=eta0, tau_decay_ticks=tau_decay, tau_lpf_ticks=tau_lpf,
                         backend=F64, reward=reward)
    ro.t_on = t_on
    rng = np.random.default_rng(5)
    r_in = rng.uniform(-1, 1, size=(ticks, len(seeds), 3))
    xi = rng.normal(0, 0.3, size=(ticks, len(seeds), n_out))
    rates, readouts, weights, filters = [], [], [], []
    for t in range(ticks):
        res.step(F64.asarray(r_in[t]))
        if t >= t_on:  # the engine calls the rule only while the readout learns
            ro.step(t, F64.asarray(xi[t]))
        rates.append(np.array(res.r))
        readouts.append(np.array(res.r_o))
        weights.append(np.array(res.W_o))
        filters.append((np.array(ro.p_bar), np.array(ro.ro_bar)))
    a = 1.0 / tau_lpf
    changed = 0
    for k, s in enumerate(seeds):
        zeta = reference_generator(s, "mem/readout_noise").uniform(-zo, zo, size=(ticks, n_out))
        W = [[0.0] * n for _ in range(n_out)]
        p_bar, ro_bar = [0.0] * n_out, [0.0] * n_out  # one P̄ (entry 0) unless per output
        for t in range(ticks):
            r = rates[t][k]
            # the readout of this tick is made with the weights of the previous tick
            r_o = [sum(W[o][j] * r[j] for j in range(n)) + zeta[t, o] for o in range(n_out)]
            np.testing.assert_allclose(readouts[t][k], r_o, rtol=1e-12, atol=1e-13)
            if t >= t_on:
                if per_output:
                    P = [-(r_o[o] - xi[t, k, o]) ** 2 for o in range(n_out)]
                else:
                    P = [-sum((r_o[o] - xi[t, k, o]) ** 2 for o in range(n_out))] * n_out
                # filters first (DL Eq. 13)
                p_bar = [(1 - a) * p_bar[o] + a * P[o] for o in range(n_out)]
                ro_bar = [(1 - a) * ro_bar[o] + a * r_o[o] for o in range(n_out)]
                M = [1.0 if P[o] > p_bar[o] else 0.0 for o in range(n_out)]
                eta = eta0 / (1 + (t - t_on) / tau_decay) if t > t_on else 0.0
                for o in range(n_out):
                    for j in range(n):
                        W[o][j] += eta * M[o] * (r_o[o] - ro_bar[o]) * r[j]
                changed += max(M) > 0 and t > t_on
            np.testing.assert_allclose(weights[t][k], W, rtol=1e-10, atol=1e-13,
                                       err_msg=f"trial {k} tick {t}")
            np.testing.assert_allclose(filters[t][0][k], p_bar if per_output else p_bar[0],
                                       rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(filters[t][1][k], ro_bar, rtol=1e-12, atol=1e-15)
    assert changed > 40  # the gate opened often enough for the comparison to bite
    assert np.abs(weights[-1]).max() > 1e-3


def test_readout_learns_a_constant_target():
    """Error of the noise-free readout against a constant target, before and after."""
    seeds = [0, 1, 2]
    res = _reservoir(seeds, n=100, readout=0.1)
    ro = ReadoutLearning(res, eta0=1e-3, tau_decay_ticks=0.0, tau_lpf_ticks=5.0, backend=F64)
    target = np.array([0.3, -0.2])
    r_in = np.random.default_rng(0).uniform(-1, 1, (len(seeds), 3))

    def test_error(ticks=200):
        res.explore = False
        err = []
        for _ in range(ticks):
            res.step(r_in)
            err.append(((np.array(res.r_o) - target) ** 2).sum(-1))
        res.explore = True
        return np.mean(err, axis=0)

    before = test_error()
    np.testing.assert_allclose(before, (target ** 2).sum())  # W_o = 0: the readout is 0
    for t in range(1500):
        res.step(r_in)
        ro.step(t + 1, np.broadcast_to(target, (len(seeds), 2)))
    after = test_error()
    assert np.all(after < before / 100), (before, after)


# ====================================================== shared matrices
def test_shared_matrices_follow_the_seed_and_batched_equals_single():
    seeds, n, n_in, n_out, ticks = [4, 5, 6], 20, 3, 2, 60
    res = _reservoir(seeds, n=n, seed=11, backend=F32)
    g = reference_generator(11, "mem/init")
    mask = g.random((n, n)) < 0.2
    w_r = g.normal(0.0, 1.0 / math.sqrt(0.2 * n), size=(n, n)) * mask
    w_in = g.uniform(-1.0, 1.0, size=(n, n_in))
    w_fb = g.uniform(-1.0, 1.0, size=(n, n_out))
    assert res.M.shape == (1, n, n + n_in + n_out)
    np.testing.assert_allclose(res.A[0], 0.1 * 1.2 * w_r, rtol=1e-6)
    np.testing.assert_allclose(res.B[0], 0.1 * w_in, rtol=1e-6)
    np.testing.assert_allclose(res.C[0], 0.1 * w_fb, rtol=1e-6)
    rng = np.random.default_rng(2)
    r_in = rng.uniform(-1, 1, size=(ticks, len(seeds), n_in)).astype(np.float32)
    W_o = rng.normal(0, 0.3, size=(len(seeds), n_out, n)).astype(np.float32)
    res.W_o[...] = W_o
    for t in range(ticks):
        res.step(r_in[t])
    for k, s in enumerate(seeds):
        single = _reservoir([s], n=n, seed=11, backend=F32)
        single.W_o[...] = W_o[k]
        for t in range(ticks):
            single.step(r_in[t, k:k + 1])
        for var in ("u", "r", "readout"):
            np.testing.assert_array_equal(res.state()[var][k], single.state()[var][0],
                                          err_msg=f"trial {k} {var}")
    # the trials still have their own noise
    assert not np.array_equal(res.r[0], res.r[1])


# ====================================================== clamped layer (DL §6.1)
RESERVOIR_TEST = """
name: small reservoir test
network:
  name: small-reservoir-test
  populations:
    x:   {{kind: input, size: 6}}
    z:   {{kind: layer, size: 3, clamp: z}}
    mem: {{kind: reservoir, size: 30, chaos: 1.2,
           noise: {{hidden: 1.0e-3, readout: 1.0e-2}}{extra}}}
  projections:
    - {{from: mem, to: z, kind: modulatory}}
seed: {seed}
trials: {trials}
dataset: {{name: reservoir_test, seed: {seed}, params: {{samples: 7, x_dim: 6, z_dim: 3}}}}
timing: {{dt: 1 ms, sample: 5 ms}}
rule: {{name: hsic, gamma: 2, memory: 4}}
modulator: {{source: reservoir}}
readout: {{eta0: 1.0e-2, decay: 1 s, lpf: 2 ms, window: 40 ms}}
phases:
  - {{name: train, duration: 300 ms, learn: [readouts]}}
  - {{name: test, duration: 100 ms, explore: false}}
"""


def _reservoir_test_text(trials=2, seed=0, extra=""):
    return RESERVOIR_TEST.format(trials=trials, seed=seed, extra=extra)


def _reservoir_test_runner(trials=2, seed=0, extra=""):
    runner = Runner(parse_scenario(_reservoir_test_text(trials, seed, extra)))
    probes = {t: runner.sim.probe(t) for t in ("z.z", "x.z", "mem.readout", "mem.W_o", "z.xi",
                                               "mem.r")}
    return runner, probes


def test_clamped_layer_holds_the_data_signal_and_the_readout_learns_its_xi():
    runner, probes = _reservoir_test_runner()
    result = runner.run()
    data = reservoir_test(2, 0, samples=7, x_dim=6, z_dim=3)
    ticks, z = probes["z.z"].data()
    _, x = probes["x.z"].data()
    for k in range(2):
        for t in range(0, len(ticks), 5):  # every sample: x and z are one data sample
            i = int(np.flatnonzero((data.x[k] == x[t, k]).all(-1))[0])
            np.testing.assert_array_equal(z[t:t + 5, k], np.broadcast_to(data.z[k, i], (5, 3)))
    # the readout learned in the train phase only, and was noise-free in the test phase
    _, W_o = probes["mem.W_o"].data()
    assert np.abs(W_o[299]).max() > 0
    np.testing.assert_array_equal(W_o[300:], np.broadcast_to(W_o[299], W_o[300:].shape))
    _, rates = probes["mem.r"].data()
    _, readout = probes["mem.readout"].data()
    np.testing.assert_allclose(readout[300:], np.einsum("kon,tkn->tko", W_o[299], rates[300:]),
                               rtol=1e-5, atol=1e-7)
    assert np.abs(readout[:300] - np.einsum("tkon,tkn->tko", np.concatenate(
        [np.zeros_like(W_o[:1]), W_o[:299]]), rates[:300])).max() > 1e-3  # ζ_o in training
    # the scores: two phases x (start, end), per trial, equal to the formula on the traces
    rows = result.summary["xi_scores"]
    assert [(r["phase"], r["window"], r["start_tick"], r["end_tick"]) for r in rows] == [
        ("train", "start", 0, 40), ("train", "end", 260, 300),
        ("test", "start", 300, 340), ("test", "end", 360, 400)]
    _, xi = probes["z.xi"].data()
    for row in rows:
        s = slice(row["start_tick"], row["end_tick"])
        expected = score(readout[s], xi[s])
        np.testing.assert_allclose(row["corr"], expected["corr"], rtol=1e-6)
        np.testing.assert_allclose(row["nmse"], expected["nmse"], rtol=1e-6)
    metrics = {(m["phase"], m["tick"], m["trial"], m["metric"]) for m in result.metrics}
    assert ("test", 340, 1, "xi_corr/z") in metrics
    assert ("train", 300, 0, "xi_nmse/z") in metrics
    assert "test_accuracy" not in result.summary  # signal data: no classification
    t_trace, xi_trace = result.traces["mem.xi_true"]
    np.testing.assert_array_equal(t_trace[:40], np.arange(40))
    np.testing.assert_allclose(xi_trace, xi[t_trace], rtol=1e-6)


def test_reservoir_input_and_teacher_are_those_of_the_same_tick():
    """No hidden delay in the engine: the reservoir step of tick t is driven by the sample
    shown at tick t (DL Eq. 9), and the readout learns against the ξ of tick t (DL Eq. 10)."""
    runner, probes = _reservoir_test_runner()
    u_probe = runner.sim.probe("mem.u")
    runner.run()
    res = runner.sim.populations["mem"]
    data = reservoir_test(2, 0, samples=7, x_dim=6, z_dim=3)
    (_, x), (_, z), (_, u) = probes["x.z"].data(), probes["z.z"].data(), u_probe.data()
    (_, r), (_, ro) = probes["mem.r"].data(), probes["mem.readout"].data()
    (_, W_o), (_, xi) = probes["mem.W_o"].data(), probes["z.xi"].data()
    decay = float(res.decay)
    for k in range(2):
        A, B, C = (np.asarray(m[k], dtype=np.float64) for m in (res.A, res.B, res.C))
        for t in range(1, len(u)):
            i = int(np.flatnonzero((data.x[k] == x[t, k]).all(-1))[0])
            r_in = np.concatenate([x[t, k], data.y[k, i], z[t, k]])  # the taps x, y, z of tick t
            drive = u[t, k] - decay * u[t - 1, k] - A @ r[t - 1, k] - C @ ro[t - 1, k]
            np.testing.assert_allclose(drive, B @ r_in, rtol=0, atol=1e-5, err_msg=f"tick {t}")
    # the engine's rule replayed on the probed rates and readouts against ξ of the same tick
    # gives the engine's W_o bit for bit; against the ξ of the previous tick it does not
    train = 300
    for lag in (0, 1):
        stub = Reservoir.__new__(Reservoir)
        stub.r, stub.r_o, stub.W_o = (np.zeros_like(a[0]) for a in (r, ro, W_o))
        rule = ReadoutLearning(stub, eta0=1e-2, tau_decay_ticks=1000.0, tau_lpf_ticks=2.0,
                               backend=F32)
        same = True
        for t in range(train):
            stub.r[...], stub.r_o[...] = r[t], ro[t]
            rule.step(t, xi[max(t - lag, 0)])
            same = same and np.array_equal(stub.W_o, W_o[t])
        assert same == (lag == 0)


def test_clamped_layer_errors_name_file_line_and_field():
    with pytest.raises(ConfigError, match=r"takes no feed-forward input") as info:
        parse_network("""
name: bad
populations:
  x: {kind: input, size: 2}
  z: {kind: layer, size: 3, clamp: z}
projections:
  - {from: x, to: z}
""", "bad.yaml")
    assert str(info.value).startswith("bad.yaml:7: projections[0]")
    text = _reservoir_test_text(1).replace("clamp: z", "clamp: q")
    with pytest.raises(ConfigError, match=r"has no signal 'q'.*hint: signals: z"):
        Runner(parse_scenario(text, "rt.yaml"))
    text = _reservoir_test_text(1).replace("size: 3, clamp", "size: 4, clamp")
    with pytest.raises(ConfigError, match=r"rt.yaml:7: network.populations.z.clamp: size "):
        Runner(parse_scenario(text, "rt.yaml"))


@pytest.mark.parametrize("extra", ["", ", seed: 5"])
def test_reservoir_test_batched_trials_equal_single_runs(extra):
    """Per-trial and trial-shared reservoir matrices: trial k of a batch = the run with seed s + k
    (states, readout scores and metric rows bit for bit)."""
    seed, trials = 3, 3
    rb, _ = _reservoir_test_runner(trials, seed, extra)
    res_b = rb.run()
    for k in range(trials):
        rs, _ = _reservoir_test_runner(1, seed + k, extra)
        res_s = rs.run()
        for var, arr in rs.sim.populations["mem"].state().items():
            np.testing.assert_array_equal(rb.sim.populations["mem"].state()[var][k], arr[0],
                                          err_msg=f"trial {k} {var}")
        rows_b = [(m["phase"], m["tick"], m["metric"], m["value"]) for m in res_b.metrics
                  if m["trial"] == k]
        assert rows_b == [(m["phase"], m["tick"], m["metric"], m["value"])
                          for m in res_s.metrics]
    shared = bool(extra)
    assert np.array_equal(rb.sim.populations["mem"].M[0], rs.sim.populations["mem"].M[0]) \
        == shared


def test_fixed_order_presents_the_stored_samples_on_every_pass():
    """Both phases in stored order: one pass continues across the phase boundary."""
    text = _reservoir_test_text(2)
    text = (text.replace("learn: [readouts]}", "learn: [readouts], order: fixed}")
            .replace("explore: false}", "explore: false, order: fixed}"))
    runner = Runner(parse_scenario(text))
    probe = runner.sim.probe("x.z", every=5)
    runner.run()
    data = reservoir_test(2, 0, samples=7, x_dim=6, z_dim=3)
    ticks, x = probe.data()
    np.testing.assert_array_equal(x, data.x[:, np.arange(len(ticks)) % 7].swapaxes(0, 1))


# ============================================================== scores
def test_score_is_pearson_correlation_and_normalised_mse():
    rng = np.random.default_rng(0)
    xi = rng.normal(size=(300, 2, 3))
    readout = 0.5 * xi + rng.normal(0, 0.2, size=xi.shape)
    got = score(readout, xi)
    for k in range(2):
        corr = [np.corrcoef(readout[:, k, i], xi[:, k, i])[0, 1] for i in range(3)]
        nmse = [np.sum((readout[:, k, i] - xi[:, k, i]) ** 2)
                / np.sum((xi[:, k, i] - xi[:, k, i].mean()) ** 2) for i in range(3)]
        assert got["corr"][k] == pytest.approx(np.mean(corr), rel=1e-12)
        assert got["nmse"][k] == pytest.approx(np.mean(nmse), rel=1e-12)
    perfect = score(xi, xi)
    np.testing.assert_allclose(perfect["corr"], 1.0)
    np.testing.assert_allclose(perfect["nmse"], 0.0)


# ============================================================ closed loop
CLOSED_LOOP = """
name: closed-loop
populations:
  x: {kind: input, size: 3}
  h: {kind: layer, size: 2, tau: 2 ms, noise: 0.05}
  m: {kind: reservoir, size: 25, chaos: 1.5, noise: {hidden: 0.05, readout: 0.2}}
projections:
  - {from: x, to: h, init: {std: 1.0}}
  - {from: m, to: h, kind: modulatory}
"""


def test_layers_learn_from_the_reservoir_readout_over_the_channel():
    """Train phase in reservoir mode: ΔW = −η r_o ⊙ β with the readout of the same tick."""
    from eventsim.engine.simulator import LayerRule, Simulator  # noqa: PLC0415

    seeds, eta = [1, 2], 0.2
    rule = LayerRule(gamma=2.0, memory=3, sigma_x=0.5, sigma_y=0.5, sigma_z=0.5)
    sim = Simulator(parse_network(CLOSED_LOOP), seeds=seeds, backend=F64, sample_ticks=4,
                    rules={"h": rule}, modulator="reservoir")
    rng = np.random.default_rng(0)
    sim.populations["m"].W_o[...] = rng.normal(0, 0.5, sim.populations["m"].W_o.shape)

    class Feed:
        def next(self):
            x = rng.uniform(-1, 1, (2, 3))
            labels = rng.integers(0, 2, 2)
            return F64.asarray(x), F64.asarray(labels[:, None].astype(float)), labels

    sim.set_feed(Feed())
    sim.set_learning(layers=True, readouts=False)
    sim.reservoir_drives_layers = True
    sim.set_eta(eta)
    layer, res = sim.populations["h"], sim.populations["m"]
    for t in range(40):
        before = np.array(layer.W)
        sim.run(t + 1)
        beta = (1 - np.array(layer.z) ** 2)[:, :, None] * np.array(layer.pre.z)[:, None, :]
        expected = -eta * np.array(res.r_o)[:, :, None] * beta
        np.testing.assert_allclose(np.array(layer.W) - before, expected, rtol=1e-10,
                                   atol=1e-15, err_msg=f"tick {t}")
    assert np.abs(np.array(layer.W) - before).max() > 1e-4
    # without reservoir_drives_layers (pre-training) the layer does not move
    sim.reservoir_drives_layers = False
    W = np.array(layer.W)
    sim.run(60)
    np.testing.assert_array_equal(layer.W, W)


def test_evaluation_leaves_the_reservoirs_untouched():
    text = f"""name: eval
network:
{textwrap.indent(CLOSED_LOOP.strip().replace("size: 3", "size: 2"), "  ")}
trials: 2
dataset: {{name: tanh_boundary, params: {{samples: 6, test_samples: 5}}}}
timing: {{dt: 1 ms, sample: 4 ms}}
rule: {{name: hsic, gamma: 2, memory: 3}}
modulator: {{source: reservoir}}
phases:
  - {{name: pre, epochs: 1, learn: [readouts]}}
"""
    runner = Runner(parse_scenario(text))
    runner.run()
    res = runner.sim.populations["m"]
    before = {k: np.array(v) for k, v in res.state().items()}
    noise = res.hidden_noise.get_state()
    tick = runner.sim.tick
    runner.evaluate("again")
    assert runner.sim.tick == tick + (6 + 5) * 4
    for key, value in res.state().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    assert res.hidden_noise.get_state()["pos"] == noise["pos"]


def test_per_output_scenario_is_the_reservoir_test_with_its_three_stated_departures():
    """``reservoir_xi_per_output.yaml`` is ``reservoir_xi.yaml`` plus exactly the three
    changes its header (and the README's command) state."""
    from eventsim.config.scenario import load_scenario

    base = load_scenario(REPO / "scenarios" / "reservoir_xi.yaml", {
        "readout.reward": "per_output", "readout.decay": "100 s",
        "phases": [{"name": "warmup", "duration": "50 s", "order": "fixed"},
                   {"name": "train", "duration": "1500 s", "learn": ["readouts"],
                    "order": "fixed"},
                   {"name": "test", "duration": "100 s", "explore": False,
                    "order": "fixed"}]}).resolved()
    variant = load_scenario(REPO / "scenarios" / "reservoir_xi_per_output.yaml").resolved()
    for key in ("name", "description"):
        base.pop(key), variant.pop(key)
    assert variant == base
