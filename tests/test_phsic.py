"""pHSIC rules (eventsim.plasticity.phsic) against slow explicit implementations.

The references here are written from the equations (PL Eqs. 9, 13, 17–22, 34,
35, 59–66) with Python scalar loops, and the batch rule is checked against
central finite differences of the explicit PL objective in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from eventsim.backend import RandomStreams, get_backend
from eventsim.plasticity import phsic as ph

VARIANTS = [(k, g) for k in ("gaussian", "cosine") for g in ("none", "grouped", "divisive")]


def _spec(kernel, grouping, activation="tanh", **kw):
    sigma = 1.5 if grouping == "none" else 0.5
    return ph.PHSICSpec(kernel=kernel, grouping=grouping, sigma=sigma, gamma=2.0, groups=3,
                        activation=activation, slope=0.1, **kw)


# ---------------------------------------------------------------- slow references


def _ref_f(a, spec):
    if spec.activation == "tanh":
        return math.tanh(a)
    return a if a > 0 else spec.slope * a


def _ref_fprime(a, spec):
    if spec.activation == "tanh":
        return 1.0 - math.tanh(a) ** 2
    return 1.0 if a > 0 else spec.slope


def _ref_pre(W, x):
    """a_o = Σ_d W_od x_d for one sample."""
    return [sum(W[o][d] * x[d] for d in range(len(x))) for o in range(len(W))]


def _ref_groups(z, spec):
    """(zc, u, v) of PL Eqs. 17–22 with explicit loops over groups and neurons."""
    c = spec.groups
    size = len(z) // c
    p = spec.power
    zc, u = [], []
    for alpha in range(c):
        grp = z[alpha * size:(alpha + 1) * size]
        mu = sum(grp) / size
        zc.append([zn - mu for zn in grp])
        u.append((spec.delta + sum((zn - mu) ** 2 for zn in grp)) / size)
    w = [ua ** (1 - p) for ua in u]
    mean_w = sum(w) / c
    return zc, u, [wa - mean_w for wa in w]


def _ref_signal(W, x, spec):
    """The kernel's input v for one sample."""
    z = [_ref_f(a, spec) for a in _ref_pre(W, x)]
    if spec.grouping == "none":
        return z
    return _ref_groups(z, spec)[2]


def _ref_k(a, b, kernel, sigma):
    if kernel == "gaussian":
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True)) / (2 * sigma**2))
    dot = sum(ai * bi for ai, bi in zip(a, b, strict=True))
    return dot / math.sqrt(sum(ai * ai for ai in a) * sum(bi * bi for bi in b))


def _ref_ky(l1, l2, n_classes):
    """Cosine kernel on one-hot minus 1/n (PL Eq. 35)."""
    y1 = [(1.0 if c == l1 else 0.0) - 1.0 / n_classes for c in range(n_classes)]
    y2 = [(1.0 if c == l2 else 0.0) - 1.0 / n_classes for c in range(n_classes)]
    return _ref_k(y1, y2, "cosine", None)


def _ref_phsic(A, B):
    """PL Eq. 34 as an explicit double sum."""
    m = len(A)
    sab = sum(A[i][j] * B[i][j] for i in range(m) for j in range(m)) / m**2
    sa = sum(A[i][j] for i in range(m) for j in range(m)) / m**2
    sb = sum(B[i][j] for i in range(m) for j in range(m)) / m**2
    return sab - sa * sb


def _ref_objective(W, X, labels, spec, n_classes):
    """pHSIC(Z, Z) − γ pHSIC(Y, Z) for one trial, kernel matrices built explicitly."""
    V = [_ref_signal(W, x, spec) for x in X]
    m = len(X)
    Kz = [[_ref_k(V[i], V[j], spec.kernel, spec.sigma) for j in range(m)] for i in range(m)]
    Ky = [[_ref_ky(labels[i], labels[j], n_classes) for j in range(m)] for i in range(m)]
    return _ref_phsic(Kz, Kz) - spec.gamma * _ref_phsic(Ky, Kz)


