"""The three-factor HSIC learning rules as pure array functions (SCIENCE.md §2–3).

Shapes. Every array has a leading trial axis ``K``. A *working-memory* array has
shape ``(K, N, D)``: index 0 is the current sample, indices ``1..N-1`` are the
previous samples taken at the same phase of their presentation (their order is
irrelevant). ``N`` is read from the arrays, so the caller passes only valid
entries; with ``N < 2`` every third factor is zero (the coefficient functions
need ``N ≥ 1``, i.e. the current sample). Label memories are float
arrays of label vectors: one-hot ``(K, N, C)`` or scalar 0/1 as ``(K, N, 1)``.
All kernels are Gaussian in the ``2σ²`` form. Outputs keep the dtype of ``z``.

The layer output is ``z0 = tanh(W zpre0)``; each rule is ``ΔW_ij = −η ξ_i β_ij``
(DL Eq. 8) with the local factor

    β_ij = (1 − z0_i²) · zpre0_j

and a layer-wide third factor ``ξ_i = ∂L/∂z0_i`` built from

    α_i(q) = ∂k(z0, zq)/∂z0_i · 2 = −(2/σ_z²) · k(z0, zq) · (z0_i − zq_i),

where the factor 2 counts row 0 and column 0 of the symmetric ``K_Z``.
Three forms of ``ξ`` are provided:

* ``paper`` — DL Eq. 8 as written:
  ``ξ_i = 1/(N−1)² Σ_q [k̄(x0,xq) − γ k̄(y0,yq)] α_i(q)`` with the row-centred
  ``k̄(a0,aq) = k(a0,aq) − (1/N) Σ_n k(a0,an)``. Centring α as in the paper
  (``ᾱ``) changes nothing because ``Σ_q k̄_q = 0``.
* ``exact`` — the exact gradient of ``HSIC(X,Z) − γ HSIC(Y,Z)`` (DL Eq. 2/3)
  with the past rows of Z held fixed:
  ``ξ*_i = 1/(N−1)² Σ_q [(H K_X H)_0q − γ (H K_Y H)_0q] α_i(q)``.
* ``phsic`` — the exact gradient of ``pHSIC(Z,Z) − γ pHSIC(Y,Z)`` (PL Eq. 34
  estimator, PL Eq. 9 objective) with the past rows of Z held fixed:
  ``ξ_i = 1/N² Σ_q [2 (K_Z,0q − mean K_Z) − γ (K_Y,0q − mean K_Y)] α_i(q)``.

The X/Y coefficient rows change only when a new sample enters memory, so each
form has a two-stage API: coefficients once per sample, ``ξ`` every tick.
"""

from __future__ import annotations

from ..backend import array_module
from .kernels import centre, dl_objective, gaussian_kernel, pl_objective

XI_FORMS = ("paper", "exact")


def beta_post(z):
    """Postsynaptic part of the local factor, ``1 − z²`` (tanh'; DL Eq. 8)."""
    return 1.0 - z * z


def beta(z, zpre):
    """Local factor ``β_ij = (1 − z0_i²) · zpre0_j`` (DL Eq. 8).

    ``z`` is the current output ``(K, n)``, ``zpre`` the current input ``(K, m)``;
    returns ``(K, n, m)``.
    """
    return beta_post(z)[..., :, None] * zpre[..., None, :]


def _kernel_row0(a_mem, sigma: float):
    """Row 0 of the Gaussian kernel, ``k(a0, aq)``, shape (K, N), in O(N·D)."""
    return gaussian_kernel(a_mem[..., :1, :], a_mem, sigma)[..., 0, :]


def alpha(z_mem, sigma_z: float):
    """``α_i(q) = −(2/σ_z²) · k(z0, zq) · (z0_i − zq_i)`` (DL Eq. 8), shape (K, N, n)."""
    kz = _kernel_row0(z_mem, sigma_z)
    diff = z_mem[..., :1, :] - z_mem
    return (-2.0 / (sigma_z * sigma_z)) * kz[..., None] * diff


