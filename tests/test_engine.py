"""The discrete-event engine: determinism, batching, the population updates, the order
of events within a tick, modulatory channels, the three-factor update and the
divergence guard.

References are explicit loops written from SCIENCE.md (DL Eqs. 6, 8, 9) and
DESIGN.md, in float64, and random numbers re-derived from the documented stream
derivation ``SeedSequence(seed, spawn_key=(crc32(name),))``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _shared import F32, F64, NET_ONE_LAYER, REPO, drive_channel, reference_generator

from eventsim.config.network import (
    InitSpec,
    LayerPop,
    ReservoirNoise,
    ReservoirPop,
    parse_network,
)
from eventsim.config.scenario import parse_scenario
from eventsim.engine.simulator import LayerRule, Simulator
from eventsim.errors import DivergenceError
from eventsim.plasticity import hsic
from eventsim.populations.input import InputPopulation
from eventsim.populations.layer import Layer
from eventsim.populations.reservoir import Reservoir
from eventsim.records import expand_channel
from eventsim.runner import Runner


class ListFeed:
    """Presents ``x[:, i]`` / ``labels[:, i]`` for i = 0, 1, ... (cycling); binary labels."""

    def __init__(self, x, labels, backend):
        self.x = np.asarray(x, dtype=np.float64)  # (K, S, D)
        self.labels = np.asarray(labels, dtype=np.int64)  # (K, S)
        self.backend = backend
        self.i = 0

    def next(self):
        s = self.i % self.x.shape[1]
        self.i += 1
        x = self.backend.asarray(self.x[:, s])
        y = self.backend.asarray(self.labels[:, s, None].astype(np.float64))
        return x, y, self.labels[:, s]


def _data(seeds, samples, dim):
    """Per-trial inputs in [-1, 1] and 0/1 labels, trial k drawn from seed k only."""
    xs, ys = [], []
    for s in seeds:
        g = np.random.default_rng(1000 + s)
        xs.append(g.uniform(-1.0, 1.0, size=(samples, dim)))
        ys.append(g.integers(0, 2, size=samples))
    return np.array(xs), np.array(ys)


# ================================================================ scenarios
def _scenario_text(seed: int, trials: int, *, modulator: str = "analytic") -> str:
    if modulator == "analytic":
        network = str(REPO / "networks" / "tanh_mlp.yaml")
        extra = ""
    else:
        network = """
  name: small-reservoirs
  populations:
    x: {kind: input, size: 2}
    h1: {kind: layer, size: 3}
    out: {kind: layer, size: 1}
    m1: {kind: reservoir, size: 40, chaos: 1.5}
    m2: {kind: reservoir, size: 30, chaos: 1.5}
  projections:
    - {from: x, to: h1}
    - {from: h1, to: out}
    - {from: m1, to: h1, kind: modulatory, delay: 2 ms, jitter: 1 ms, loss: 0.2}
    - {from: m2, to: out, kind: modulatory}"""
        extra = "readout: {eta0: 0.01}\n"
    phases = ("  - {name: train, epochs: 2, learn: [layers]}\n" if modulator == "analytic" else
              "  - {name: pre, epochs: 1, learn: [readouts]}\n"
              "  - {name: train, epochs: 2, learn: [layers, readouts]}\n")
    return f"""name: engine-test
