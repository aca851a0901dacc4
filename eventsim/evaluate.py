"""Linear readout of a network's output, fitted on training data and scored on held-out data.

The HSIC layers do not produce one-hot outputs: each class gets a "code word"
(DL Fig. 8). Networks are therefore scored, as in SCIENCE.md §2 "Evaluation",
by a linear readout of the last layer's features:

* features are standardised with the per-trial mean and standard deviation of
  the *training* features (a constant column has standard deviation 0 and is
  mapped to 0, so it is ignored rather than giving NaN);
* a binary task (``n_classes == 2``) uses logistic regression with one logit
  ``a = w·x̂ + b``; a multi-class task uses softmax regression with logits
  ``a = W x̂ + b``;
* the objective, per trial, is the mean cross-entropy plus ``(l2/2)·||W||²``
  (the bias is not penalised);
* it is minimised by full-batch Nesterov-accelerated gradient descent from zero,
  batched over trials, with step ``1/L``, where ``L = c·λ_max(X̂ᵀX̂/S) + l2``
  bounds the curvature (``c = 1/4`` for the logistic, ``1/2`` for the softmax
  loss), for at most a fixed number of steps, each trial stopping once its
  gradient is below a tolerance. The result is deterministic and each trial's
  fit does not depend on the other trials.

All functions work on NumPy and CuPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import array_module
from .data.dataset import label_dim, label_vectors
from .errors import DivergenceError


@dataclass(frozen=True)
class Readout:
    """A fitted linear readout for K trials.

    Attributes:
        mean, scale: training-feature standardisation, shape (K, 1, F).
        weights: shape (K, F, C) with ``C = 1`` (binary) or ``n_classes``.
        bias: shape (K, C).
        n_classes: number of classes.
        loss: the final training objective per trial, shape (K,).
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    n_classes: int
    loss: np.ndarray

    def standardise(self, features):
        """``(features − mean) / scale``, shape (K, S, F)."""
        return (features - self.mean) / self.scale

    def logits(self, features):
        """Readout logits of raw features (K, S, F), shape (K, S, C)."""
        return self.standardise(features) @ self.weights + self.bias[:, None, :]

    def predict(self, features):
        """Predicted class labels, shape (K, S), int64."""
        xp = array_module(features)
        a = self.logits(features)
        if self.n_classes == 2:
            return (a[..., 0] > 0).astype(xp.int64)
        return xp.argmax(a, axis=-1).astype(xp.int64)


def cross_entropy(logits, y, n_classes: int):
    """Per-sample cross-entropy and its gradient with respect to the logits.

    A binary task (one logit ``a``) uses the logistic loss ``log(1+e^a) − y·a``;
    a multi-class task uses ``logsumexp(a) − a_y`` (softmax). Both are computed
    in a numerically stable form.

    Args:
        logits: (K, S, C) with ``C = label_dim(n_classes)``; y: labels (K, S).

    Returns:
        ``(ce (K, S), dce/da (K, S, C))``; the gradient is ``p − t`` with ``p``
        the sigmoid/softmax probabilities and ``t`` the label vector.
    """
    xp = array_module(logits)
    t = label_vectors(y, n_classes, dtype=logits.dtype)
    if n_classes == 2:
        ce = xp.logaddexp(0.0, logits) - t * logits
        p = 0.5 * (1.0 + xp.tanh(0.5 * logits))
    else:
        amax = logits.max(axis=-1, keepdims=True)
        lse = amax + xp.log(xp.exp(logits - amax).sum(axis=-1, keepdims=True))
        ce = lse - (t * logits).sum(axis=-1, keepdims=True)
        p = xp.exp(logits - lse)
    return ce[..., 0], p - t


