"""The classification dataset container, label vectors and the dataset registry.

A :class:`Dataset` carries a leading trials axis ``K`` on every array, so that
K independent trials are simulated as one batch. Synthetic tasks draw each
trial's data from its own seed (``seed + k``); shared data sets (MNIST) use
:func:`numpy.broadcast_to` views, so the K copies cost no memory.

Providers register a factory ``factory(trials, seed, **params) -> Dataset`` in
:data:`DATASETS` with :func:`register_dataset`. :func:`load_dataset` imports the
built-in provider modules listed in :data:`PROVIDER_MODULES` on first use, so
this module imports none of them (no import cycle) and a provider only needs to
import this module.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import array_module
from ..errors import DatasetError

PROVIDER_MODULES = ("eventsim.data.synthetic", "eventsim.data.mnist")
"""Modules imported by :func:`load_dataset` so that their factories are registered."""

DATASETS: dict[str, Callable[..., Dataset]] = {}
"""Registered dataset factories, ``name -> factory(trials, seed, **params)``."""


def label_dim(n_classes: int) -> int:
    """Dimension of a label vector: 1 for a binary task, ``n_classes`` otherwise."""
    return 1 if n_classes == 2 else int(n_classes)


def label_vectors(y, n_classes: int, dtype=np.float32):
    """Label vectors of integer labels ``y`` (any shape), shape ``(*y.shape, label_dim)``.

    A binary task (``n_classes == 2``) gives the scalar label itself, 0 or 1, as
    a vector of dimension 1; a multi-class task gives one-hot rows. Works on
    NumPy and CuPy arrays.
    """
    xp = array_module(y)
    if n_classes == 2:
        return y[..., None].astype(dtype)
    return xp.eye(n_classes, dtype=dtype)[y]


@dataclass(frozen=True)
class Dataset:
    """Train and held-out test data for K trials of one classification task.

    Attributes:
        name: registry name of the task.
        x_train: inputs, shape (K, S, D), floating (float32 by default).
        y_train: integer class labels in ``[0, n_classes)``, shape (K, S).
        x_test: held-out inputs, shape (K, S_test, D).
        y_test: held-out labels, shape (K, S_test).
        n_classes: number of classes (2 for a binary task).
        meta: task-specific extras (e.g. the true weight vector of ``linear``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.ndim != 3 or not np.issubdtype(x.dtype, np.floating):
                raise DatasetError(
                    f"dataset {self.name!r}: x_{split} must be a floating array of shape "
                    f"(trials, samples, dim), got {x.dtype} {x.shape}"
                )
            if y.shape != x.shape[:2] or not np.issubdtype(y.dtype, np.integer):
                raise DatasetError(
                    f"dataset {self.name!r}: y_{split} must be an integer array of shape "
                    f"{x.shape[:2]}, got {y.dtype} {y.shape}"
                )
        if self.x_test.shape[0] != self.x_train.shape[0]:
            raise DatasetError(f"dataset {self.name!r}: train and test have different trials")
        if self.x_test.shape[2] != self.x_train.shape[2]:
            raise DatasetError(f"dataset {self.name!r}: train and test have different dims")
        if self.n_classes < 2:
            raise DatasetError(f"dataset {self.name!r}: n_classes must be >= 2")

    @property
    def trials(self) -> int:
        """K, the number of trials."""
        return self.x_train.shape[0]

    @property
    def input_dim(self) -> int:
        """D, the input dimension."""
        return self.x_train.shape[2]

    @property
    def label_dim(self) -> int:
        """Dimension of this task's label vectors (see :func:`label_vectors`)."""
        return label_dim(self.n_classes)


def register_dataset(name: str):
    """Decorator: register ``factory(trials, seed, **params) -> Dataset`` under ``name``."""

    def decorate(factory):
        DATASETS[name] = factory
        return factory

    return decorate


def load_dataset(name: str, trials: int = 1, seed: int = 0, **params) -> Dataset:
    """Build the registered dataset ``name`` for ``trials`` trials.

    Raises:
        DatasetError: for an unknown name (listing the known ones), a parameter
            the factory does not accept, or ``trials < 1``.
    """
    for module in PROVIDER_MODULES:
        importlib.import_module(module)
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise DatasetError(f"unknown dataset {name!r} (hint: one of {known})")
    if int(trials) < 1:
        raise DatasetError(f"dataset {name!r}: trials must be >= 1, got {trials}")
    factory = DATASETS[name]
    signature = inspect.signature(factory)
    try:
        signature.bind(trials=trials, seed=seed, **params)
    except TypeError as exc:
        accepted = ", ".join(p for p in signature.parameters if p not in ("trials", "seed"))
        raise DatasetError(
            f"dataset {name!r}: {exc} (hint: accepted parameters: {accepted})"
        ) from exc
    return factory(trials=int(trials), seed=int(seed), **params)
