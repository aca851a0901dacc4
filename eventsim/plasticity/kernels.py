"""Kernels and the HSIC / pHSIC estimators, batched over any leading axes.

Conventions: a signal batch has shape ``(..., N, D)`` (leading axes are usually
trials); a kernel matrix has shape ``(..., N, N)``. All functions work on NumPy
and CuPy arrays alike.

Equations (SCIENCE.md §1):

* Gaussian:  ``k(a, b) = exp(-||a - b||² / (2σ²))`` (the 2σ² form; DL Eq. 4 omits the 2).
* Cosine:    ``k(a, b) = a·b / (|a||b|)``;  linear: ``k(a, b) = a·b``.
* Centred one-hot labels (PL Eq. 35): one-hot minus ``1/n``; with the cosine
  kernel this gives 1 for equal classes and ``-1/(n-1)`` otherwise.
* HSIC (Gretton; DL Eq. 2): ``tr(K_X H K_Y H) / (N-1)²`` with ``H = I - 11ᵀ/N``.
* pHSIC (PL Eq. 34): ``(1/m²)Σ k_a k_b − (1/m²)Σ k_a · (1/m²)Σ k_b``.
"""

from __future__ import annotations

import math

from ..backend import array_module

KERNEL_NAMES = ("gaussian", "cosine", "linear")


def default_sigma(scale: float, dim: int) -> float:
    """Bandwidth ``σ = s·sqrt(D)`` for a signal of dimension ``D`` (SCIENCE.md §1)."""
    return float(scale) * math.sqrt(dim)


def sq_distances(a, b):
    """Squared Euclidean distances ``||a_p − b_q||²``, shape (..., P, Q).

    Computed as ``|a|² + |b|² − 2 a·bᵀ`` (clipped at 0), which needs no
    (..., P, Q, D) intermediate.
    """
    xp = array_module(a)
    sa = xp.sum(a * a, axis=-1)[..., :, None]
    sb = xp.sum(b * b, axis=-1)[..., None, :]
    return xp.maximum(sa + sb - 2.0 * linear_kernel(a, b), 0.0)


def gaussian_kernel(a, b, sigma: float):
    """``exp(-||a_p − b_q||² / (2σ²))``, shape (..., P, Q)."""
    xp = array_module(a)
    return xp.exp(sq_distances(a, b) * (-0.5 / (sigma * sigma)))


def linear_kernel(a, b):
    """``a_p · b_q``, shape (..., P, Q)."""
    xp = array_module(a)
    return xp.matmul(a, xp.swapaxes(b, -1, -2))


def cosine_kernel(a, b, eps: float = 1e-12):
    """``a_p · b_q / (|a_p||b_q|)``, shape (..., P, Q); zero vectors give 0."""
    xp = array_module(a)
    na = xp.sqrt(xp.sum(a * a, axis=-1))
    nb = xp.sqrt(xp.sum(b * b, axis=-1))
    return linear_kernel(a, b) / xp.maximum(na[..., :, None] * nb[..., None, :], eps)


def kernel(name: str, a, b, sigma: float | None = None):
    """Dispatch to the kernel called ``name`` (one of :data:`KERNEL_NAMES`)."""
    if name == "gaussian":
        if sigma is None:
            raise ValueError("the gaussian kernel needs sigma")
        return gaussian_kernel(a, b, sigma)
    if name == "cosine":
        return cosine_kernel(a, b)
    if name == "linear":
        return linear_kernel(a, b)
    raise ValueError(f"unknown kernel {name!r}; expected one of {KERNEL_NAMES}")


def centred_onehot(labels, n_classes: int, dtype=None):
    """One-hot rows minus ``1/n`` (PL Eq. 35), shape (..., n_classes)."""
    xp = array_module(labels)
    eye = xp.eye(n_classes, dtype=dtype or "float32")
    return eye[labels] - 1.0 / n_classes


def centre(K):
    """Doubly centred kernel ``H K H``, shape (..., N, N)."""
    K = K - K.mean(axis=-1, keepdims=True)
    return K - K.mean(axis=-2, keepdims=True)


def hsic(Ka, Kb):
    """Biased HSIC estimator ``tr(K_a H K_b H)/(N−1)²`` (DL Eq. 2), shape (...)."""
    xp = array_module(Ka)
    n = Ka.shape[-1]
    return xp.sum(centre(Ka) * centre(Kb), axis=(-2, -1)) / (n - 1) ** 2


def phsic(Ka, Kb):
    """pHSIC ``mean(K_a ⊙ K_b) − mean(K_a)·mean(K_b)`` (PL Eq. 34), shape (...)."""
    return (Ka * Kb).mean(axis=(-2, -1)) - Ka.mean(axis=(-2, -1)) * Kb.mean(axis=(-2, -1))


def dl_objective(Kx, Ky, Kz, gamma: float):
    """DL layer objective ``HSIC(X, Z) − γ HSIC(Y, Z)`` (DL Eq. 3)."""
    return dl_objective_centred(centre(Kx), centre(Ky), Kz, gamma)


def dl_objective_centred(HKxH, HKyH, Kz, gamma: float):
    """:func:`dl_objective` from the doubly centred ``H K_X H`` and ``H K_Y H``.

    ``tr(K_X H K_Z H) = Σ_pq (H K_X H)_pq (K_Z)_pq`` (H is symmetric and
    idempotent), so K_Z needs no centring and the centred X and Y kernels,
    shared by every layer, are computed once per sample.
    """
    xp = array_module(Kz)
    n = Kz.shape[-1]
    return xp.sum((HKxH - gamma * HKyH) * Kz, axis=(-2, -1)) / (n - 1) ** 2


def pl_objective(Ky, Kz, gamma: float):
    """PL layer objective ``pHSIC(Z, Z) − γ pHSIC(Y, Z)`` (PL Eq. 9)."""
    return phsic(Kz, Kz) - gamma * phsic(Ky, Kz)