network: {network}
seed: {seed}
trials: {trials}
dataset: {{name: tanh_boundary, seed: {seed}, params: {{samples: 12, test_samples: 10}}}}
timing: {{dt: 1 ms, sample: 5 ms}}
rule: {{name: hsic, gamma: 2, memory: 4, lr: {{eta: 0.05}}}}
modulator: {{source: {modulator}}}
{extra}phases:
{phases}"""


def _run(seed, trials, modulator="analytic"):
    runner = Runner(parse_scenario(_scenario_text(seed, trials, modulator=modulator)))
    result = runner.run()
    return runner, result


def _state(runner):
    return {f"{p}.{v}": np.array(a) for p, pop in runner.sim.populations.items()
            for v, a in pop.state().items()}


@pytest.mark.parametrize("modulator", ["analytic", "reservoir"])
def test_same_seed_is_bit_identical(modulator):
    r1, res1 = _run(3, 2, modulator)
    r2, res2 = _run(3, 2, modulator)
    s1, s2 = _state(r1), _state(r2)
    assert s1.keys() == s2.keys()
    for key in s1:
        np.testing.assert_array_equal(s1[key], s2[key], err_msg=key)
    assert res1.metrics == res2.metrics  # exact floats, same rows in the same order
    assert len(res1.metrics) > 0
    np.testing.assert_array_equal(res1.test_accuracy, res2.test_accuracy)
    for name in res1.channels:
        for key in res1.channels[name]:
            np.testing.assert_array_equal(res1.channels[name][key], res2.channels[name][key])
    # the layers did learn (otherwise equality would be trivial)
    fresh = Runner(parse_scenario(_scenario_text(3, 2, modulator=modulator)))
    assert not np.array_equal(np.array(fresh.sim.populations["h1"].W), s1["h1.W"])


@pytest.mark.parametrize("modulator", ["analytic", "reservoir"])
def test_a_scenario_on_the_numba_backend_matches_numpy_to_rounding(modulator):
    """The whole runner (presenter, channels, evaluation; reservoirs and readout learning
    in reservoir mode) on compiled kernels, against the array code."""
    pytest.importorskip("numba")
    want = Runner(parse_scenario(_scenario_text(3, 2, modulator=modulator)))
    got = Runner(parse_scenario(_scenario_text(3, 2, modulator=modulator),
                                overrides={"backend": "numba"}))
    assert got.backend.name == "numba"
    want.run(), got.run()
    a, b = _state(want), _state(got)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-3, atol=1e-5, err_msg=key)
    fresh = Runner(parse_scenario(_scenario_text(3, 2, modulator=modulator)))
    assert not np.allclose(np.array(fresh.sim.populations["h1"].W), a["h1.W"], atol=1e-3)


def test_different_seed_differs():
    r1, res1 = _run(3, 1)
    r2, res2 = _run(4, 1)
    assert not np.array_equal(np.array(r1.sim.populations["h1"].W),
                              np.array(r2.sim.populations["h1"].W))
    v1 = [m["value"] for m in res1.metrics if m["metric"].startswith("objective_dl")]
    v2 = [m["value"] for m in res2.metrics if m["metric"].startswith("objective_dl")]
    assert v1 != v2


@pytest.mark.parametrize("modulator", ["analytic", "reservoir"])
def test_batched_trials_equal_single_runs(modulator):
    """K batched trials with seed s are bit-identical to K runs with seeds s + k.

    This holds exactly on NumPy: the analytic ξ is computed on contiguous copies
    of the working memory, so batched and single matmuls sum in the same order.
    """
    seed, trials = 5, 3
    rb, resb = _run(seed, trials, modulator)
    batched = _state(rb)
    for k in range(trials):
        rs, ress = _run(seed + k, 1, modulator)
        single = _state(rs)
        for key in single:
            np.testing.assert_array_equal(batched[key][k], single[key][0],
                                          err_msg=f"trial {k} {key}")
        rows_b = [m for m in resb.metrics if m["trial"] == k]
        rows_s = ress.metrics
        key = ("phase", "epoch", "tick", "metric")
        assert [tuple(m[c] for c in key) for m in rows_b] == [tuple(m[c] for c in key)
                                                               for m in rows_s]
        for mb, ms in zip(rows_b, rows_s, strict=True):
            if mb["metric"].startswith("objective"):
                # objectives are float32 means over the ticks of an epoch, taken over
                # axis 0 of a (ticks, K) array: NumPy sums a single column pairwise
                # but K columns sequentially, so only the rounding may differ.
                assert mb["value"] == pytest.approx(ms["value"], rel=1e-5, abs=1e-7)
            else:
                assert mb["value"] == ms["value"], mb
        for name, record in ress.channels.items():
            rec, recb = expand_channel(record), expand_channel(resb.channels[name])
            np.testing.assert_array_equal(recb["sent_tick"], rec["sent_tick"])
            np.testing.assert_array_equal(recb["deliver_tick"][:, k], rec["deliver_tick"][:, 0])


# ==================================================================== layer
def _euler_layer_loop(W, u0, zpre_seq, tau, dt, noise_seq):
    """DL Eq. 6 by hand: u += dt/tau (-u + W zpre); z = tanh(u) + zeta (one trial)."""
    n, m = W.shape
    u = list(u0)
    us, zs = [], []
    for zpre, zeta in zip(zpre_seq, noise_seq, strict=True):
        for i in range(n):
            drive = 0.0
            for j in range(m):
                drive += W[i][j] * zpre[j]
            u[i] = u[i] + dt / tau * (-u[i] + drive)
        z = [math.tanh(u[i]) + zeta[i] for i in range(n)]
        us.append(list(u))
        zs.append(z)
    return np.array(us), np.array(zs)


@pytest.mark.parametrize(("backend", "rtol"), [(F64, 1e-12), (F32, 2e-5)])
def test_layer_step_matches_euler_loop(backend, rtol):
    seeds, n, m, ticks, tau, dt, a = [3, 8], 3, 2, 150, 4.0, 1.0, 0.05
    spec = LayerPop(kind="layer", size=n, tau=tau, noise=a)
    pre = InputPopulation("x", m, backend, trials=len(seeds))
    layer = Layer("h", spec, pre, InitSpec(dist="normal", std=0.8), backend=backend,
                  seeds=seeds, dt_ms=dt)
    # the initial weights follow the documented stream "h/init"
    for k, s in enumerate(seeds):
        ref = reference_generator(s, "h/init").normal(0.0, 0.8, size=(n, m))
        np.testing.assert_allclose(layer.W[k], ref, rtol=rtol)
    W0 = np.array(layer.W, dtype=np.float64)
    rng = np.random.default_rng(0)
    inputs = rng.uniform(-1, 1, size=(ticks, len(seeds), m))
    us, zs = [], []
    for t in range(ticks):
        pre.set(backend.asarray(inputs[t]))
        layer.step()
        us.append(np.array(layer.u, dtype=np.float64))
        zs.append(np.array(layer.z, dtype=np.float64))
    us, zs = np.array(us), np.array(zs)
    for k, s in enumerate(seeds):
        noise = reference_generator(s, "h/noise").uniform(-a, a, size=(ticks, n))
        noise = noise.astype(backend.dtype).astype(np.float64)
        ref_u, ref_z = _euler_layer_loop(W0[k], [0.0] * n, inputs[:, k], tau, dt, noise)
        np.testing.assert_allclose(us[:, k], ref_u, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(zs[:, k], ref_z, rtol=rtol, atol=rtol)
    # the noise really is there and within ±a around tanh(u)
    resid = zs - np.tanh(us)
    assert np.abs(resid).max() <= a * (1 + 1e-6)
    assert np.abs(resid).max() > 0.5 * a


def test_layer_default_init_width():
    """Without std the normal init has width 1/sqrt(fan_in); uniform: ±1/sqrt(fan_in)."""
    pre = InputPopulation("x", 400, F64, trials=1)
    spec = LayerPop(kind="layer", size=50, tau=5.0, noise=0.0)
    W = np.array(Layer("h", spec, pre, InitSpec(), backend=F64, seeds=[1], dt_ms=1.0).W)
    n = W.size
    var = 1.0 / 400
    assert abs(W.var() - var) < 5 * var * math.sqrt(2.0 / n)
    Wu = np.array(Layer("h", spec, pre, InitSpec(dist="uniform"), backend=F64, seeds=[1],
                        dt_ms=1.0).W)
    assert np.abs(Wu).max() <= 1.0 / 20
    assert abs(Wu.var() - var / 3) < 5 * math.sqrt((var**2 / 5 - (var / 3) ** 2) / n)


# ================================================================ reservoir
def _reservoir(seeds, n=12, n_in=4, n_out=2, tau=10.0, chaos=1.3, density=0.3,
               hidden=0.05, readout=0.2, backend=F64):
    spec = ReservoirPop(kind="reservoir", size=n, tau=tau, chaos=chaos, density=density,
                        noise=ReservoirNoise(hidden=hidden, readout=readout))
    return Reservoir("mem", spec, in_size=n_in, out_size=n_out, backend=backend, seeds=seeds,
                     dt_ms=1.0), spec


def _reservoir_matrices(seed, n, n_in, n_out, density):
    """W_r, W_in, W_fb of one trial from the documented init stream "mem/init"."""
    g = reference_generator(seed, "mem/init")
    mask = g.random((n, n)) < density
    w_r = g.normal(0.0, 1.0 / math.sqrt(density * n), size=(n, n)) * mask
    w_in = g.uniform(-1.0, 1.0, size=(n, n_in))
    w_fb = g.uniform(-1.0, 1.0, size=(n, n_out))
    return w_r, w_in, w_fb


def test_reservoir_step_matches_eq9_loop():
    seeds, n, n_in, n_out, tau, lam, dt = [2, 7], 12, 4, 2, 10.0, 1.3, 1.0
    zr, zo = 0.05, 0.2
    res, spec = _reservoir(seeds)
    rng = np.random.default_rng(1)
    W_o = rng.normal(0, 0.3, size=(len(seeds), n_out, n))
    res.W_o[...] = W_o
    ticks = 80
    r_in = rng.uniform(-1, 1, size=(ticks, len(seeds), n_in))
    got = {"u": [], "r": [], "r_o": []}
    for t in range(ticks):
        res.explore = t < 50  # exploration noise off for the last 30 ticks
        res.step(F64.asarray(r_in[t]))
        for key, val in (("u", res.u), ("r", res.r), ("r_o", res.r_o)):
            got[key].append(np.array(val))
    got = {k: np.array(v) for k, v in got.items()}
    a = dt / tau
    for k, s in enumerate(seeds):
        w_r, w_in, w_fb = _reservoir_matrices(s, n, n_in, n_out, spec.density)
        hidden = reference_generator(s, "mem/hidden_noise").uniform(-zr, zr, size=(ticks, n))
        ro_noise = reference_generator(s, "mem/readout_noise").uniform(-zo, zo, size=(ticks, n_out))
        u, r, ro = [0.0] * n, [0.0] * n, [0.0] * n_out
        for t in range(ticks):
            new_u = []
            for i in range(n):
                rec = sum(w_r[i][j] * r[j] for j in range(n))
                inp = sum(w_in[i][j] * r_in[t, k, j] for j in range(n_in))
                fb = sum(w_fb[i][j] * ro[j] for j in range(n_out))
                new_u.append(u[i] + a * (-u[i] + lam * rec + inp + fb))
            u = new_u
            r = [math.tanh(u[i]) + hidden[t, i] for i in range(n)]
            ro = [sum(W_o[k, o, j] * r[j] for j in range(n)) + (ro_noise[t, o] if t < 50 else 0)
                  for o in range(n_out)]
            np.testing.assert_allclose(got["u"][t, k], u, rtol=1e-11, atol=1e-12)
            np.testing.assert_allclose(got["r"][t, k], r, rtol=1e-11, atol=1e-12)
            np.testing.assert_allclose(got["r_o"][t, k], ro, rtol=1e-11, atol=1e-12)


def test_reservoir_matrices_follow_the_init_stream():
    seeds, n, n_in, n_out = [4], 12, 4, 2
    res, spec = _reservoir(seeds)
    a = 1.0 / spec.tau
    w_r, w_in, w_fb = _reservoir_matrices(4, n, n_in, n_out, spec.density)
    np.testing.assert_allclose(res.A[0], a * spec.chaos * w_r, rtol=1e-15)
    np.testing.assert_allclose(res.B[0], a * w_in, rtol=1e-15)
    np.testing.assert_allclose(res.C[0], a * w_fb, rtol=1e-15)


def test_reservoir_initialisation_statistics():
    n, p, lam, tau = 400, 0.1, 1.5, 50.0
    res, spec = _reservoir([11, 12], n=n, n_in=30, n_out=20, tau=tau, chaos=lam, density=p)
    a = 1.0 / tau
    for k in range(2):
        W_r = np.array(res.A[k]) / (a * lam)
        nonzero = W_r[W_r != 0]
        m = n * n
        # density: a Bernoulli(p) mask
        assert abs(nonzero.size / m - p) < 5 * math.sqrt(p * (1 - p) / m)
        # nonzero entries ~ N(0, 1/(pN)); the variance of a sample variance is 2 s^4/(c-1)
        var = 1.0 / (p * n)
        c = nonzero.size
        assert abs(nonzero.mean()) < 5 * math.sqrt(var / c)
        assert abs(nonzero.var() - var) < 5 * var * math.sqrt(2.0 / (c - 1))
        # over all entries the variance is p * 1/(pN) = 1/N
        assert abs(W_r.var() - 1.0 / n) < 0.1 / n
        for mat in (np.array(res.B[k]) / a, np.array(res.C[k]) / a):
            assert mat.min() >= -1.0 and mat.max() <= 1.0
            assert mat.min() < -0.9 and mat.max() > 0.9
            c = mat.size
            assert abs(mat.mean()) < 5 * math.sqrt(1 / 3 / c)
            assert abs(mat.var() - 1 / 3) < 5 * math.sqrt((1 / 5 - 1 / 9) / c)
    np.testing.assert_array_equal(res.W_o, 0.0)
    assert res.W_o.shape == (2, 20, n)
    for arr in (res.u, res.r, res.r_o):
        np.testing.assert_array_equal(arr, 0.0)
    # trials draw their own matrices
    assert not np.array_equal(res.A[0], res.A[1])


# ========================================================= order in a tick
NET_ORDER = """
name: order
populations:
  x:  {kind: input, size: 2}
  h1: {kind: layer, size: 3, tau: 2 ms, noise: 0.0}
  h2: {kind: layer, size: 2, tau: 3 ms, noise: 0.0}
  m1: {kind: reservoir, size: 10}
  m2: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h1, init: {std: 1.5}}
  - {from: h1, to: h2, init: {std: 1.5}}
  - {from: m1, to: h1, kind: modulatory}
  - {from: m2, to: h2, kind: modulatory, delay: 2 ms}
