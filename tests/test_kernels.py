"""Kernels and HSIC estimators (eventsim.plasticity.kernels) against explicit loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eventsim.plasticity import kernels as kn


def _rand(rng, *shape):
    return rng.normal(size=shape)


def _loop_kernel(name, a, b, sigma=None):
    P, Q = a.shape[0], b.shape[0]
    out = np.empty((P, Q))
    for p in range(P):
        for q in range(Q):
            dot = sum(a[p, d] * b[q, d] for d in range(a.shape[1]))
            if name == "gaussian":
                d2 = sum((a[p, d] - b[q, d]) ** 2 for d in range(a.shape[1]))
                out[p, q] = math.exp(-d2 / (2.0 * sigma**2))
            elif name == "cosine":
                na = math.sqrt(sum(v * v for v in a[p]))
                nb = math.sqrt(sum(v * v for v in b[q]))
                out[p, q] = dot / (na * nb)
            else:
                out[p, q] = dot
    return out


@pytest.mark.parametrize("name", kn.KERNEL_NAMES)
def test_kernels_match_explicit_loops(name):
    rng = np.random.default_rng(1)
    a, b = _rand(rng, 5, 3), _rand(rng, 4, 3)
    sigma = 0.7
    got = kn.kernel(name, a, b, sigma=sigma)
    np.testing.assert_allclose(got, _loop_kernel(name, a, b, sigma), rtol=1e-12, atol=1e-14)


def test_gaussian_uses_two_sigma_squared():
    a = np.array([[0.0, 0.0]])
    b = np.array([[3.0, 4.0]])
    assert kn.gaussian_kernel(a, b, 2.0)[0, 0] == pytest.approx(math.exp(-25.0 / 8.0))


def test_kernel_dispatch_errors():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match="sigma"):
        kn.kernel("gaussian", a, a)
    with pytest.raises(ValueError, match="unknown kernel"):
        kn.kernel("laplace", a, a)


def test_cosine_kernel_zero_vector_gives_zero():
    a = np.array([[0.0, 0.0], [1.0, 0.0]])
    k = kn.cosine_kernel(a, a)
    assert k[0, 0] == 0.0 and k[0, 1] == 0.0 and k[1, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_centred_onehot_label_kernel(n_classes):
    labels = np.arange(2 * n_classes) % n_classes
    y = kn.centred_onehot(labels, n_classes)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=-1), 0.0, atol=1e-6)
    k = kn.cosine_kernel(y, y)
    same = labels[:, None] == labels[None, :]
    expected = np.where(same, 1.0, -1.0 / (n_classes - 1))
    np.testing.assert_allclose(k, expected, atol=1e-6)


def _hsic_trace(Ka, Kb):
    n = Ka.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(Ka @ H @ Kb @ H) / (n - 1) ** 2


def _phsic_loop(Ka, Kb):
    m = Ka.shape[0]
    s_ab = s_a = s_b = 0.0
    for i in range(m):
        for j in range(m):
            s_ab += Ka[i, j] * Kb[i, j]
            s_a += Ka[i, j]
            s_b += Kb[i, j]
    return s_ab / m**2 - (s_a / m**2) * (s_b / m**2)


def _kernel_pair(rng, n):
    x, z = _rand(rng, n, 4), _rand(rng, n, 3)
    return kn.gaussian_kernel(x, x, 1.5), kn.gaussian_kernel(z, z, 1.2)


def test_hsic_matches_trace_formula():
    rng = np.random.default_rng(2)
    for n in (2, 3, 7):
        Ka, Kb = _kernel_pair(rng, n)
        assert kn.hsic(Ka, Kb) == pytest.approx(_hsic_trace(Ka, Kb), rel=1e-12, abs=1e-15)


def test_centre_is_h_k_h():
    rng = np.random.default_rng(3)
    K, _ = _kernel_pair(rng, 6)
    H = np.eye(6) - np.ones((6, 6)) / 6
    np.testing.assert_allclose(kn.centre(K), H @ K @ H, atol=1e-14)


def test_phsic_matches_double_sum():
    rng = np.random.default_rng(4)
    for n in (1, 2, 5, 8):
        Ka, Kb = _kernel_pair(rng, n)
        assert kn.phsic(Ka, Kb) == pytest.approx(_phsic_loop(Ka, Kb), rel=1e-12, abs=1e-15)


def test_objectives_compose_estimators():
    rng = np.random.default_rng(5)
    Kx, Kz = _kernel_pair(rng, 6)
    Ky, _ = _kernel_pair(rng, 6)
    gamma = 3.0
    assert kn.dl_objective(Kx, Ky, Kz, gamma) == pytest.approx(
        _hsic_trace(Kx, Kz) - gamma * _hsic_trace(Ky, Kz), rel=1e-12)
    assert kn.pl_objective(Ky, Kz, gamma) == pytest.approx(
        _phsic_loop(Kz, Kz) - gamma * _phsic_loop(Ky, Kz), rel=1e-12)


def test_batched_over_trials_equals_per_trial():
    rng = np.random.default_rng(6)
    a, b = _rand(rng, 3, 6, 4), _rand(rng, 3, 6, 4)
    for name in kn.KERNEL_NAMES:
        batched = kn.kernel(name, a, b, sigma=0.9)
        for k in range(3):
            np.testing.assert_allclose(batched[k], kn.kernel(name, a[k], b[k], sigma=0.9),
                                       rtol=1e-13, atol=1e-15)
    Ka, Kb = kn.gaussian_kernel(a, a, 1.1), kn.gaussian_kernel(b, b, 0.8)
    h, p = kn.hsic(Ka, Kb), kn.phsic(Ka, Kb)
    assert h.shape == p.shape == (3,)
    for k in range(3):
        assert h[k] == pytest.approx(_hsic_trace(Ka[k], Kb[k]), rel=1e-12)
        assert p[k] == pytest.approx(_phsic_loop(Ka[k], Kb[k]), rel=1e-12)


def test_float32_in_float32_out():
    rng = np.random.default_rng(7)
    a = _rand(rng, 2, 5, 3).astype(np.float32)
    for name in kn.KERNEL_NAMES:
        K = kn.kernel(name, a, a, sigma=1.0)
        assert K.dtype == np.float32
    K = kn.gaussian_kernel(a, a, 1.0)
    assert kn.hsic(K, K).dtype == np.float32
    assert kn.phsic(K, K).dtype == np.float32


def test_default_sigma():
    assert kn.default_sigma(0.5, 16) == pytest.approx(2.0)
    assert kn.default_sigma(0.2, 784) == pytest.approx(0.2 * 28.0)
    assert isinstance(kn.default_sigma(1, 4), float)
