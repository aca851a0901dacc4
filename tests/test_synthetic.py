"""Synthetic tasks (DL §6.1–6.2), the Dataset container, label vectors and the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eventsim.data.dataset import DATASETS, Dataset, label_dim, label_vectors, load_dataset
from eventsim.data.synthetic import reservoir_test
from eventsim.errors import DatasetError

TASKS = ("linear", "tanh_boundary")


def _arrays(ds: Dataset) -> list[np.ndarray]:
    return [ds.x_train, ds.y_train, ds.x_test, ds.y_test]


@pytest.mark.parametrize("name", TASKS)
def test_shapes_dtypes_and_ranges(name):
    ds = load_dataset(name, trials=3, seed=5, samples=40, test_samples=70)
    assert ds.x_train.shape == (3, 40, 2) and ds.x_test.shape == (3, 70, 2)
    assert ds.y_train.shape == (3, 40) and ds.y_test.shape == (3, 70)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert (ds.trials, ds.input_dim, ds.n_classes, ds.label_dim) == (3, 2, 2, 1)
    for x in (ds.x_train, ds.x_test):
        assert x.min() >= -1.0 and x.max() <= 1.0
    assert set(np.unique(ds.y_train)) <= {0, 1}


@pytest.mark.parametrize("name", TASKS)
def test_deterministic_per_seed_and_different_across_seeds(name):
    a = load_dataset(name, trials=2, seed=11)
    b = load_dataset(name, trials=2, seed=11)
    c = load_dataset(name, trials=2, seed=12)
    for u, v in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_test, c.x_test)


@pytest.mark.parametrize("name", TASKS)
def test_trial_k_equals_single_trial_with_seed_plus_k(name):
    batch = load_dataset(name, trials=4, seed=20)
    for k in range(4):
        single = load_dataset(name, trials=1, seed=20 + k)
        for u, v in zip(_arrays(batch), _arrays(single), strict=True):
            np.testing.assert_array_equal(u[k], v[0])
    if name == "linear":
        single = load_dataset(name, trials=1, seed=22)
        np.testing.assert_array_equal(batch.meta["w"][2], single.meta["w"][0])


@pytest.mark.parametrize("name", TASKS)
def test_train_and_test_differ_and_train_ignores_test_size(name):
    ds = load_dataset(name, trials=2, seed=1, samples=100, test_samples=100)
    assert not np.array_equal(ds.x_train, ds.x_test)
    # no test point repeats a training point
    same = (ds.x_train[:, :, None, :] == ds.x_test[:, None, :, :]).all(-1)
    assert not same.any()
    other = load_dataset(name, trials=2, seed=1, samples=100, test_samples=300)
    np.testing.assert_array_equal(ds.x_train, other.x_train)
    np.testing.assert_array_equal(ds.y_train, other.y_train)


def test_linear_labels_follow_definition():
    ds = load_dataset("linear", trials=3, seed=2, samples=60, test_samples=80, dim=3)
    w = ds.meta["w"]
    assert w.shape == (3, 3)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for k in range(3):
            for s in range(x.shape[1]):
                dot = sum(float(w[k, d]) * float(x[k, s, d]) for d in range(3))
                assert y[k, s] == int(dot > 0)


def test_tanh_boundary_labels_follow_definition():
    ds = load_dataset("tanh_boundary", trials=2, seed=4, samples=100, test_samples=200)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for k in range(2):
            for s in range(x.shape[1]):
                x1, x2 = float(x[k, s, 0]), float(x[k, s, 1])
                assert y[k, s] == int(x2 > math.tanh(3.0 * x1))


def test_inputs_are_uniform_and_classes_balanced():
    ds = load_dataset("tanh_boundary", trials=4, seed=0, samples=5000, test_samples=10)
    x = ds.x_train.reshape(-1, 2).astype(np.float64)
    # U(-1, 1): mean 0 (sd of the estimate 0.004), variance 1/3, quartiles at ±0.5
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.02)
    np.testing.assert_allclose(x.var(0), 1.0 / 3.0, atol=0.01)
    np.testing.assert_allclose(np.quantile(x, [0.25, 0.75], axis=0), [[-0.5] * 2, [0.5] * 2],
                               atol=0.02)
    # x2 > tanh(3 x1) covers exactly half of the square (odd symmetry)
    assert abs(ds.y_train.mean() - 0.5) < 0.02
    lin = load_dataset("linear", trials=64, seed=0, samples=200, test_samples=10)
    assert abs(lin.y_train.mean() - 0.5) < 0.05


def test_reservoir_test_signals():
    sig = reservoir_test(trials=3, seed=9)
    assert sig.x.shape == (3, 100, 100) and sig.y.shape == (3, 100, 1)
    assert sig.z.shape == (3, 100, 10)
    assert (sig.trials, sig.samples) == (3, 100)
    for a in (sig.x, sig.y, sig.z):
        assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_allclose(sig.x.mean(), 0.5, atol=0.01)
    assert not np.array_equal(sig.x[..., :10], sig.z)
    single = reservoir_test(trials=1, seed=10)
    for a, b in ((sig.x, single.x), (sig.y, single.y), (sig.z, single.z)):
        np.testing.assert_array_equal(a[1], b[0])
    assert not np.array_equal(reservoir_test(seed=9).x, reservoir_test(seed=8).x)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DatasetError) as err:
        load_dataset("nope")
    for name in (*TASKS, "mnist", "fashion_mnist"):
        assert name in str(err.value)
    assert set(TASKS) <= set(DATASETS)


def test_bad_parameters_raise_dataset_error():
    with pytest.raises(DatasetError, match="accepted parameters"):
        load_dataset("linear", dims=3)
    with pytest.raises(DatasetError, match="trials"):
        load_dataset("tanh_boundary", trials=0)
    with pytest.raises(DatasetError, match="samples"):
        load_dataset("tanh_boundary", samples=0)


def test_label_vectors():
    y = np.array([[0, 1, 1], [1, 0, 0]])
    v = label_vectors(y, 2)
    assert v.shape == (2, 3, 1) and v.dtype == np.float32
    np.testing.assert_array_equal(v[..., 0], y)
    y3 = np.array([[0, 2, 1]])
    np.testing.assert_array_equal(label_vectors(y3, 3)[0], [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert (label_dim(2), label_dim(3), label_dim(10)) == (1, 3, 10)


def test_dataset_accepts_broadcast_views_and_validates():
    x = np.zeros((5, 3), np.float32)
    y = np.zeros(5, np.int64)
    xb, yb = np.broadcast_to(x, (4, 5, 3)), np.broadcast_to(y, (4, 5))
    ds = Dataset("shared", xb, yb, xb, yb, n_classes=10)
    assert np.shares_memory(ds.x_train, x) and ds.trials == 4 and ds.label_dim == 10
    with pytest.raises(DatasetError, match="y_train"):
        Dataset("bad", xb, yb[:, :4], xb, yb, n_classes=10)
    with pytest.raises(DatasetError, match="y_test"):
        Dataset("bad", xb, yb, xb, yb.astype(np.float32), n_classes=10)
    with pytest.raises(DatasetError, match="x_train"):
        Dataset("bad", x, y, xb, yb, n_classes=10)
    with pytest.raises(DatasetError, match="n_classes"):
        Dataset("bad", xb, yb, xb, yb, n_classes=1)
