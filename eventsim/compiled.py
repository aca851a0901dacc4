"""Compiled per-tick kernels of the ``numba`` backend (NumPy arrays, jitted loops).

At MNIST sizes (layers of 10–64 units, K = 4 trials) a tick is a few hundred
tiny NumPy calls, and their dispatch, not the arithmetic, takes the time. The
``numba`` backend keeps the same NumPy arrays and replaces the hottest groups of
calls by one compiled loop each:

* :func:`xi` — the third factor of DL Eq. 8 (and ξ*) from the coefficient row,
  ``ξ_i = scale · Σ_q c_q α_i(q)`` with
  ``α_i(q) = −(2/σ_z²) k(z0, zq) (z0_i − zq_i)``
  (:func:`eventsim.plasticity.hsic.xi_from_coefficients`);
* :func:`layer_step` — the Euler step of DL Eq. 6, ``u ← u + (dt/τ)(W z_pre − u)``,
  ``z = tanh(u) + ζ`` (:meth:`eventsim.populations.layer.Layer.step`);
* :func:`instant_update` — DL Eq. 8 with ``e = β`` and SGD momentum,
  ``ΔW_ij = −η m_i (1 − z_i²) zpre_j``, ``v ← μ v + ΔW``, ``W ← W + v``
  (:meth:`eventsim.plasticity.traces.ThreeFactorSynapses.step`);
* :func:`factored_add`, :func:`factored_drive`, :func:`factored_commit` — the same
  update for a wide first layer kept as rank-1 factors over a sample, the drive
  ``W x`` from them, and their once-per-sample write into ``W`` and ``v``
  (:mod:`eventsim.plasticity.factored`);
* :func:`slice_layer`, :func:`slice_factored` — the same kernels in the per-tick
  order over the remaining ticks of a sample, one call per layer
  (:mod:`eventsim.engine.slicing`).

Each kernel loops over the trials outside and treats every trial alike, so a
trial's numbers do not depend on how many trials are batched. The elementwise
kernels use NumPy's operation order and give its float32 results bit for bit;
the sums (``ξ``, ``W z_pre``) may be reassociated so that they vectorise, and
``exp``/``tanh`` come from the compiler's math library, so runs agree with the
``numpy`` backend to rounding, not bit for bit. How a reassociated sum is grouped
may also depend on where the compiler inlines it, so the sliced kernels round
like each other, not like the per-tick calls of the same kernels. The numba backend is
deterministic on one machine; bit-identical results across machines are the
``numpy`` backend's promise.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

#: For the kernels with sums (ξ, ``W z_pre``): reassociation, so that the sums vectorise,
#: and no signed zeros; no approximate functions and no fused multiply-adds. The purely
#: elementwise kernels are compiled without fast-math and round as NumPy does.
_SUMS = {"reassoc", "nsz"}


@numba.njit(cache=True, fastmath=_SUMS)
def _xi_kernel(coef, z, inv_two_sigma2, gain, out):  # pragma: no cover - compiled
    trials, n_mem, n = z.shape
    d = np.empty(n, dtype=z.dtype)
    for k in range(trials):
        acc = np.zeros(n, dtype=z.dtype)
        for q in range(1, n_mem):  # the q = 0 term has d = 0
            sq = z.dtype.type(0.0)
            for i in range(n):
                d[i] = z[k, 0, i] - z[k, q, i]
                sq += d[i] * d[i]
            w = coef[k, q] * math.exp(-sq * inv_two_sigma2)
            for i in range(n):
                acc[i] += w * d[i]
        for i in range(n):
            out[k, i] = acc[i] * gain


def xi(coef, z_mem, sigma_z: float, scale: float):
    """``scale · Σ_q coef_q α_i(q)`` (DL Eq. 8), shape (K, n); ``z_mem`` (K, N, n) contiguous.

    A new array every call: channels may hold it until a delayed delivery.
    """
    trials, _, n = z_mem.shape
    dtype = z_mem.dtype
    out = np.empty((trials, n), dtype)
    c1, c2 = xi_constants(sigma_z, scale, dtype.type)
    _xi_kernel(coef.astype(dtype, copy=False), z_mem, c1, c2, out)
    return out


@functools.lru_cache(maxsize=64)
def xi_constants(sigma_z: float, scale: float, dtype):
    """``1/(2σ_z²)`` and ``−2 scale/σ_z²`` in the state dtype (a few distinct values per run)."""
    return dtype(0.5 / (sigma_z * sigma_z)), dtype(-2.0 / (sigma_z * sigma_z) * scale)


@numba.njit(cache=True, fastmath=_SUMS)
def layer_step(w, x, u, z, drive, leak, noise, with_drive):  # pragma: no cover - compiled
    """One Euler step of DL Eq. 6 in place: ``drive = W x`` (unless ``with_drive``: then
    ``drive`` holds it already), ``u ← u + leak (drive − u)``, ``z = tanh(u) + noise``.
    ``drive`` ends as ``leak (drive − u)``, as in the NumPy step."""
    trials, n = u.shape
    for k in range(trials):
        for i in range(n):
            if not with_drive:
                s = w.dtype.type(0.0)
                for j in range(x.shape[1]):
                    s += w[k, i, j] * x[k, j]
                drive[k, i] = s
            step = (drive[k, i] - u[k, i]) * leak
            drive[k, i] = step
            u[k, i] += step
            z[k, i] = math.tanh(u[k, i]) + noise[k, i]


@numba.njit(cache=True)
def instant_update(w, velocity, inbox, z, zpre, neg_eta, momentum, use_velocity,
                   apply):  # pragma: no cover - compiled
    """DL Eq. 8 with ``e = β``: ``ΔW = −η (m ⊙ (1 − z²)) zpreᵀ`` through momentum, in place.

    ``v ← μ v + ΔW``, ``W ← W + v`` when ``use_velocity``, else ``W ← W + ΔW``;
    nothing is applied unless ``apply`` (learning off). The inbox ``m`` is emptied.
    """
    trials, n, m = w.shape
    one = z.dtype.type(1.0)
    for k in range(trials):
        for i in range(n):
            a = (one - z[k, i] * z[k, i]) * inbox[k, i]
            inbox[k, i] = 0.0
            if not apply:
                continue
            for j in range(m):
                dw = a * zpre[k, j] * neg_eta
                if use_velocity:
                    v = velocity[k, i, j] * momentum + dw
                    velocity[k, i, j] = v
                    w[k, i, j] += v
                else:
                    w[k, i, j] += dw


@numba.njit(cache=True)
def factored_add(w, b, inbox, z, neg_eta, momentum,
                 use_momentum):  # pragma: no cover - compiled
    """One delivered update of a factored layer, ``a = −η m ⊙ (1 − z²)``, into the pending
    factors (:mod:`eventsim.plasticity.factored`): ``b ← μ b + a``, ``w ← w + b`` with
    momentum, else ``w ← w + a``. The inbox ``m`` is emptied."""
    trials, n = w.shape
    one = z.dtype.type(1.0)
    for k in range(trials):
        for i in range(n):
            a = (one - z[k, i] * z[k, i]) * inbox[k, i]
            inbox[k, i] = 0.0
            a = a * neg_eta
            if use_momentum:
                bi = b[k, i] * momentum + a
                b[k, i] = bi
                w[k, i] += bi
            else:
                w[k, i] += a


@numba.njit(cache=True)
def factored_drive(out, xx, w, wx, vx, c, use_velocity):  # pragma: no cover - compiled
    """``W x = W_0 x + (x·x) w + C (v_0 x)`` of a factored layer (the last term when
    ``use_velocity``), into ``out`` (K, n)."""
    trials, n = out.shape
    for k in range(trials):
        for i in range(n):
            s = xx[k, 0] * w[k, i] + wx[k, i]
            if use_velocity:
                s += vx[k, i] * c
            out[k, i] = s


@numba.njit(cache=True)
def factored_commit(weights, velocity, w, b, x, c, decay,
                    use_velocity):  # pragma: no cover - compiled
    """``W ← W + w xᵀ + C v``, ``v ← μ^d v + b xᵀ`` in one pass over ``W`` and ``v``
    (:meth:`eventsim.plasticity.factored.FactoredUpdates.commit`)."""
    trials, n, m = weights.shape
    for k in range(trials):
        for i in range(n):
            for j in range(m):
                wij = weights[k, i, j] + w[k, i] * x[k, j]
                if use_velocity:
                    v = velocity[k, i, j]
                    wij += v * c
                    velocity[k, i, j] = v * decay + b[k, i] * x[k, j]
                weights[k, i, j] = wij


@numba.njit(cache=True)
def _keep(z, trace, zmem, p, learn):  # pragma: no cover - compiled
    """``trace[p] = z`` and, when ``learn``, ``zmem[p, :, 0] = z`` (the working memory)."""
    trials, n = z.shape
    for k in range(trials):
        for i in range(n):
            trace[p, k, i] = z[k, i]
            if learn:
                zmem[p, k, 0, i] = z[k, i]


@numba.njit(cache=True)
def slice_layer(w, velocity, use_velocity, pre_trace, pre_held, u, z, drive, noise, leak,
                trace, zmem, coef, c1, c2, xi_buf, neg_etas, momentum, learn, p0,
                p1):  # pragma: no cover - compiled
    """Phases ``p0 … p1−1`` of a sample for a layer that updates ``W`` every tick: per tick,
    :func:`layer_step` (DL Eq. 6) on the presynaptic ``pre_trace[p]`` (``pre_trace[0]`` when
    ``pre_held``) and the output into the trace; when ``learn``, also into the working
    memory, then ξ (DL Eq. 8 / ξ*, :func:`_xi_kernel`) and :func:`instant_update`: the
    kernels of the per-tick path, in its order (:mod:`eventsim.engine.slicing`)."""
    for p in range(p0, p1):
        x = pre_trace[0 if pre_held else p]
        layer_step(w, x, u, z, drive, leak, noise[p - p0], False)
        _keep(z, trace, zmem, p, learn)
        if learn:
            _xi_kernel(coef, zmem[p], c1, c2, xi_buf)
            instant_update(w, velocity, xi_buf, z, x, neg_etas[p - p0], momentum,
                           use_velocity, True)


@numba.njit(cache=True)
def slice_factored(w_stored, x, u, z, drive, noise, leak, trace, zmem, coef, c1, c2, xi_buf,
                   neg_etas, xx, w, b, wx, vx, has_velocity, pending, c, decay, momentum,
                   learn, p0, p1):  # pragma: no cover - compiled
    """:func:`slice_layer` for a factored first layer (:mod:`eventsim.plasticity.factored`):
    per tick the drive from the factors (:func:`factored_drive`, with ``C_d v_0 x`` once an
    update is pending), the step and the output kept; when ``learn``, ξ and
    :func:`factored_add`, with ``μ^d`` and ``C_d`` counted in float64 as the array code
    does. Returns ``(c, decay)``."""
    mu = wx.dtype.type(momentum)
    for p in range(p0, p1):
        factored_drive(drive, xx, w, wx, vx, wx.dtype.type(c), pending and has_velocity)
        layer_step(w_stored, x, u, z, drive, leak, noise[p - p0], True)
        _keep(z, trace, zmem, p, learn)
        if not learn:
            continue
        _xi_kernel(coef, zmem[p], c1, c2, xi_buf)
        factored_add(w, b, xi_buf, z, neg_etas[p - p0], mu, has_velocity)
        if has_velocity:
            decay *= momentum
            c += decay
        pending = True
    return c, decay