def _fd_descent(W, X, labels, spec, n_classes, h=1e-6):
    """−∂L/∂W by central differences, shape (n, D), for one trial."""
    out = np.empty_like(W)
    for o in range(W.shape[0]):
        for d in range(W.shape[1]):
            Wp, Wm = W.copy(), W.copy()
            Wp[o, d] += h
            Wm[o, d] -= h
            lp = _ref_objective(Wp.tolist(), X.tolist(), labels, spec, n_classes)
            lm = _ref_objective(Wm.tolist(), X.tolist(), labels, spec, n_classes)
            out[o, d] = -(lp - lm) / (2 * h)
    return out


def _problem(rng, K, m, n, D, n_classes=3):
    W = rng.normal(size=(K, n, D)) / math.sqrt(D)
    X = rng.normal(size=(K, m, D))
    labels = rng.integers(0, n_classes, size=(K, m))
    labels[0, :2] = [0, 1]  # at least one pair of different classes
    return W, X, labels


def _codes(labels, n_classes=3):
    return np.eye(n_classes)[labels] - 1.0 / n_classes


# ---------------------------------------------------------------- batch rule


@pytest.mark.parametrize("m", [2, 5])
@pytest.mark.parametrize("activation", ["tanh", "leaky_relu"])
@pytest.mark.parametrize(("kernel", "grouping"), VARIANTS)
def test_batch_rule_is_minus_gradient(kernel, grouping, activation, m):
    spec = _spec(kernel, grouping, activation)
    rng = np.random.default_rng([m, len(kernel), len(grouping), len(activation)])
    K, n, D = 2, 6, 3
    W, X, labels = _problem(rng, K, m, n, D)
    dW, L, _ = ph.batch_rule(W, X, _codes(labels), spec)
    assert dW.shape == (K, n, D) and dW.dtype == np.float64
    assert np.abs(dW).max() > 1e-2  # the check is not vacuous
    for k in range(K):
        want = _fd_descent(W[k], X[k], labels[k].tolist(), spec, 3)
        # FD round-off is ~1e-10 here; every entry must agree to 1e-6 of the trial's scale
        np.testing.assert_allclose(dW[k], want, rtol=1e-6, atol=1e-6 * np.abs(want).max() + 1e-9)
        ref_L = _ref_objective(W[k].tolist(), X[k].tolist(), labels[k].tolist(), spec, 3)
        assert L[k] == pytest.approx(ref_L, rel=1e-12, abs=1e-14)


def test_batch_rule_third_factor_form():
    """ΔW = Σ_ij (γ k̊y − 2 k̊z)/m² · dk_ij/dW with an explicit loop over pairs (plain Gaussian)."""
    spec = _spec("gaussian", "none", "tanh")
    rng = np.random.default_rng(7)
    W, X, labels = _problem(rng, 1, 4, 5, 3)
    W, X, lab = W[0], X[0], labels[0]
    m, s2 = 4, spec.sigma**2
    a = X @ W.T
    z = np.tanh(a)
    Kz = np.array([[_ref_k(z[i], z[j], "gaussian", spec.sigma) for j in range(m)]
                   for i in range(m)])
    Ky = np.array([[_ref_ky(lab[i], lab[j], 3) for j in range(m)] for i in range(m)])
    want = np.zeros_like(W)
    for i in range(m):
        for j in range(m):
            coef = (spec.gamma * (Ky[i, j] - Ky.mean()) - 2 * (Kz[i, j] - Kz.mean())) / m**2
            dz = z[i] - z[j]
            # dk_ij/dW = −(k_ij/σ²) [(Δz ⊙ f′_i) x_iᵀ − (Δz ⊙ f′_j) x_jᵀ]
            dk = -(Kz[i, j] / s2) * (np.outer(dz * (1 - z[i] ** 2), X[i])
                                     - np.outer(dz * (1 - z[j] ** 2), X[j]))
            want += coef * dk
    dW, _, _ = ph.batch_rule(W[None], X[None], _codes(lab)[None], spec)
    np.testing.assert_allclose(dW[0], want, rtol=1e-10, atol=1e-14)