def readout_objective(weights, bias, features, y, n_classes: int, l2: float):
    """Readout objective and its gradient, for standardised features.

    Computes, per trial, ``J = (1/S) Σ_s CE(a_s, y_s) + (l2/2)||W||²`` with
    logits ``a = x̂ W + b`` and CE from :func:`cross_entropy`.

    Args:
        weights: (K, F, C); bias: (K, C); features: standardised (K, S, F);
        y: integer labels (K, S).

    Returns:
        ``(J (K,), dJ/dW (K, F, C), dJ/db (K, C))``.
    """
    xp = array_module(features)
    s = features.shape[1]
    ce, dce = cross_entropy(features @ weights + bias[:, None, :], y, n_classes)
    err = dce / s
    loss = ce.mean(axis=1) + 0.5 * l2 * (weights * weights).sum(axis=(1, 2))
    grad_w = xp.swapaxes(features, 1, 2) @ err + l2 * weights
    grad_b = err.sum(axis=1)
    return loss, grad_w, grad_b


def _curvature_bound(features, n_classes: int, l2: float):
    """``L = c·λ_max(X̂ᵀX̂/S) + l2`` per trial, shape (K, 1, 1) (see module doc).

    The bias column is orthogonal to the centred features and has curvature 1,
    so λ_max of the augmented Gram matrix is ``max(λ_max(X̂ᵀX̂/S), 1)``. The
    smaller of ``X̂ᵀX̂`` and ``X̂X̂ᵀ`` is decomposed (they share their nonzero
    eigenvalues).
    """
    xp = array_module(features)
    s, f = features.shape[1:]
    xt = xp.swapaxes(features, 1, 2)
    gram = (xt @ features) if f <= s else (features @ xt)
    lam = xp.linalg.eigvalsh(gram / s)[:, -1]
    c = 0.25 if n_classes == 2 else 0.5
    return (c * xp.maximum(lam, 1.0) + l2)[:, None, None]


def fit_readout(features_train, y_train, n_classes: int, *, l2: float = 1e-4,
                steps: int = 500, tol: float = 1e-5) -> Readout:
    """Fit a logistic (binary) or softmax (multi-class) readout per trial.

    Args:
        features_train: (K, S, F) floating features of the training samples.
        y_train: (K, S) integer labels in ``[0, n_classes)``.
        n_classes: number of classes.
        l2: weight of the ``(l2/2)||W||²`` penalty on standardised features.
        steps: maximum number of full-batch Nesterov gradient steps.
        tol: a trial stops (and keeps its weights) once every entry of its
            gradient, taken at the step's look-ahead point, is below ``tol``
            in magnitude, so each trial's fit does not depend on the others.

    Raises:
        DivergenceError: if a feature is NaN or infinite (naming the trials).
    """
    xp = array_module(features_train)
    x = features_train
    bad = ~xp.isfinite(x).all(axis=(1, 2))
    if bool(bad.any()):
        trials = [int(k) for k in np.flatnonzero(np.asarray(bad.tolist()))]
        raise DivergenceError(f"readout features are NaN or infinite in trials {trials}")
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    scale = xp.where(std > 0, std, xp.ones_like(std))
    xs = (x - mean) / scale
    k, _, f = x.shape
    c = label_dim(n_classes)
    step = (1.0 / _curvature_bound(xs, n_classes, l2)).astype(x.dtype)
    w = xp.zeros((k, f, c), dtype=x.dtype)
    b = xp.zeros((k, c), dtype=x.dtype)
    w_prev, b_prev = w, b
    active = xp.ones((k, 1, 1), dtype=bool)
    for i in range(steps):
        momentum = i / (i + 3.0)
        w_look = w + momentum * (w - w_prev)
        b_look = b + momentum * (b - b_prev)
        _, gw, gb = readout_objective(w_look, b_look, xs, y_train, n_classes, l2)
        w_prev, b_prev = w, b
        w = xp.where(active, w_look - step * gw, w)
        b = xp.where(active[:, :, 0], b_look - step[:, :, 0] * gb, b)
        gmax = xp.maximum(xp.abs(gw).max(axis=(1, 2)), xp.abs(gb).max(axis=1))
        active &= (gmax >= tol)[:, None, None]
        if not bool(active.any()):
            break
    loss, _, _ = readout_objective(w, b, xs, y_train, n_classes, l2)
    return Readout(mean=mean, scale=scale, weights=w, bias=b, n_classes=n_classes, loss=loss)


def readout_accuracy(readout: Readout, features, y):
    """Fraction of samples whose predicted class equals ``y``, per trial, shape (K,)."""
    return (readout.predict(features) == y).mean(axis=1)
