"""Synthetic tasks of DL §6.1–6.2, drawn independently per trial.

Trial ``k`` of a K-trial dataset made with ``seed`` is drawn from seed
``seed + k`` through :class:`~eventsim.backend.RandomStreams`, one named stream
per array (``data/<task>/train``, ``data/<task>/test``, ...). So trial ``k``
equals the single-trial dataset made with ``seed + k``, the training set does
not depend on ``test_samples``, and the test set is drawn independently of the
training set from the same distribution.

Inputs are stored as float32; labels are computed from the stored float32
inputs in float64, so they follow their definitions exactly for the data as
stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import RandomStreams
from ..errors import DatasetError
from .dataset import Dataset, register_dataset


def _trial_seeds(trials: int, seed: int) -> list[int]:
    return [int(seed) + k for k in range(int(trials))]


def _check_counts(name: str, **counts: int) -> None:
    for key, value in counts.items():
        if int(value) < 1:
            raise DatasetError(f"dataset {name!r}: {key} must be >= 1, got {value}")


def _uniform_inputs(name, seeds, split, samples, dim, low=-1.0, high=1.0) -> np.ndarray:
    """U(low, high) inputs of shape (K, samples, dim), float32, from stream ``data/name/split``."""
    streams = RandomStreams(seeds, f"data/{name}/{split}")
    return streams.uniform((samples, dim), low, high, dtype=np.float32)


@register_dataset("linear")
def linear(trials: int = 1, seed: int = 0, *, samples: int = 100, test_samples: int = 1000,
           dim: int = 2) -> Dataset:
    """Linearly separable task of DL §6.2: ``x ~ U(−1, 1)^dim``, label ``1[w·x > 0]``.

    ``w ~ N(0, I)`` is drawn per trial and stored in ``meta["w"]``, shape
    (K, dim), float64; the boundary passes through the origin (the DL network
    has no bias). DL Fig. 5B compares a learned weight ratio with ``w[1]/w[0]``.
    """
    _check_counts("linear", trials=trials, samples=samples, test_samples=test_samples, dim=dim)
    seeds = _trial_seeds(trials, seed)
    w = RandomStreams(seeds, "data/linear/w").normal((dim,))
    x_train = _uniform_inputs("linear", seeds, "train", samples, dim)
    x_test = _uniform_inputs("linear", seeds, "test", test_samples, dim)

    def label(x):
        return (np.einsum("ksd,kd->ks", x.astype(np.float64), w) > 0).astype(np.int64)

    return Dataset("linear", x_train, label(x_train), x_test, label(x_test), n_classes=2,
                   meta={"w": w, "seeds": seeds})


@register_dataset("tanh_boundary")
def tanh_boundary(trials: int = 1, seed: int = 0, *, samples: int = 100,
                  test_samples: int = 1000) -> Dataset:
    """Nonlinear task of DL §6.2: ``x ~ U(−1, 1)²``, label ``1[x2 > tanh(3 x1)]``."""
    _check_counts("tanh_boundary", trials=trials, samples=samples, test_samples=test_samples)
    seeds = _trial_seeds(trials, seed)
    x_train = _uniform_inputs("tanh_boundary", seeds, "train", samples, 2)
    x_test = _uniform_inputs("tanh_boundary", seeds, "test", test_samples, 2)

    def label(x):
        x = x.astype(np.float64)
        return (x[..., 1] > np.tanh(3.0 * x[..., 0])).astype(np.int64)

    return Dataset("tanh_boundary", x_train, label(x_train), x_test, label(x_test), n_classes=2,
                   meta={"seeds": seeds})


@dataclass(frozen=True)
class ReservoirSignals:
    """The three signals of the reservoir test (DL §6.1), shape (K, S, dim) each, float32.

    This is not a classification task (``y`` is continuous), so it is not a
    :class:`~eventsim.data.dataset.Dataset`: there is no held-out split and no
    class labels, because the test replays the same samples. ``x`` drives the
    network input, ``y`` is the label vector, and ``z`` is a named signal that
    a clamped layer (``{kind: layer, clamp: z}``) holds as its output.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    seeds: list[int]

    @property
    def trials(self) -> int:
        return self.x.shape[0]

    @property
    def samples(self) -> int:
        return self.x.shape[1]

    @property
    def input_dim(self) -> int:
        return self.x.shape[2]

    @property
    def label_dim(self) -> int:
        return self.y.shape[2]

    @property
    def signals(self) -> dict[str, np.ndarray]:
        """Signals a clamped layer can hold, by name."""
        return {"z": self.z}


@register_dataset("reservoir_test")
def reservoir_test(trials: int = 1, seed: int = 0, *, samples: int = 100, x_dim: int = 100,
                   y_dim: int = 1, z_dim: int = 10) -> ReservoirSignals:
    """Random signals of DL §6.1: X (100-D), Y (1-D), Z (10-D), each ``U(0, 1)``, 100 samples.

    The reservoir learns to output the Eq. 8 third factor ξ computed from these
    fixed signals. Each signal has its own stream (``data/reservoir_test/x`` ...).
    """
    _check_counts("reservoir_test", trials=trials, samples=samples, x_dim=x_dim, y_dim=y_dim,
                  z_dim=z_dim)
    seeds = _trial_seeds(trials, seed)
    x, y, z = (_uniform_inputs("reservoir_test", seeds, part, samples, dim, 0.0, 1.0)
               for part, dim in (("x", x_dim), ("y", y_dim), ("z", z_dim)))
    return ReservoirSignals(x=x, y=y, z=z, seeds=seeds)