"""


def _gauss(a, b, sigma):
    d = sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True))
    return math.exp(-d / (2 * sigma * sigma))


def _xi_eq8(xs, ys, zs, rule):
    """DL Eq. 8 as written, by explicit loops; index 0 is the current sample."""
    N = len(xs)
    n = len(zs[0])
    if N < 2:
        return [0.0] * n
    kx = [_gauss(xs[0], xs[p], rule.sigma_x) for p in range(N)]
    ky = [_gauss(ys[0], ys[p], rule.sigma_y) for p in range(N)]
    kxb = [v - sum(kx) / N for v in kx]
    kyb = [v - sum(ky) / N for v in ky]
    alpha = [[-(2 / rule.sigma_z**2) * _gauss(zs[0], zs[p], rule.sigma_z) * (zs[0][i] - zs[p][i])
              for i in range(n)] for p in range(N)]
    abar = [[alpha[p][i] - sum(alpha[q][i] for q in range(N)) / N for i in range(n)]
            for p in range(N)]
    return [sum((kxb[p] - rule.gamma * kyb[p]) * abar[p][i] for p in range(N)) / (N - 1) ** 2
            for i in range(n)]


def test_order_within_a_tick_matches_a_hand_written_schedule():
    """present -> populations (topological) -> deliver -> plasticity -> probe.

    A hand-written loop in exactly that order reproduces every probed value:
    the new sample drives the layers in its first tick, h2 sees h1's output of
    the same tick, the zero-delay channel's update at tick t uses the ξ and β of
    tick t (the delayed one the ξ of t − 2 with the β of t), and the probes see
    the weights after the tick's plasticity.
    """
    seeds, S, T, eta, N = [1, 2], 4, 44, 0.4, 3
    rule = LayerRule(gamma=2.0, memory=N, sigma_x=0.5, sigma_y=0.5, sigma_z=0.6)
    net = parse_network(NET_ORDER)
    sim = Simulator(net, seeds=seeds, backend=F64, dt_ms=1.0, sample_ticks=S,
                    rules={"h1": rule, "h2": rule})
    x, labels = _data(seeds, 8, 2)
    sim.set_feed(ListFeed(x, labels, F64))
    sim.set_learning(layers=True, readouts=False)
    sim.set_eta(eta)
    probes = {t: sim.probe(t) for t in ("h1.u", "h1.z", "h1.W", "h2.u", "h2.z", "h2.W", "x.z",
                                         "h1.xi", "h2.xi")}
    W1 = np.array(sim.populations["h1"].W)
    W2 = np.array(sim.populations["h2"].W)
    sim.run(T)
    got = {name: p.data()[1] for name, p in probes.items()}
    np.testing.assert_array_equal(probes["h1.W"].data()[0], np.arange(T))
    for k in range(len(seeds)):
        w1, w2 = W1[k].tolist(), W2[k].tolist()
        u1, u2 = [0.0] * 3, [0.0] * 2
        mem = []  # per sample: [x, y, {phase: z1}, {phase: z2}], newest last
        xi2_sent = {}
        for t in range(T):
            phase = t % S
            if phase == 0:  # PRESENT
                i = (t // S) % x.shape[1]  # the feed cycles through the samples
                mem.append([x[k, i].tolist(), [float(labels[k, i])], {}, {}])
            xk = mem[-1][0]
            # POPULATION: h1 then h2, h2 reading h1's z of this tick
            u1 = [u1[i] + 0.5 * (-u1[i] + sum(w1[i][j] * xk[j] for j in range(2)))
                  for i in range(3)]
            z1 = [math.tanh(v) for v in u1]
            u2 = [u2[i] + (1 / 3) * (-u2[i] + sum(w2[i][j] * z1[j] for j in range(3)))
                  for i in range(2)]
            z2 = [math.tanh(v) for v in u2]
            mem[-1][2][phase], mem[-1][3][phase] = z1, z2
            recent = mem[::-1][:N]
            xi1 = _xi_eq8([e[0] for e in recent], [e[1] for e in recent],
                          [e[2][phase] for e in recent], rule)
            xi2 = _xi_eq8([e[0] for e in recent], [e[1] for e in recent],
                          [e[3][phase] for e in recent], rule)
            xi2_sent[t] = xi2
            # DELIVER + PLASTICITY (tau_e = 0): h1 gets xi1(t), h2 gets xi2(t - 2)
            w1 = [[w1[i][j] - eta * xi1[i] * (1 - z1[i] ** 2) * xk[j] for j in range(2)]
                  for i in range(3)]
            if t - 2 in xi2_sent:
                m2 = xi2_sent[t - 2]
                w2 = [[w2[i][j] - eta * m2[i] * (1 - z2[i] ** 2) * z1[j] for j in range(3)]
                      for i in range(2)]
            # PROBE
            tol = dict(rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(got["x.z"][t, k], xk, **tol)
            np.testing.assert_allclose(got["h1.u"][t, k], u1, **tol)
            np.testing.assert_allclose(got["h1.z"][t, k], z1, **tol)
            np.testing.assert_allclose(got["h2.u"][t, k], u2, **tol)
            np.testing.assert_allclose(got["h2.z"][t, k], z2, **tol)
            np.testing.assert_allclose(got["h1.xi"][t, k], xi1, **tol)
            np.testing.assert_allclose(got["h2.xi"][t, k], xi2, **tol)
            np.testing.assert_allclose(got["h1.W"][t, k], w1, **tol, err_msg=f"tick {t}")
            np.testing.assert_allclose(got["h2.W"][t, k], w2, **tol, err_msg=f"tick {t}")
    # learning happened in both layers (so the comparison above is not vacuous)
    assert np.abs(got["h1.W"][-1] - W1).max() > 1e-3
    assert np.abs(got["h2.W"][-1] - W2).max() > 1e-4


# ============================================================ three factors
NET_ONE = NET_ONE_LAYER


def _one_layer_sim(seeds, *, extra="", rule_kw=None, S=5, backend=F64, eta=0.3):
    rule = LayerRule(**{"gamma": 3.0, "memory": 4, "sigma_x": 0.4, "sigma_y": 0.5,
                        "sigma_z": 0.7, **(rule_kw or {})})
    net = parse_network(NET_ONE.replace("{extra}", extra))
    sim = Simulator(net, seeds=seeds, backend=backend, dt_ms=1.0, sample_ticks=S,
                    rules={"h": rule})
    x, labels = _data(seeds, 10, 3)
    sim.set_feed(ListFeed(x, labels, backend))
    sim.set_learning(layers=True, readouts=False)
    sim.set_eta(eta)
    return sim, rule


def test_three_factor_update_equals_minus_eta_xi_beta_each_tick():
    sim, rule = _one_layer_sim([4, 5, 6])
    layer = sim.populations["h"]
    eta = 0.3
    changed = 0
    for t in range(60):
        before = np.array(layer.W)
        sim.run(t + 1)
        mem = sim.memories["h"]
        x_mem, y_mem = mem.xy()
        z_mem = mem.z_at(sim.phase_of(t))
        xi = hsic.xi(x_mem, y_mem, z_mem, gamma=rule.gamma, sigma_x=rule.sigma_x,
                     sigma_y=rule.sigma_y, sigma_z=rule.sigma_z, form="paper")
        beta = hsic.beta(layer.z, layer.pre.z)
        expected = -eta * xi[:, :, None] * beta
        np.testing.assert_allclose(np.array(layer.W) - before, expected, rtol=1e-9, atol=1e-15,
                                   err_msg=f"tick {t}")
        if t < 5:  # first sample: one entry in memory, so ξ = 0 and W does not move
            np.testing.assert_array_equal(np.array(layer.W), before)
        elif np.abs(expected).max() > 1e-6:
            changed += 1
    assert changed > 40


def test_eligibility_trace_low_pass_filters_beta():
    """τ_e > 0: e ← e + (1 − exp(−dt/τ_e))(β − e), ΔW = −η ξ ⊙ e (zero delay)."""
    tau_e = 3.0
    sim, rule = _one_layer_sim([9], rule_kw={"tau_e_ms": tau_e})
    layer = sim.populations["h"]
    gain = 1.0 - math.exp(-1.0 / tau_e)
    e = np.zeros(layer.W.shape)
    for t in range(40):
        before = np.array(layer.W)
        sim.run(t + 1)
        beta = hsic.beta(np.array(layer.z), np.array(layer.pre.z))
        e = e + gain * (beta - e)
        xi = sim._xi("h", t)
        np.testing.assert_allclose(np.array(layer.W) - before, -0.3 * xi[:, :, None] * e,
                                   rtol=1e-9, atol=1e-15, err_msg=f"tick {t}")


def test_learning_off_leaves_weights():
    sim, _ = _one_layer_sim([1, 2])
    sim.set_learning(layers=False, readouts=False)
    W = np.array(sim.populations["h"].W)
    sim.run(50)
    np.testing.assert_array_equal(sim.populations["h"].W, W)


# ================================================================= channels
class Recorder:
    """A channel receiver that logs (tick, send tick, trial mask) of each delivery."""

    def __init__(self, sim, channel, inner):
        self.sim, self.inner, self.log, self.sends = sim, inner, [], []
        send = channel.send

        def logged_send(tick, message):
            self.sends.append((tick, message))
            send(tick, message)

        channel.send = logged_send

    def __getattr__(self, name):  # anything else (e.g. ``enabled``) is the receiver's
        return getattr(self.inner, name)

    def deliver(self, message, mask=None, sent=None):
        sends = [t for t, m in self.sends if m is message]
        assert sends == [sent]
        trials = (np.ones(self.sim.trials, bool) if mask is None
                  else np.asarray(mask) != 0)
        self.log.append((self.sim.tick, sent, trials))
        self.inner.deliver(message, mask, sent)


def _recorded_sim(seeds, extra, T):
    sim, _ = _one_layer_sim(seeds, extra=extra)
    ch = sim.channels["h"]
    rec = Recorder(sim, ch, ch.receiver)
    ch.receiver = rec
    sim.run(T)
    return sim, ch, rec


def test_channel_delay_delivers_exactly_delay_ticks_later():
    T, d = 60, 3
    sim, ch, rec = _recorded_sim([1, 2], ", delay: 3 ms", T)
    record = expand_channel(ch.record())
    np.testing.assert_array_equal(record["sent_tick"], np.arange(T))
    np.testing.assert_array_equal(record["deliver_tick"], np.arange(T)[:, None] + d + [0, 0])
    ticks = [(at, sent) for at, sent, trials in rec.log]
    assert ticks == [(s + d, s) for s in range(T - d)]  # the last d are still in flight
    assert all(trials.all() for _, _, trials in rec.log)
    assert sorted(ch.in_flight) == list(range(T, T + d))


def test_channel_period_sends_every_period_and_learns_only_then():
    T, P = 60, 4
    sim, ch, rec = _recorded_sim([3], ", period: 4 ms", T)
    np.testing.assert_array_equal(expand_channel(ch.record())["sent_tick"], np.arange(0, T, P))
    assert [at for at, _, _ in rec.log] == list(range(0, T, P))
    # with τ_e = 0 the weights move only in ticks with a delivery
    sim2, _ = _one_layer_sim([3], extra=", period: 4 ms")
    probe = sim2.probe("h.W")
    sim2.run(T)
    W = probe.data()[1][:, 0]
    moved = [t for t in range(1, T) if not np.array_equal(W[t], W[t - 1])]
    assert moved and set(moved) <= set(range(0, T, P))


def test_uniform_jitter_statistics():
    j, d, T, seeds = 4, 10, 5000, [0, 1, 2, 3]
    ch, log = drive_channel(seeds, T, delay=d, jitter=j)
    delivered = [(k, s, at) for k, s, at in log if s < T - d - j]
    offsets = np.array([at - s - d for _, s, at in delivered])
    n = offsets.size
    assert n == len(seeds) * (T - d - j)  # nothing lost
    assert offsets.min() == -j and offsets.max() == j
    values = np.arange(-j, j + 1)
    var = ((2 * j + 1) ** 2 - 1) / 12
    mu4 = np.mean(values.astype(float) ** 4)
    assert abs(offsets.mean()) < 5 * math.sqrt(var / n)
    assert abs(offsets.var() - var) < 5 * math.sqrt((mu4 - var**2) / n)
    counts = np.array([(offsets == v).sum() for v in values])
    q = 1 / (2 * j + 1)
    assert np.all(np.abs(counts / n - q) < 5 * math.sqrt(q * (1 - q) / n))
    # the record agrees with the actual deliveries
    record = expand_channel(ch.record())
    for k, s, at in delivered[:500]:
        assert record["deliver_tick"][s, k] == at


def test_normal_jitter_statistics_and_no_arrival_before_send():
    j, d, T, seeds = 3, 20, 4000, [5, 6]
    _, log = drive_channel(seeds, T, delay=d, jitter=j, jitter_dist="normal")
    offsets = np.array([at - s - d for _, s, at in log if s < T - d - 6 * j])
    n = offsets.size
    var = j * j + 1 / 12  # a rounded N(0, j²) (Sheppard's correction)
    assert abs(offsets.mean()) < 5 * math.sqrt(var / n)
    assert abs(offsets.var() - var) < 5 * var * math.sqrt(2 / n)
    # with zero delay, jitter never delivers before the send tick
    _, log0 = drive_channel(seeds, 2000, delay=0, jitter=2)
    offsets0 = np.array([at - s for _, s, at in log0 if s < 2000 - 2])
    assert offsets0.min() == 0 and offsets0.max() == 2
    m = offsets0.size
    p0 = 3 / 5  # draws −2, −1, 0 all arrive at the send tick
    assert abs((offsets0 == 0).mean() - p0) < 5 * math.sqrt(p0 * (1 - p0) / m)


def test_loss_fraction_is_binomial():
    p, T, seeds = 0.3, 4000, [7, 8, 9]
    ch, log = drive_channel(seeds, T, delay=1, loss=p)
    record = expand_channel(ch.record())["deliver_tick"]
    n = record.size
    dropped = (record == -1).mean()
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / n)
    # dropped messages are never delivered; the others are, exactly one tick later
    got = {(k, s): at for k, s, at in log}
    for s in range(T - 1):
        for k in range(len(seeds)):
            if record[s, k] == -1:
                assert (k, s) not in got
            else:
                assert got[(k, s)] == s + 1
    # a lossless channel draws no random numbers and loses nothing
    assert (expand_channel(drive_channel([1], 50)[0].record())["deliver_tick"] >= 0).all()


def test_channel_trials_are_independent():
    kw = {"delay": 5, "jitter": 3, "loss": 0.25}
    seeds = [40, 41, 42]
    ch, _ = drive_channel(seeds, 800, **kw)
    batched = expand_channel(ch.record())["deliver_tick"]
    for k, s in enumerate(seeds):
        single = expand_channel(drive_channel([s], 800, **kw)[0].record())["deliver_tick"]
        np.testing.assert_array_equal(batched[:, k], single[:, 0])
    assert not np.array_equal(batched[:, 0], batched[:, 1])


def test_simulated_channel_trials_equal_single_runs():
    """Through the simulator: trial k's deliveries and weights equal a run with seed s + k."""
    extra = ", delay: 2 ms, jitter: 2 ms, loss: 0.3"
    seeds = [30, 31, 32]
    T = 80
    sim_b, ch_b, rec_b = _recorded_sim(seeds, extra, T)
    for k, s in enumerate(seeds):
        sim_s, ch_s, rec_s = _recorded_sim([s], extra, T)
        np.testing.assert_array_equal(expand_channel(ch_b.record())["deliver_tick"][:, k],
                                      expand_channel(ch_s.record())["deliver_tick"][:, 0])
        np.testing.assert_array_equal(sim_b.populations["h"].W[k], sim_s.populations["h"].W[0])
        deliveries_b = [(at, sent) for at, sent, trials in rec_b.log if trials[k]]
        assert deliveries_b == [(at, sent) for at, sent, _ in rec_s.log]
        rec = expand_channel(ch_s.record())
        for at, sent in deliveries_b:
            assert rec["deliver_tick"][sent, 0] == at