def test_float32_in_float32_out():
    rng = np.random.default_rng(3)
    W, X, labels = _problem(rng, 2, 4, 6, 3)
    W32, X32, Y32 = (a.astype(np.float32) for a in (W, X, _codes(labels)))
    for kernel, grouping in VARIANTS:
        spec = _spec(kernel, grouping, "leaky_relu")
        dW, L, lp = ph.batch_rule(W32, X32, Y32, spec)
        assert dW.dtype == L.dtype == lp.r.dtype == np.float32
        dW64, _, _ = ph.batch_rule(W, X, _codes(labels), spec)
        np.testing.assert_allclose(dW, dW64, rtol=2e-3, atol=2e-4 * np.abs(dW64).max())
        rule = ph.TwoPointRule(spec, 2, 3, 6, 3, backend=get_backend("numpy", "float32"))
        for t in range(2):
            res = rule.step(W32, X32[:, t], Y32[:, t])
        assert res.dW.dtype == res.M.dtype == res.objective.dtype == np.float32


def test_grouping_signals_match_reference():
    rng = np.random.default_rng(11)
    W, X, _ = _problem(rng, 2, 3, 6, 4)
    for grouping in ("grouped", "divisive"):
        spec = _spec("gaussian", grouping, "leaky_relu")
        lp = ph.layer_forward(W, X, spec)
        for k in range(2):
            for i in range(3):
                z = [_ref_f(a, spec) for a in _ref_pre(W[k].tolist(), X[k, i].tolist())]
                zc, u, v = _ref_groups(z, spec)
                np.testing.assert_allclose(lp.v[k, i], v, rtol=1e-12)
                if grouping == "divisive":  # r_αn = z̃_αn / u_α^p, p = 0.2
                    r = [zc[al][j] / u[al] ** 0.2 for al in range(3) for j in range(2)]
                else:
                    r = z
                np.testing.assert_allclose(lp.r[k, i], r, rtol=1e-12)


def test_default_powers_and_validation():
    assert ph.PHSICSpec(grouping="divisive").power == 0.2
    assert ph.PHSICSpec(grouping="grouped").power == 0.5
    assert ph.PHSICSpec(grouping="divisive", p=0.3).power == 0.3
    with pytest.raises(ValueError, match="groups"):
        ph.PHSICSpec(grouping="grouped", groups=4).check_width(6)
    with pytest.raises(ValueError, match="unknown kernel"):
        ph.PHSICSpec(kernel="laplace")
    with pytest.raises(ValueError, match="at least 2"):
        ph.batch_rule(np.zeros((1, 2, 3)), np.zeros((1, 1, 3)), np.zeros((1, 1, 3)),
                      ph.PHSICSpec())


# ---------------------------------------------------------------- online two-point rule


def _online_run(spec, beta, steps, seed, K=3, n=6, D=4):
    """Drive TwoPointRule with weights that change between steps; return inputs and results."""
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(size=(K, n, D)) / math.sqrt(D)]
    for _ in range(steps - 1):
        Ws.append(Ws[-1] + 0.05 * rng.normal(size=(K, n, D)))
    X = rng.normal(size=(steps, K, D))
    labels = rng.integers(0, 3, size=(steps, K))
    rule = ph.TwoPointRule(spec, K, D, n, 3, beta=beta, backend=get_backend("numpy", "float64"))
    results = [rule.step(Ws[t], X[t], _codes(labels[t])) for t in range(steps)]
    return Ws, X, labels, results


@pytest.mark.parametrize(("kernel", "grouping"), VARIANTS)
def test_online_modulator_matches_scalar_loop(kernel, grouping):
    """b1, b2, b3 and M of PL Eqs. 59–62, step by step, against scalar loops."""
    spec = _spec(kernel, grouping, "tanh")
    beta, steps, K = 0.3, 6, 3
    Ws, X, labels, results = _online_run(spec, beta, steps, seed=5, K=K)
    for k in range(K):
        b3 = 0.0
        v_prev = None
        for t in range(steps):
            v = _ref_signal(Ws[t][k].tolist(), X[t, k].tolist(), spec)
            if v_prev is None:
                assert results[t].M[k] == 0.0 and not results[t].dW.any()
            else:
                b1 = sum((vt - vs) ** 2 for vt, vs in zip(v, v_prev, strict=True))
                if kernel == "gaussian":
                    kz = math.exp(-b1 / (2 * spec.sigma**2))
                else:
                    kz = _ref_k(v, v_prev, "cosine", None)
                b2 = spec.gamma * _ref_ky(labels[t, k], labels[t - 1, k], 3) - 2 * kz
                b3 = beta * b2 + (1 - beta) * b3
                if kernel == "gaussian":
                    M = -(b2 - b3) * math.exp(-b1 / (2 * spec.sigma**2)) / spec.sigma**2
                else:
                    M = b2 - b3
                assert results[t].b2[k] == pytest.approx(b2, rel=1e-12, abs=1e-14)
                assert results[t].M[k] == pytest.approx(M, rel=1e-10, abs=1e-14)
            v_prev = v
    assert any(abs(r.M).max() > 1e-3 for r in results)


