"""The DL / pHSIC three-factor rule math (eventsim.plasticity.hsic).

References are slow explicit loops written from SCIENCE.md §2 and central
finite differences of the layer objectives in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from eventsim.plasticity import hsic as hs

GAMMA = 2.5


def _labels(rng, K, N, kind):
    if kind == "onehot":
        C = 3
        return np.eye(C)[rng.integers(0, C, size=(K, N))], math.sqrt(C)
    return rng.integers(0, 2, size=(K, N, 1)).astype(float), 0.5


def _memory(rng, K, N, dx, n, kind):
    """Random working memory: x (K,N,dx), y, past z rows, and the current layer."""
    x = rng.uniform(0.0, 1.0, size=(K, N, dx))
    y, sigma_y = _labels(rng, K, N, kind)
    m = int(rng.integers(2, 6))
    W = rng.normal(0.0, 1.0 / math.sqrt(m), size=(K, n, m))
    zpre = rng.uniform(0.0, 1.0, size=(K, m))
    z_past = np.tanh(rng.normal(size=(K, N - 1, n)))
    sig = dict(sigma_x=0.2 * math.sqrt(dx), sigma_y=sigma_y, sigma_z=0.5 * math.sqrt(n))
    return x, y, W, zpre, z_past, sig


def _z_mem(W, zpre, z_past):
    z0 = np.tanh(np.einsum("kij,kj->ki", W, zpre))
    return np.concatenate([z0[:, None, :], z_past], axis=1)


def _finite_difference(objective, W, zpre, z_past, h=1e-5):
    """Central differences ``∂L/∂W_ij`` (K, n, m), all trials at once."""
    grad = np.empty_like(W)
    for i in range(W.shape[1]):
        for j in range(W.shape[2]):
            Wp, Wm = W.copy(), W.copy()
            Wp[:, i, j] += h
            Wm[:, i, j] -= h
            grad[:, i, j] = (objective(_z_mem(Wp, zpre, z_past))
                             - objective(_z_mem(Wm, zpre, z_past))) / (2 * h)
    return grad


# ---------------------------------------------------------------- slow references

def _k(a, b, sigma):
    return math.exp(-sum((a[d] - b[d]) ** 2 for d in range(len(a))) / (2.0 * sigma**2))


def _loop_alpha(z, sigma_z):
    N, n = z.shape
    return np.array([[-(2.0 / sigma_z**2) * _k(z[0], z[p], sigma_z) * (z[0, i] - z[p, i])
                      for i in range(n)] for p in range(N)])


def _loop_xi_paper(x, y, z, gamma, sigma_x, sigma_y, sigma_z, centre_alpha):
    """DL Eq. 8 as written in SCIENCE.md, one trial, explicit loops."""
    N, n = z.shape
    kx = [_k(x[0], x[p], sigma_x) for p in range(N)]
    ky = [_k(y[0], y[p], sigma_y) for p in range(N)]
    kx_bar = [kx[p] - sum(kx) / N for p in range(N)]
    ky_bar = [ky[p] - sum(ky) / N for p in range(N)]
    a = _loop_alpha(z, sigma_z)
    xi = np.zeros(n)
    for i in range(n):
        mean_a = sum(a[q, i] for q in range(N)) / N
        for p in range(N):
            a_ip = a[p, i] - mean_a if centre_alpha else a[p, i]
            xi[i] += (kx_bar[p] - gamma * ky_bar[p]) * a_ip
        xi[i] /= (N - 1) ** 2
    return xi


# ---------------------------------------------------------------- tests

def test_beta_matches_definition():
    rng = np.random.default_rng(0)
    z, zpre = np.tanh(rng.normal(size=(2, 3))), rng.uniform(size=(2, 4))
    b = hs.beta(z, zpre)
    assert b.shape == (2, 3, 4)
    for k in range(2):
        for i in range(3):
            for j in range(4):
                assert b[k, i, j] == pytest.approx((1 - z[k, i] ** 2) * zpre[k, j], rel=1e-14)
    np.testing.assert_allclose(hs.beta_post(z), 1 - z**2)


def test_alpha_matches_loop():
    rng = np.random.default_rng(1)
    z = np.tanh(rng.normal(size=(3, 5, 4)))
    a = hs.alpha(z, 0.8)
    assert a.shape == (3, 5, 4)
    for k in range(3):
        np.testing.assert_allclose(a[k], _loop_alpha(z[k], 0.8), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(a[:, 0], 0.0)


@pytest.mark.parametrize("kind", ["onehot", "scalar"])
def test_paper_xi_matches_explicit_eq8(kind):
    rng = np.random.default_rng(2)
    K, N, dx, n = 3, 7, 5, 4
    x, y, _, _, _, sig = _memory(rng, K, N, dx, n, kind)
    z = np.tanh(rng.normal(size=(K, N, n)))
    got = hs.xi(x, y, z, gamma=GAMMA, form="paper", **sig)
    assert got.shape == (K, n)
    for k in range(K):
        ref_centred = _loop_xi_paper(x[k], y[k], z[k], GAMMA, centre_alpha=True, **sig)
        ref_plain = _loop_xi_paper(x[k], y[k], z[k], GAMMA, centre_alpha=False, **sig)
        # Centring α changes nothing because each row-centred k̄ sums to zero.
        np.testing.assert_allclose(ref_plain, ref_centred, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(got[k], ref_centred, rtol=1e-10, atol=1e-15)


def test_alpha_centring_matters_without_row_centring():
    """Control for the test above: with uncentred k the ᾱ/α choice is visible."""
    rng = np.random.default_rng(3)
    z = np.tanh(rng.normal(size=(6, 3)))
    a = _loop_alpha(z, 0.9)
    c = rng.uniform(size=6)
    assert not np.allclose(c @ a, c @ (a - a.mean(axis=0)))


@pytest.mark.parametrize("kind", ["onehot", "scalar"])
@pytest.mark.parametrize("seed", [10, 11, 12])
def test_exact_xi_is_gradient_of_dl_objective(kind, seed):
    rng = np.random.default_rng(seed)
    K = 3
    N, dx, n = int(rng.integers(2, 9)), int(rng.integers(1, 7)), int(rng.integers(1, 5))
    x, y, W, zpre, z_past, sig = _memory(rng, K, N, dx, n, kind)
    z = _z_mem(W, zpre, z_past)
    grad = hs.xi(x, y, z, gamma=GAMMA, form="exact", **sig)[:, :, None] * hs.beta(z[:, 0], zpre)

    def objective(zm):
        return hs.objective_dl(x, y, zm, gamma=GAMMA, **sig)

    fd = _finite_difference(objective, W, zpre, z_past)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max() + 1e-14)


def test_paper_xi_differs_from_exact_but_points_the_same_way():
    """SCIENCE.md §2 reports cosine ≈ 0.96; measured here: ≈ 0.965 (mean over trials)."""
    rng = np.random.default_rng(20)
    K, N, dx, n = 400, 6, 100, 10  # the DL 6.1 sizes, scalar labels, γ = 2
    x, y, _, _, _, sig = _memory(rng, K, N, dx, n, "scalar")
    z = np.tanh(rng.normal(size=(K, N, n)))
    paper = hs.xi(x, y, z, gamma=2.0, form="paper", **sig)
    exact = hs.xi(x, y, z, gamma=2.0, form="exact", **sig)
    cos = (paper * exact).sum(-1) / (np.linalg.norm(paper, axis=-1)
                                     * np.linalg.norm(exact, axis=-1))
    assert 0.9 < cos.mean() < 0.995
    assert np.median(cos) > 0.95
    rel = np.linalg.norm(paper - exact, axis=-1) / np.linalg.norm(exact, axis=-1)
    assert np.median(rel) > 0.05


def test_paper_xi_is_not_the_gradient():
    """The finite-difference check can fail: Eq. 8 as written is not ∂L/∂W."""
    rng = np.random.default_rng(21)
    x, y, W, zpre, z_past, sig = _memory(rng, 2, 6, 4, 3, "onehot")
    z = _z_mem(W, zpre, z_past)
    grad = hs.xi(x, y, z, gamma=GAMMA, form="paper", **sig)[:, :, None] * hs.beta(z[:, 0], zpre)
    fd = _finite_difference(lambda zm: hs.objective_dl(x, y, zm, gamma=GAMMA, **sig),
                            W, zpre, z_past)
    assert not np.allclose(grad, fd, rtol=1e-3, atol=0.0)


@pytest.mark.parametrize("kind", ["onehot", "scalar"])
@pytest.mark.parametrize("seed", [30, 31, 32])
def test_phsic_xi_is_gradient_of_pl_objective(kind, seed):
    rng = np.random.default_rng(seed)
    K = 3
    N, n = int(rng.integers(2, 9)), int(rng.integers(1, 5))
    _, y, W, zpre, z_past, sig = _memory(rng, K, N, 2, n, kind)
    z = _z_mem(W, zpre, z_past)
    kw = dict(gamma=GAMMA, sigma_y=sig["sigma_y"], sigma_z=sig["sigma_z"])
    grad = hs.xi_phsic(y, z, **kw)[:, :, None] * hs.beta(z[:, 0], zpre)
    fd = _finite_difference(lambda zm: hs.objective_pl(y, zm, **kw), W, zpre, z_past)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max() + 1e-14)


def test_objectives_match_explicit_estimators():
    rng = np.random.default_rng(40)
    K, N = 2, 5
    x, y, _, _, _, sig = _memory(rng, K, N, 3, 2, "onehot")
    z = np.tanh(rng.normal(size=(K, N, 2)))
    H = np.eye(N) - np.ones((N, N)) / N

    def gram(a, s):
        return np.array([[_k(a[p], a[q], s) for q in range(N)] for p in range(N)])

    dl = hs.objective_dl(x, y, z, gamma=GAMMA, **sig)
    pl = hs.objective_pl(y, z, gamma=GAMMA, sigma_y=sig["sigma_y"], sigma_z=sig["sigma_z"])
    for k in range(K):
        Kx, Ky, Kz = gram(x[k], sig["sigma_x"]), gram(y[k], sig["sigma_y"]), gram(z[k],
                                                                                 sig["sigma_z"])
        ref_dl = (np.trace(Kx @ H @ Kz @ H) - GAMMA * np.trace(Ky @ H @ Kz @ H)) / (N - 1) ** 2
        ref_pl = ((Kz * Kz).mean() - Kz.mean() ** 2) - GAMMA * ((Ky * Kz).mean()
                                                                - Ky.mean() * Kz.mean())
        assert dl[k] == pytest.approx(ref_dl, rel=1e-12)
        assert pl[k] == pytest.approx(ref_pl, rel=1e-12)


def test_float32_in_float32_out():
    rng = np.random.default_rng(50)
    x, y, W, zpre, z_past, sig = _memory(rng, 2, 6, 5, 4, "onehot")
    z64 = _z_mem(W, zpre, z_past)
    x, y, z, zpre = (a.astype(np.float32) for a in (x, y, z64, zpre))
    sy, sz = sig["sigma_y"], sig["sigma_z"]
    outs = {
        "beta": hs.beta(z[:, 0], zpre),
        "alpha": hs.alpha(z, sz),
        "xi_phsic": hs.xi_phsic(y, z, gamma=GAMMA, sigma_y=sy, sigma_z=sz),
        "objective_dl": hs.objective_dl(x, y, z, gamma=GAMMA, **sig),
        "objective_pl": hs.objective_pl(y, z, gamma=GAMMA, sigma_y=sy, sigma_z=sz),
    }
    for form in hs.XI_FORMS:
        outs[f"coef_{form}"] = hs.xi_coefficients(x, y, gamma=GAMMA, sigma_x=sig["sigma_x"],
                                                  sigma_y=sy, form=form)
        outs[f"xi_{form}"] = hs.xi(x, y, z, gamma=GAMMA, form=form, **sig)
        ref = hs.xi(x.astype(float), y.astype(float), z64, gamma=GAMMA, form=form, **sig)
        np.testing.assert_allclose(outs[f"xi_{form}"], ref, rtol=1e-4,
                                   atol=1e-5 * np.abs(ref).max())
    for name, out in outs.items():
        assert out.dtype == np.float32, name
    # float64 labels with float32 outputs still give float32 ξ.
    assert hs.xi(x, y.astype(float), z, gamma=GAMMA, **sig).dtype == np.float32
    assert hs.xi_phsic(y.astype(float), z, gamma=GAMMA, sigma_y=sy, sigma_z=sz).dtype \
        == np.float32


@pytest.mark.parametrize("N", [0, 1])
def test_fewer_than_two_memory_entries_give_zero(N):
    rng = np.random.default_rng(60)
    K, n = 3, 4
    x = rng.uniform(size=(K, N, 5)).astype(np.float32)
    y = rng.integers(0, 2, size=(K, N, 1)).astype(np.float32)
    z = rng.uniform(-1, 1, size=(K, N, n)).astype(np.float32)
    sig = dict(sigma_x=1.0, sigma_y=0.5, sigma_z=1.0)
    for form in hs.XI_FORMS:
        out = hs.xi(x, y, z, gamma=GAMMA, form=form, **sig)
        assert out.shape == (K, n) and out.dtype == np.float32
        np.testing.assert_array_equal(out, 0.0)
    out = hs.xi_phsic(y, z, gamma=GAMMA, sigma_y=0.5, sigma_z=1.0)
    assert out.shape == (K, n) and out.dtype == np.float32
    np.testing.assert_array_equal(out, 0.0)
    if N == 1:
        for form in hs.XI_FORMS:
            coef = hs.xi_coefficients(x, y, gamma=GAMMA, sigma_x=1.0, sigma_y=0.5, form=form)
            out = hs.xi_from_coefficients(coef, z, 1.0)
            assert out.shape == (K, n) and out.dtype == np.float32
            np.testing.assert_array_equal(out, 0.0)
        np.testing.assert_array_equal(hs.objective_dl(x, y, z, gamma=GAMMA, **sig), 0.0)
        np.testing.assert_array_equal(
            hs.objective_pl(y, z, gamma=GAMMA, sigma_y=0.5, sigma_z=1.0), 0.0)


def test_two_stage_api_matches_composed_call():
    rng = np.random.default_rng(70)
    x, y, _, _, _, sig = _memory(rng, 2, 5, 3, 3, "scalar")
    z = np.tanh(rng.normal(size=(2, 5, 3)))
    for form in hs.XI_FORMS:
        coef = hs.xi_coefficients(x, y, gamma=GAMMA, sigma_x=sig["sigma_x"],
                                  sigma_y=sig["sigma_y"], form=form)
        assert coef.shape == (2, 5)
        np.testing.assert_array_equal(hs.xi_from_coefficients(coef, z, sig["sigma_z"]),
                                      hs.xi(x, y, z, gamma=GAMMA, form=form, **sig))
    coef_y = hs.phsic_label_coefficients(y, gamma=GAMMA, sigma_y=sig["sigma_y"])
    np.testing.assert_array_equal(
        hs.xi_phsic_from_coefficients(coef_y, z, sig["sigma_z"]),
        hs.xi_phsic(y, z, gamma=GAMMA, sigma_y=sig["sigma_y"], sigma_z=sig["sigma_z"]))


def test_unknown_form_raises():
    x = np.zeros((1, 3, 2))
    with pytest.raises(ValueError, match="unknown xi form"):
        hs.xi_coefficients(x, x, gamma=1.0, sigma_x=1.0, sigma_y=1.0, form="phsic")


def test_cupy_matches_numpy():
    cp = pytest.importorskip("cupy")
    try:
        cp.cuda.runtime.getDeviceCount()
    except Exception:  # CUDA driver errors have no common base class
        pytest.skip("no usable GPU")
    rng = np.random.default_rng(80)
    x, y, _, _, _, sig = _memory(rng, 2, 6, 4, 3, "onehot")
    z = np.tanh(rng.normal(size=(2, 6, 3)))
    xd, yd, zd = cp.asarray(x), cp.asarray(y), cp.asarray(z)
    for form in hs.XI_FORMS:
        np.testing.assert_allclose(cp.asnumpy(hs.xi(xd, yd, zd, gamma=GAMMA, form=form, **sig)),
                                   hs.xi(x, y, z, gamma=GAMMA, form=form, **sig), rtol=1e-10)
    kw = dict(gamma=GAMMA, sigma_y=sig["sigma_y"], sigma_z=sig["sigma_z"])
    np.testing.assert_allclose(cp.asnumpy(hs.xi_phsic(yd, zd, **kw)), hs.xi_phsic(y, z, **kw),
                               rtol=1e-10)