# ============================================================ divergence
DIVERGE = """name: diverge
network: {net}
dataset: {{name: tanh_boundary, params: {{samples: 10, test_samples: 10}}}}
timing: {{dt: 1 ms, sample: 5 ms}}
rule: {{name: hsic, gamma: 2, memory: 4, lr: {{eta: 1.0e+39}}}}
phases:
  - {{name: warmup, duration: 20 ms}}
  - {{name: blowup, epochs: 2, learn: [layers]}}
"""


def test_divergence_names_population_tick_and_phase():
    """A learning rate beyond float32 makes W non-finite in the first tick of 'blowup'
    (tick 20); the guard runs at each sample start, so it fires at tick 25."""
    sc = parse_scenario(DIVERGE.format(net=REPO / "networks" / "tanh_mlp.yaml"))
    runner = Runner(sc)
    with np.errstate(all="ignore"), pytest.raises(DivergenceError) as info:
        runner.run()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("diverged: h1.")
    assert "at tick 25 (t = 25 ms)" in message
    assert "in phase 'blowup'" in message
    pop, var = message.split()[1].split(".")
    assert not np.isfinite(runner.sim.populations[pop].state()[var]).all()
    assert runner.sim.tick == 25


def test_divergence_from_huge_initial_weights():
    net = """
name: huge
populations:
  x: {kind: input, size: 2}
  a: {kind: layer, size: 2}
  h: {kind: layer, size: 3}
projections:
  - {from: x, to: a, init: {std: 0.5}}
  - {from: a, to: h, init: {std: 1.0e+39}}
"""
    with np.errstate(all="ignore"):
        sim = Simulator(parse_network(net), seeds=[0], backend=F32, sample_ticks=4)
        x, labels = _data([0], 5, 2)
        sim.set_feed(ListFeed(x, labels, F32))
        sim.phase = "warmup"
        with pytest.raises(DivergenceError, match=r"diverged: h\.u is not finite at tick 4 "
                                                  r"\(t = 4 ms\) in phase 'warmup'"):
            sim.run(100)