@pytest.mark.parametrize("grouping", ["none", "grouped", "divisive"])
def test_online_gaussian_update_is_eq13(grouping):
    """ΔW = M Σ_n (Δv-term)(f′_t r_t − f′_s r_s): PL Eq. 13 with the f′ and per-group terms."""
    spec = _spec("gaussian", grouping, "tanh")
    Ws, X, _, results = _online_run(spec, 0.2, 4, seed=9)
    n, D = Ws[0].shape[1:]
    for t in range(1, 4):
        for k in range(3):
            Wt, Ws_ = Ws[t][k].tolist(), Ws[t - 1][k].tolist()
            a_t, a_s = _ref_pre(Wt, X[t, k].tolist()), _ref_pre(Ws_, X[t - 1, k].tolist())
            z_t = [_ref_f(a, spec) for a in a_t]
            z_s = [_ref_f(a, spec) for a in a_s]
            if grouping == "none":
                post_t = [(z_t[o] - z_s[o]) * _ref_fprime(a_t[o], spec) for o in range(n)]
                post_s = [(z_t[o] - z_s[o]) * _ref_fprime(a_s[o], spec) for o in range(n)]
            else:
                zc_t, u_t, v_t = _ref_groups(z_t, spec)
                zc_s, u_s, v_s = _ref_groups(z_s, spec)
                p, size = spec.power, n // spec.groups
                post_t, post_s = [], []
                for o in range(n):
                    al, j = divmod(o, size)
                    dv = v_t[al] - v_s[al]  # the per-group term
                    post_t.append(dv * (1 - p) * u_t[al] ** -p * 2 * zc_t[al][j] / size
                                  * _ref_fprime(a_t[o], spec))
                    post_s.append(dv * (1 - p) * u_s[al] ** -p * 2 * zc_s[al][j] / size
                                  * _ref_fprime(a_s[o], spec))
            M = results[t].M[k]
            want = [[M * (post_t[o] * X[t, k, d] - post_s[o] * X[t - 1, k, d])
                     for d in range(D)] for o in range(n)]
            np.testing.assert_allclose(results[t].dW[k], want, rtol=1e-10, atol=1e-15)


def test_online_linear_layer_is_literal_eq13():
    """Linear layer (leaky ReLU with slope 1): ΔW = M (z_t − z_s)(r_t − r_s)ᵀ."""
    spec = ph.PHSICSpec(kernel="gaussian", sigma=3.0, activation="leaky_relu", slope=1.0)
    rng = np.random.default_rng(2)
    W = rng.normal(size=(2, 4, 3))
    X = rng.normal(size=(2, 2, 3))
    rule = ph.TwoPointRule(spec, 2, 3, 4, 3, backend=get_backend("numpy", "float64"))
    rule.step(W, X[0], _codes(np.array([0, 1])))
    res = rule.step(W, X[1], _codes(np.array([2, 1])))
    dz = np.einsum("kod,kd->ko", W, X[1] - X[0])
    want = res.M[:, None, None] * dz[:, :, None] * (X[1] - X[0])[:, None, :]
    np.testing.assert_allclose(res.dW, want, rtol=1e-12)
    assert np.abs(res.M).min() > 1e-3