def _contract_alpha(coef, z_mem, sigma_z: float, scale: float = 1.0):
    """``scale · Σ_q coef_q α_i(q)``, shape (K, n), without forming α.

    With ``d_q = z0 − zq`` and ``w_q = coef_q k(z0, zq) = coef_q exp(−|d_q|²/(2σ_z²))``,
    ``Σ_q coef_q α_i(q) = −(2/σ_z²) Σ_q w_q d_qi``: one difference array, one
    row of squared norms and one (1 × N)·(N × n) product per trial. The squared
    distances are taken from the differences themselves, not from
    ``|z0|² + |zq|² − 2 z0·zq``, which cancels to a few float32 ulps of |z|²
    when z0 and zq are close (the entries of one sample are).
    """
    xp = array_module(z_mem)
    d = z_mem[..., :1, :] - z_mem
    sq = xp.einsum("...qn,...qn->...q", d, d)
    sq *= -0.5 / (sigma_z * sigma_z)
    w = xp.exp(sq, out=sq)
    w *= coef.astype(z_mem.dtype, copy=False)
    wd = xp.matmul(w[..., None, :], d)[..., 0, :]
    wd *= (-2.0 / (sigma_z * sigma_z)) * scale
    return wd


def _zeros_xi(z_mem):
    xp = array_module(z_mem)
    return xp.zeros(z_mem.shape[:-2] + z_mem.shape[-1:], dtype=z_mem.dtype)


def xy_kernel_rows(x_mem, y_mem, *, sigma_x: float, sigma_y: float, form: str = "paper"):
    """The X and Y kernel rows that :func:`xi_coefficients` combines, each (K, N).

    ``paper``: ``k(x0,xq)`` and ``k(y0,yq)``; ``exact``: row 0 of ``H K_X H`` and
    of ``H K_Y H``. They do not depend on γ, so layers that share a memory share them.
    """
    if form == "paper":
        return _kernel_row0(x_mem, sigma_x), _kernel_row0(y_mem, sigma_y)
    if form == "exact":
        return (centre(gaussian_kernel(x_mem, x_mem, sigma_x))[..., 0, :],
                centre(gaussian_kernel(y_mem, y_mem, sigma_y))[..., 0, :])
    raise ValueError(f"unknown xi form {form!r}; expected one of {XI_FORMS}")


def coefficients_from_rows(rows, *, gamma: float, form: str = "paper"):
    """Coefficient row ``c_q`` (K, N) from :func:`xy_kernel_rows` (see :func:`xi_coefficients`)."""
    kx, ky = rows
    c = kx - gamma * ky
    if form == "paper":
        return c - c.mean(axis=-1, keepdims=True)
    return c


def xi_coefficients(x_mem, y_mem, *, gamma: float, sigma_x: float, sigma_y: float,
                    form: str = "paper"):
    """Coefficient row ``c_q`` of the DL third factor, shape (K, N); once per sample.

    ``paper`` (DL Eq. 8): ``c_q = k̄(x0,xq) − γ k̄(y0,yq)``, row-centred, O(N·D).
    ``exact``: ``c_q = (H K_X H)_0q − γ (H K_Y H)_0q``, doubly centred (DL Eq. 2).
    """
    rows = xy_kernel_rows(x_mem, y_mem, sigma_x=sigma_x, sigma_y=sigma_y, form=form)
    return coefficients_from_rows(rows, gamma=gamma, form=form)


def xi_from_coefficients(coef, z_mem, sigma_z: float, contract=None):
    """``ξ_i = 1/(N−1)² Σ_q c_q α_i(q)`` (DL Eq. 8), shape (K, n); every tick.

    ``contract(coef, z_mem, sigma_z, scale)`` computes ``scale · Σ_q c_q α_i(q)``:
    the array version here by default, or the compiled :func:`eventsim.compiled.xi`.
    """
    n_mem = z_mem.shape[-2]
    if n_mem < 2:
        return _zeros_xi(z_mem)
    return (contract or _contract_alpha)(coef, z_mem, sigma_z, xi_scale(n_mem))


def xi_scale(n_mem: int) -> float:
    """The ``1/(N−1)²`` of DL Eq. 8 for a memory of ``n_mem ≥ 2`` filled entries."""
    return 1.0 / (n_mem - 1) ** 2


