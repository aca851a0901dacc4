"""The linear readout: gradient, optimality, accuracy on held-out data, degenerate features."""

from __future__ import annotations

import numpy as np
import pytest

from eventsim.data.dataset import load_dataset
from eventsim.errors import DivergenceError
from eventsim.evaluate import cross_entropy, fit_readout, readout_accuracy, readout_objective


def _problem(rng, k, s, f, n_classes):
    c = 1 if n_classes == 2 else n_classes
    x = rng.normal(size=(k, s, f))
    y = rng.integers(0, n_classes, size=(k, s))
    return rng.normal(size=(k, f, c)), rng.normal(size=(k, c)), x, y


@pytest.mark.parametrize("n_classes", [2, 4])
def test_objective_gradient_matches_finite_differences(n_classes):
    rng = np.random.default_rng(0)
    w, b, x, y = _problem(rng, 2, 7, 3, n_classes)
    l2, eps = 0.3, 1e-6
    _, gw, gb = readout_objective(w, b, x, y, n_classes, l2)
    for param, grad in ((w, gw), (b, gb)):
        num = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            old = param[idx]
            param[idx] = old + eps
            up = readout_objective(w, b, x, y, n_classes, l2)[0][idx[0]]
            param[idx] = old - eps
            down = readout_objective(w, b, x, y, n_classes, l2)[0][idx[0]]
            param[idx] = old
            num[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


def test_cross_entropy_matches_direct_formula():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2, 5, 3)) * 3
    y = rng.integers(0, 3, size=(2, 5))
    ce, _ = cross_entropy(a, y, 3)
    p = np.exp(a) / np.exp(a).sum(-1, keepdims=True)
    np.testing.assert_allclose(ce, -np.log(np.take_along_axis(p, y[..., None], -1))[..., 0])
    a1 = rng.normal(size=(2, 5, 1)) * 3
    y1 = rng.integers(0, 2, size=(2, 5))
    ce1, _ = cross_entropy(a1, y1, 2)
    p1 = 1 / (1 + np.exp(-a1[..., 0]))
    np.testing.assert_allclose(ce1, -(y1 * np.log(p1) + (1 - y1) * np.log(1 - p1)))
    # stable for huge logits
    big, _ = cross_entropy(np.full((1, 1, 1), 1e4), np.zeros((1, 1), np.int64), 2)
    np.testing.assert_allclose(big, 1e4)


def _newton_logistic(x, y, l2, iters=50):
    """Independent reference: Newton's method on one trial's binary objective (bias unpenalised)."""
    s, f = x.shape
    xa = np.hstack([x, np.ones((s, 1))])
    theta = np.zeros(f + 1)
    reg = np.diag([l2] * f + [0.0])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-xa @ theta))
        grad = xa.T @ (p - y) / s + reg @ theta
        hess = (xa.T * (p * (1 - p))) @ xa / s + reg
        theta -= np.linalg.solve(hess, grad)
    return theta[:f], theta[f]


def test_binary_fit_matches_newton_reference():
    rng = np.random.default_rng(2)
    k, s, f = 3, 80, 4
    x = rng.normal(size=(k, s, f)) * [1.0, 3.0, 0.2, 5.0] + [0.0, 1.0, -2.0, 4.0]
    y = (x[..., 0] + 0.3 * x[..., 1] + rng.normal(size=(k, s)) > 0.5).astype(np.int64)
    r = fit_readout(x, y, 2, l2=1e-2, steps=1000, tol=0.0)
    for t in range(k):
        w, b = _newton_logistic((x[t] - r.mean[t]) / r.scale[t], y[t], 1e-2)
        np.testing.assert_allclose(r.weights[t, :, 0], w, atol=1e-6)
        np.testing.assert_allclose(r.bias[t, 0], b, atol=1e-6)
    np.testing.assert_allclose(r.scale[:, 0], x.std(axis=1), rtol=1e-12)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_fit_reaches_the_optimum(n_classes):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 150, 6)) * 4 + 1
    y = rng.integers(0, n_classes, size=(2, 150))
    r = fit_readout(x, y, n_classes, l2=1e-3)
    _, gw, gb = readout_objective(r.weights, r.bias, r.standardise(x), y, n_classes, 1e-3)
    assert np.abs(gw).max() < 1e-4 and np.abs(gb).max() < 1e-4
    assert np.all(r.loss < np.log(n_classes))