@pytest.mark.parametrize(("kernel", "grouping"), VARIANTS)
def test_online_with_exact_mean_is_twice_batch_m2(kernel, grouping):
    """If b3 equals the exact 2×2 batch mean b̄ = (b2 + γ − 2)/2, ΔW_online = 2 ΔW_batch(m=2)."""
    spec = _spec(kernel, grouping, "leaky_relu")
    rng = np.random.default_rng(4)
    K, n, D, beta = 3, 6, 4, 0.25
    W = rng.normal(size=(K, n, D)) / math.sqrt(D)
    X = rng.normal(size=(K, 2, D))
    labels = np.array([[0, 1], [2, 2], [1, 0]])
    rule = ph.TwoPointRule(spec, K, D, n, 3, beta=beta, backend=get_backend("numpy", "float64"))
    rule.step(W, X[:, 0], _codes(labels[:, 0]))
    b2 = np.array([
        spec.gamma * _ref_ky(labels[k, 1], labels[k, 0], 3)
        - 2 * _ref_k(_ref_signal(W[k].tolist(), X[k, 1].tolist(), spec),
                     _ref_signal(W[k].tolist(), X[k, 0].tolist(), spec), kernel, spec.sigma)
        for k in range(K)])
    b_bar = (b2 + spec.gamma - 2) / 2
    state = rule.get_state()
    state["b3"] = (b_bar - beta * b2) / (1 - beta)  # so the running-mean update lands on b̄
    rule.set_state(state)
    res = rule.step(W, X[:, 1], _codes(labels[:, 1]))
    np.testing.assert_allclose(rule.b3, b_bar, rtol=1e-10)
    dW_batch, L, _ = ph.batch_rule(W, X, _codes(labels), spec)
    assert np.abs(dW_batch).max() > 1e-4
    np.testing.assert_allclose(res.dW, 2 * dW_batch, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.objective, L, rtol=1e-10, atol=1e-14)
    # with the running mean left alone the relation does not hold
    rule.set_state({**state, "b3": np.zeros(K)})
    assert not np.allclose(rule.step(W, X[:, 1], _codes(labels[:, 1])).dW, 2 * dW_batch)