def xi(x_mem, y_mem, z_mem, *, gamma: float, sigma_x: float, sigma_y: float,
       sigma_z: float, form: str = "paper"):
    """DL third factor ``ξ`` (K, n): ``paper`` = DL Eq. 8, ``exact`` = ``ξ*`` (module doc)."""
    if z_mem.shape[-2] < 2:
        return _zeros_xi(z_mem)
    coef = xi_coefficients(x_mem, y_mem, gamma=gamma, sigma_x=sigma_x, sigma_y=sigma_y,
                           form=form)
    return xi_from_coefficients(coef, z_mem, sigma_z)


def phsic_label_coefficients(y_mem, *, gamma: float, sigma_y: float):
    """Label part of the pHSIC coefficient row, ``−γ (K_Y,0q − mean K_Y)``, shape (K, N).

    From ``∂[−γ pHSIC(Y,Z)]/∂z0`` (PL Eq. 34); it depends only on the labels, so
    compute it once per sample.
    """
    return phsic_coefficients_from_kernel(gaussian_kernel(y_mem, y_mem, sigma_y), gamma=gamma)


def phsic_coefficients_from_kernel(ky, *, gamma: float):
    """:func:`phsic_label_coefficients` from the label kernel matrix ``K_Y`` (K, N, N)."""
    return -gamma * (ky[..., 0, :] - ky.mean(axis=(-2, -1))[..., None])


def xi_phsic_from_coefficients(coef_y, z_mem, sigma_z: float):
    """pHSIC third factor ``ξ_i = ∂[pHSIC(Z,Z) − γ pHSIC(Y,Z)]/∂z0_i``, shape (K, n).

    ``ξ_i = 1/N² Σ_q [2 (K_Z,0q − mean K_Z) + coef_y_q] α_i(q)`` (PL Eq. 34 with
    past Z rows fixed); ``coef_y`` comes from :func:`phsic_label_coefficients`.
    The Z–Z term depends on ``z0``, so this builds the full ``K_Z`` every tick.
    """
    n_mem = z_mem.shape[-2]
    if n_mem < 2:
        return _zeros_xi(z_mem)
    kz = gaussian_kernel(z_mem, z_mem, sigma_z)
    coef = 2.0 * (kz[..., 0, :] - kz.mean(axis=(-2, -1))[..., None]) + coef_y
    return _contract_alpha(coef, z_mem, sigma_z, 1.0 / n_mem**2)


def xi_phsic(y_mem, z_mem, *, gamma: float, sigma_y: float, sigma_z: float):
    """pHSIC third factor (K, n) for ``pHSIC(Z,Z) − γ pHSIC(Y,Z)`` (PL Eq. 34, module doc)."""
    if z_mem.shape[-2] < 2:
        return _zeros_xi(z_mem)
    coef_y = phsic_label_coefficients(y_mem, gamma=gamma, sigma_y=sigma_y)
    return xi_phsic_from_coefficients(coef_y, z_mem, sigma_z)


def objective_dl(x_mem, y_mem, z_mem, *, gamma: float, sigma_x: float, sigma_y: float,
                 sigma_z: float):
    """DL layer objective ``HSIC(X,Z) − γ HSIC(Y,Z)`` over the memory (DL Eq. 2/3), (K,).

    Zero when ``N < 2`` (the estimator's ``1/(N−1)²`` is undefined there).
    """
    if z_mem.shape[-2] < 2:
        return array_module(z_mem).zeros(z_mem.shape[:-2], dtype=z_mem.dtype)
    kx = gaussian_kernel(x_mem, x_mem, sigma_x)
    ky = gaussian_kernel(y_mem, y_mem, sigma_y)
    kz = gaussian_kernel(z_mem, z_mem, sigma_z)
    return dl_objective(kx, ky, kz, gamma)


def objective_pl(y_mem, z_mem, *, gamma: float, sigma_y: float, sigma_z: float):
    """PL layer objective ``pHSIC(Z,Z) − γ pHSIC(Y,Z)`` over the memory (PL Eq. 34), (K,)."""
    ky = gaussian_kernel(y_mem, y_mem, sigma_y)
    kz = gaussian_kernel(z_mem, z_mem, sigma_z)
    return pl_objective(ky, kz, gamma)