def test_separable_with_margin_gives_full_held_out_accuracy():
    rng = np.random.default_rng(4)
    k, f = 4, 5
    w = rng.normal(size=(k, f))
    x = rng.uniform(-1, 1, size=(k, 3000, f)).astype(np.float32)
    m = np.einsum("ksf,kf->ks", x, w) / np.linalg.norm(w, axis=1)[:, None]
    keep = np.abs(m) > 0.1
    idx = np.stack([np.flatnonzero(row)[:1200] for row in keep])
    x = np.take_along_axis(x, idx[..., None], 1)
    y = (np.take_along_axis(m, idx, 1) > 0).astype(np.int64)
    r = fit_readout(x[:, :200], y[:, :200], 2)
    assert r.weights.dtype == np.float32
    np.testing.assert_array_equal(readout_accuracy(r, x[:, 200:], y[:, 200:]), 1.0)


def test_linear_task_is_read_out_almost_perfectly():
    ds = load_dataset("linear", trials=8, seed=3, samples=500, test_samples=2000)
    acc = readout_accuracy(fit_readout(ds.x_train, ds.y_train, 2), ds.x_test, ds.y_test)
    # measured 0.988..0.999 per trial (mean 0.996)
    assert acc.min() > 0.98


def test_multiclass_blobs_are_read_out_near_bayes_accuracy():
    rng = np.random.default_rng(5)
    k, c, f = 4, 4, 10
    centres = rng.normal(size=(k, c, f)) * 2
    y = rng.integers(0, c, size=(k, 1200))
    x = (np.take_along_axis(centres, y[..., None], 1) + rng.normal(size=(k, 1200, f)))
    x = x.astype(np.float32)
    r = fit_readout(x[:, :200], y[:, :200], c)
    acc = readout_accuracy(r, x[:, 200:], y[:, 200:])
    # Bayes-optimal rule for equal priors and unit isotropic noise: the nearest centre
    dist = ((x[:, 200:, None, :] - centres[:, None]) ** 2).sum(-1)
    bayes = (dist.argmin(-1) == y[:, 200:]).mean(1)
    # measured gaps 0..0.013 per trial over 20 trials of 5 seeds
    assert np.all(bayes - acc < 0.03) and acc.min() > 0.95


@pytest.mark.parametrize("n_classes", [2, 5])
def test_random_labels_give_chance(n_classes):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(16, 2200, 20)).astype(np.float32)
    y = rng.integers(0, n_classes, size=(16, 2200))
    r = fit_readout(x[:, :200], y[:, :200], n_classes)
    acc = readout_accuracy(r, x[:, 200:], y[:, 200:])
    # measured mean 0.506 (binary) and 0.198 (5 classes); training accuracy is higher
    assert abs(acc.mean() - 1.0 / n_classes) < 0.03
    assert readout_accuracy(r, x[:, :200], y[:, :200]).mean() > acc.mean() + 0.05


def test_constant_columns_are_ignored_without_nan():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 100, 4)).astype(np.float32)
    y = (x[..., 0] > 0).astype(np.int64)
    extra = np.concatenate([np.full((3, 100, 1), 2.5, np.float32), np.zeros((3, 100, 1),
                                                                             np.float32)], -1)
    rc = fit_readout(np.concatenate([x, extra], -1), y, 2)
    assert np.isfinite(rc.weights).all() and np.isfinite(rc.loss).all()
    np.testing.assert_array_equal(rc.weights[:, 4:], 0.0)
    # same fit as without the constant columns (compared in float64: no rounding noise)
    x64 = x.astype(np.float64)
    r = fit_readout(x64, y, 2)
    rc = fit_readout(np.concatenate([x64, extra], -1), y, 2)
    np.testing.assert_allclose(rc.weights[:, :4], r.weights, rtol=1e-9)
    # all-constant features: the readout predicts the majority class
    y1 = np.zeros((3, 100), np.int64)
    y1[:, :30] = 1
    r1 = fit_readout(extra, y1, 2)
    np.testing.assert_allclose(readout_accuracy(r1, extra, y1), 0.7)


def test_deterministic_and_independent_of_other_trials():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 120, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=(3, 120))
    a = fit_readout(x, y, 3)
    b = fit_readout(x, y, 3)
    np.testing.assert_array_equal(a.weights, b.weights)
    single = fit_readout(x[1:2], y[1:2], 3)
    np.testing.assert_allclose(single.weights[0], a.weights[1], rtol=1e-4, atol=1e-5)


def test_non_finite_features_raise():
    x = np.zeros((3, 10, 2), np.float32)
    x[2, 4, 1] = np.nan
    with pytest.raises(DivergenceError, match=r"\[2\]"):
        fit_readout(x, np.zeros((3, 10), np.int64), 2)