def test_two_point_state_roundtrip():
    spec = _spec("cosine", "divisive")
    rng = np.random.default_rng(8)
    W = rng.normal(size=(2, 6, 3))
    X = rng.normal(size=(4, 2, 3))
    y = _codes(rng.integers(0, 3, size=(4, 2)))
    rule = ph.TwoPointRule(spec, 2, 3, 6, 3, beta=0.5, backend=get_backend("numpy", "float64"))
    for t in range(2):
        rule.step(W, X[t], y[t])
    state = rule.get_state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    first = [rule.step(W, X[t], y[t]).dW for t in (2, 3)]
    rule.set_state(state)
    again = [rule.step(W, X[t], y[t]).dW for t in (2, 3)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- trainer


def _blobs(seed, n_per=30, D=8, n_classes=3):
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.normal(size=(n_classes, D))
    x = np.concatenate([c + 0.5 * rng.normal(size=(n_per, D)) for c in centres])
    y = np.repeat(np.arange(n_classes), n_per)
    return x.astype(np.float32), y


@pytest.mark.parametrize(("kernel", "grouping"), [("gaussian", "none"), ("gaussian", "grouped"),
                                                  ("cosine", "divisive")])
def test_batch_training_decreases_objective(kernel, grouping):
    x, y = _blobs(0)
    net = ph.PHSICNet([8, 12, 12], seeds=[1, 2], n_classes=3, kernel=kernel, grouping=grouping,
                      groups=4, sigma=1.0, activation="tanh")
    before = net.objectives(x, y)
    rng = RandomStreams([1, 2], "shuffle")
    for _ in range(5):
        stats = net.train_epoch(x, y, lr=0.5, momentum=0.9, batch_size=16, rng=rng,
                                lr_readout=0.1)
    after = net.objectives(x, y)
    assert before.shape == (2, 2) and after.dtype == np.float32
    assert stats["objective"].shape == (2, 2) and stats["ce"].shape == (2,)
    assert np.all(after < before - 1e-3), (before, after)
    assert (net.predict(x) == y).mean() > 0.9


@pytest.mark.parametrize(("n", "sizes"), [(90, [32, 32, 26]), (65, [32, 32]), (64, [32, 32])])
def test_an_epoch_keeps_the_last_partial_batch_as_pl_do(monkeypatch, n, sizes):
    """PL's loader keeps the remainder batch (``drop_last=False``); a lone sample is dropped.

    Every kept batch is a distinct slice of the epoch's permutation, so each
    sample of the kept batches is seen exactly once.
    """
    x, y = _blobs(0)
    x, y = x[:n], y[:n]
    x[:, 0] = np.arange(n)  # tag each sample to see which ones each batch holds
    seen = []

    def spy(W, r_pre, y_code, spec):
        if W.shape[-1] == x.shape[1]:  # the first layer sees the raw samples
            seen.append(np.asarray(r_pre[0, :, 0]).astype(int))
        return batch_rule(W, r_pre, y_code, spec)

    batch_rule = ph.batch_rule
    monkeypatch.setattr(ph, "batch_rule", spy)
    net = ph.PHSICNet([8, 12, 12], seeds=[1], n_classes=3, sigma=1.0, activation="tanh")
    net.train_epoch(x, y, lr=0.1, momentum=0.9, batch_size=32, rng=RandomStreams([1], "s"))
    assert [len(b) for b in seen] == sizes
    ids = np.concatenate(seen)
    assert len(set(ids.tolist())) == len(ids) == sum(sizes)


def test_online_training_decreases_objective():
    x, y = _blobs(1)
    net = ph.PHSICNet([8, 12], seeds=[3, 4], n_classes=3, sigma=1.0, activation="tanh",
                      rule="online", beta=0.1)
    before = net.objectives(x, y)
    rng = RandomStreams([3, 4], "shuffle")
    for _ in range(3):
        net.train_epoch(x, y, lr=0.1, momentum=0.5, batch_size=1, rng=rng)
    assert np.all(net.objectives(x, y) < before - 1e-3)
    with pytest.raises(ValueError, match="batch_size=1"):
        net.train_epoch(x, y, lr=0.1, momentum=0.5, batch_size=2, rng=rng)


@pytest.mark.parametrize("rule", ["batch", "online"])
def test_trials_are_independent(rule):
    """Trial k of a batched run equals a run with only its seed (init, shuffling, updates)."""
    x, y = _blobs(2, n_per=10)
    kw = dict(n_classes=3, grouping="divisive", groups=4, sigma=1.0, rule=rule)
    both = ph.PHSICNet([8, 8], seeds=[5, 6], **kw)
    alone = ph.PHSICNet([8, 8], seeds=[6], **kw)
    np.testing.assert_array_equal(both.weights[0][1], alone.weights[0][0])
    bs = 1 if rule == "online" else 6
    both.train_epoch(x, y, 0.2, 0.9, bs, RandomStreams([5, 6], "shuffle"))
    alone.train_epoch(x, y, 0.2, 0.9, bs, RandomStreams([6], "shuffle"))
    for a, b in zip(both.params, alone.params, strict=True):
        np.testing.assert_allclose(a[1], b[0], rtol=1e-5, atol=1e-6)


def test_net_state_roundtrip_and_per_trial_data():
    x, y = _blobs(3, n_per=8)
    xs = np.stack([x, x[::-1]])  # (K, N, D) per-trial data
    ys = np.stack([y, y[::-1]])
    net = ph.PHSICNet([8, 8], seeds=[1, 2], n_classes=3, rule="online")
    rng = RandomStreams([1, 2], "shuffle")
    net.train_epoch(xs, ys, 0.1, 0.9, 1, rng)
    state, rng_state = net.get_state(), rng.get_state()
    net.train_epoch(xs, ys, 0.1, 0.9, 1, rng)
    first = [p.copy() for p in net.params]
    net.set_state(state)
    rng.set_state(rng_state)
    net.train_epoch(xs, ys, 0.1, 0.9, 1, rng)
    for a, b in zip(first, net.params, strict=True):
        np.testing.assert_array_equal(a, b)
    outs = net.forward(x)
    assert len(outs) == 1 and outs[0].shape == (2, 24, 8) and outs[0].dtype == np.float32


def _ref_ce(V, b, R, labels):
    """Mean cross-entropy of a softmax readout, explicit loops."""
    total = 0.0
    for r, lab in zip(R, labels, strict=True):
        logits = [sum(V[c][d] * r[d] for d in range(len(r))) + b[c] for c in range(len(b))]
        top = max(logits)
        total -= logits[lab] - top - math.log(sum(math.exp(lo - top) for lo in logits))
    return total / len(R)


@pytest.mark.parametrize(("wd", "wd_ro"), [(0.0, 0.0), (0.05, 0.0), (0.0, 0.3), (0.02, 0.1)])
def test_sgd_momentum_and_readout_match_explicit(wd, wd_ro):
    """Two full-batch epochs: PyTorch-style momentum SGD on −ΔW (pHSIC) and on the CE gradient.

    With weight decay λ the gradient is that of ``L + λ|θ|²/2`` (torch.optim.SGD's
    ``weight_decay``), here ``g + λ θ`` with ``g`` from finite differences; the
    readout's bias decays too.
    """
    be = get_backend("numpy", "float64")
    rng = np.random.default_rng(12)
    x = rng.normal(size=(5, 3))
    y = [0, 1, 2, 0, 1]
    net = ph.PHSICNet([3, 4], seeds=[0], n_classes=3, sigma=1.5, activation="tanh", backend=be)
    W, V, b = (p[0].copy() for p in net.params)
    bufs = [np.zeros_like(W), np.zeros_like(V), np.zeros_like(b)]
    lr, lr_ro, mu, h = 0.3, 0.2, 0.7, 1e-6
    for epoch in range(2):
        grads = [-_fd_descent(W, x, y, net.spec, 3)]
        R = np.tanh(x @ W.T).tolist()
        for theta in (V, b):
            g = np.empty_like(theta)
            for i in np.ndindex(theta.shape):
                tp, tm = theta.copy(), theta.copy()
                tp[i] += h
                tm[i] -= h
                args_p = (tp, b) if theta is V else (V, tp)
                args_m = (tm, b) if theta is V else (V, tm)
                g[i] = (_ref_ce(*[a.tolist() for a in args_p], R, y)
                        - _ref_ce(*[a.tolist() for a in args_m], R, y)) / (2 * h)
            grads.append(g)
        for buf, g, theta, lam in zip(bufs, grads, (W, V, b), (wd, wd_ro, wd_ro), strict=True):
            buf *= mu
            buf += g + lam * theta
        W, V, b = W - lr * bufs[0], V - lr_ro * bufs[1], b - lr_ro * bufs[2]
        net.train_epoch(x, y, lr, mu, 5, RandomStreams([epoch], "shuffle"), lr_readout=lr_ro,
                        weight_decay=wd, readout_weight_decay=wd_ro)
        for got, want in zip(net.params, (W, V, b), strict=True):
            np.testing.assert_allclose(got[0], want, rtol=1e-7, atol=1e-9)


def test_last_layer_only_baseline():
    x, y = _blobs(4)
    net = ph.PHSICNet([8], seeds=[0], n_classes=3)
    rng = RandomStreams([0], "shuffle")
    for _ in range(5):
        stats = net.train_epoch(x, y, lr=0.1, momentum=0.9, batch_size=10, rng=rng)
    assert stats["objective"].shape == (1, 0)
    assert (net.predict(x) == y).mean() > 0.9


def test_weight_decay_alone_is_pytorch_sgd_scalar_loop():
    """Zero gradients (lr 0 for the readout, a net with no layers' update): the decay alone.

    Reference: torch.optim.SGD's documented step with dampening 0, written per
    scalar: ``d = g + λθ``; ``buf = μ buf + d``; ``θ = θ − lr buf``.
    """
    be = get_backend("numpy", "float64")
    net = ph.PHSICNet([4, 6], seeds=[0, 1], n_classes=3, backend=be)
    lam, lam_ro, lr, lr_ro, mu = 0.1, 0.02, 0.5, 0.3, 0.9
    theta0 = [p.copy() for p in net.params]
    zeros = [np.zeros_like(p) for p in net.params]
    for _ in range(4):
        net._sgd(zeros, lr, lr_ro, mu, lam, lam_ro)
    for i, (got, start) in enumerate(zip(net.params, theta0, strict=True)):
        rate, decay = (lr, lam) if i == 0 else (lr_ro, lam_ro)
        for idx in np.ndindex(start.shape):
            theta, buf = float(start[idx]), 0.0
            for _ in range(4):
                buf = mu * buf + decay * theta
                theta = theta - rate * buf
            assert got[idx] == pytest.approx(theta, rel=1e-12, abs=1e-15)


def _ref_dropout(r, u, p):
    """Inverted dropout with explicit loops: 0 where u < p, else r / (1 − p)."""
    out = np.empty_like(r)
    for idx in np.ndindex(r.shape):
        out[idx] = 0.0 if u[idx] < p else r[idx] / (1.0 - p)
    return out


def test_dropout_feeds_the_next_layer_and_readout_and_matches_reference():
    """One batch step of a two-layer net with dropout, rebuilt from batch_rule and loops.

    Layer 1 learns from the clean input; layer 2 from layer 1's dropped output;
    the readout from layer 2's dropped output; the masks are the stream's next
    draws, layer by layer.
    """
    be = get_backend("numpy", "float64")
    x, y = _blobs(3, n_per=4)
    seeds, p, lr, lr_ro = [5, 6], 0.3, 0.2, 0.1
    net = ph.PHSICNet([8, 6, 4], seeds=seeds, n_classes=3, sigma=2.0, activation="tanh",
                      backend=be)
    params0 = [t.copy() for t in net.params]
    order = RandomStreams(seeds, "shuffle").permutation(len(y))
    u = RandomStreams(seeds, "drop")
    u1, u2 = u.random((12, 6)), u.random((12, 4))
    r = x.astype(np.float64)[order]
    codes = _codes(y[order])
    dW1, _, lp1 = ph.batch_rule(params0[0], r, codes, net.spec)
    r1 = _ref_dropout(lp1.r, u1, p)
    dW2, _, lp2 = ph.batch_rule(params0[1], r1, codes, net.spec)
    r2 = _ref_dropout(lp2.r, u2, p)
    ref = ph.PHSICNet([8, 6, 4], seeds=seeds, n_classes=3, sigma=2.0, activation="tanh",
                      backend=be)
    _, ro_steps = ref._readout_step(r2, y[order])
    want = [params0[0] + lr * dW1, params0[1] + lr * dW2,
            params0[2] + lr_ro * ro_steps[0], params0[3] + lr_ro * ro_steps[1]]
    net.train_epoch(x, y, lr, 0.0, 12, RandomStreams(seeds, "shuffle"), lr_readout=lr_ro,
                    dropout=p, dropout_rng=RandomStreams(seeds, "drop"))
    for got, w in zip(net.params, want, strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-14)
    # Scoring never drops: the forward pass is deterministic and undropped.
    np.testing.assert_array_equal(net.forward(x)[-1], net.forward(x)[-1])


def test_dropout_rate_and_scale():
    net = ph.PHSICNet([3], seeds=[0, 1], n_classes=3)
    r = np.ones((2, 400, 250), dtype=np.float32)
    out = net._dropout(r, 0.2, RandomStreams([0, 1], "drop"))
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.unique(out), [0.0, 1.25], rtol=1e-6)
    assert (out == 0).mean() == pytest.approx(0.2, abs=0.005)
    assert net._dropout(r, 0.0, None) is r