@pytest.mark.parametrize("filled", [1, 3, 6])
def test_logged_objectives_equal_the_estimators_over_the_memory(filled):
    """The per-sample objectives the engine logs (cached centred X/Y kernels) equal
    ``HSIC(X,Z) − γ HSIC(Y,Z)`` (DL Eq. 2/3) and ``pHSIC(Z,Z) − γ pHSIC(Y,Z)`` (PL Eq. 34)
    computed from scratch over the filled memory entries."""
    from eventsim.backend import get_backend
    from eventsim.engine.simulator import AnalyticXi, SampleKernels
    from eventsim.plasticity.memory import SampleMemory, WorkingMemory

    be = get_backend("numpy", dtype="float64")
    rng = np.random.default_rng(filled)
    samples = SampleMemory(6, 5, 3, backend=be, trials=2)
    memory = WorkingMemory(samples, 4, 7, backend=be, trials=2)
    rule = LayerRule(gamma=3.0, memory=6, sigma_x=1.1, sigma_y=0.7, sigma_z=0.9)
    xi = AnalyticXi(memory, rule, SampleKernels(samples, np))
    for _ in range(filled):
        samples.push(rng.normal(size=(2, 5)), rng.normal(size=(2, 3)))
        memory.new_sample()
        for phase in range(4):
            memory.write_z(phase, np.tanh(rng.normal(size=(2, 7))))
    got = xi.objectives(2)
    x, y = samples.xy()
    z = memory.z_at(2)
    sig = dict(sigma_x=1.1, sigma_y=0.7, sigma_z=0.9)
    np.testing.assert_allclose(got["objective_dl"],
                               hsic.objective_dl(x, y, z, gamma=3.0, **sig), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["objective_pl"],
                               hsic.objective_pl(y, z, gamma=3.0, sigma_y=0.7, sigma_z=0.9),
                               rtol=1e-12, atol=1e-15)