def test_dropout_zero_changes_nothing_and_bad_values_are_refused():
    x, y = _blobs(1)
    nets = [ph.PHSICNet([8, 6], seeds=[0], n_classes=3) for _ in range(2)]
    nets[0].train_epoch(x, y, 0.1, 0.9, 10, RandomStreams([0], "s"))
    nets[1].train_epoch(x, y, 0.1, 0.9, 10, RandomStreams([0], "s"), dropout=0.0,
                        dropout_rng=RandomStreams([0], "d"))
    for a, b in zip(nets[0].params, nets[1].params, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="dropout must be in"):
        nets[0].train_epoch(x, y, 0.1, 0.9, 10, RandomStreams([0], "s"), dropout=1.0,
                            dropout_rng=RandomStreams([0], "d"))
    with pytest.raises(ValueError, match="needs dropout_rng"):
        nets[0].train_epoch(x, y, 0.1, 0.9, 10, RandomStreams([0], "s"), dropout=0.1)
    with pytest.raises(ValueError, match="trials"):
        nets[0].train_epoch(x, y, 0.1, 0.9, 10, RandomStreams([0], "s"), dropout=0.1,
                            dropout_rng=RandomStreams([0, 1], "d"))


def test_online_rule_with_dropout_runs_and_learns():
    x, y = _blobs(2)
    net = ph.PHSICNet([8, 6, 6], seeds=[0], n_classes=3, rule="online")
    for _ in range(3):
        stats = net.train_epoch(x, y, 0.05, 0.0, 1, RandomStreams([0], "s"), lr_readout=0.05,
                                dropout=0.1, dropout_rng=RandomStreams([0], "d"))
    assert np.isfinite(stats["objective"]).all() and np.isfinite(stats["ce"]).all()
