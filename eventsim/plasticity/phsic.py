"""pHSIC three-factor rules of Pogodin & Latham (PL, NeurIPS 2020), batched over trials.

A PL layer is static: ``a = W r_pre``, ``z = f(a)`` (leaky ReLU, slope 0.01, in
PL's MNIST setup; tanh for DL's small tasks), with ``W`` of shape
``(K, n_out, n_in)`` for ``K`` independent trials and a batch ``r_pre`` of shape
``(K, m, n_in)``. No bias. Each layer minimises its own objective (PL Eq. 9,
SCIENCE.md §1)::

    L = pHSIC(Z, Z) − γ pHSIC(Y, Z),    pHSIC(A, B) = mean(K_A ⊙ K_B) − mean(K_A) mean(K_B)

(pHSIC is PL Eq. 34). The label kernel is the cosine kernel on one-hot labels
minus ``1/n`` (PL Eq. 35). No error crosses layers.

**Batch rule** (PL Eq. 10/40). Since ``∂L/∂K^z_ij = (2 k̊(z_i,z_j) − γ k̊(y_i,y_j))/m²``
with the mean-subtracted kernel ``k̊ = k − mean(K)``, the exact gradient is the
three-factor sum::

    ΔW = −∂L/∂W = (1/m²) Σ_ij (γ k̊(y_i,y_j) − 2 k̊(z_i,z_j)) · dk(z_i,z_j)/dW

The third factor is the matrix in brackets; ``dk(z_i,z_j)/dW`` is a sum of
Hebbian terms (post-synaptic factor) × ``r_pre,iᵀ`` and × ``r_pre,jᵀ``. The sum
over pairs is done with matrix products (no pair loop): see :func:`kernel_vjp`
and :func:`weights_vjp`.

**Grouping and divisive normalisation** (PL Eqs. 17–22, 63–66). Reading used
here (it matches the authors' public code, which their MNIST scripts run with
``--center-local-loss-data --group-fc --grouped-var-delta 1``):

* the ``n`` neurons are split into ``c`` contiguous groups of ``c_α = n/c``
  neurons (neuron ``i`` is in group ``i // c_α``);
* each group is centred per sample over its own neurons,
  ``z̃_αn = z_αn − (1/c_α) Σ_n' z_αn'``;
* ``u_α = (δ + Σ_n z̃_αn²) / c_α`` (a smoothed within-group variance);
* ``v_α = u_α^(1−p) − (1/c) Σ_β u_β^(1−p)`` (centred across groups per sample);
  the kernel is computed on ``v`` (``c``-dimensional), not on ``z`` (without
  grouping, ``v = z``);
* ``grouping="divisive"``: the next layer sees ``r_αn = z̃_αn / u_α^p``
  (default ``p = 0.2``, so the kernel sees ``u^0.8``, the authors'
  ``--grouping-power 0.8``);
* ``grouping="grouped"``: the kernel sees the same ``v`` but the next layer
  sees ``z`` unchanged. The exponent here follows the authors' scripts, whose
  grouped-only runs use their default grouping power 0.5 (the group's standard
  deviation): ``p`` defaults to 0.5 (``1 − p = 0.5``);
* the third factor gains a per-group term. With ``g_α = ∂(·)/∂v_α``, the chain
  is ``∂/∂z_αn = g_α · (1−p) u_α^(−p) · 2 z̃_αn / c_α``. Both centrings drop
  out of the chain: within a group because ``Σ_n z̃_αn = 0``; across groups
  because ``∂k(v_i, v_j)/∂v_i`` is, for the Gaussian and cosine kernels, a
  combination of the ``v`` vectors, which are centred, so ``g`` already has
  zero mean over groups. For the online Gaussian rule ``g_α ∝ v_α,t − v_α,s``:
  this is the per-group term of PL's third factor.

**Online two-point rule** (PL Eq. 13 with the online centring of PL Eqs. 59–62),
for the current sample ``t`` and the previous one ``s = t − Δt``::

    b1 = ||v_t − v_s||²
    b2 = γ k(y_t, y_s) − 2 k(v_t, v_s)          (k(v_t, v_s) = exp(−b1/(2σ²)) for the Gaussian)
    b3 ← β b2 + (1 − β) b3                      (running mean of b2; updated before M)
    ΔW = (b2 − b3) · dk(v_t, v_s)/dW

Gaussian: ``dk/dv_t = −dk/dv_s = −k (v_t − v_s)/σ²``, so ``ΔW = M [J_tᵀ Δv r_tᵀ − J_sᵀ Δv r_sᵀ]``
with ``M = −(b2 − b3) exp(−b1/(2σ²))/σ²`` (PL Eq. 62) and ``J`` the chain from
``v`` to ``a`` (``f′`` and, with grouping, the per-group term). For a plain
linear layer this is PL Eq. 13, ``ΔW = M (z_t − z_s)(r_t − r_s)ᵀ``.
Cosine: ``M = b2 − b3`` and the Hebbian terms are ``dk/dv_t = (v̂_s − k v̂_t)/|v_t|``
and ``dk/dv_s = (v̂_t − k v̂_s)/|v_s|``.

Relation to the batch rule: for ``m = 2`` (samples ``s, t``) the diagonal
kernel entries are 1 for both kernels, so the exact batch mean of
``γ K^y − 2 K^z`` is ``b̄ = (b2 + γ − 2)/2`` and the batch rule equals
``½ (b2 − b̄) dk(v_t, v_s)/dW``. Hence, if the running mean ``b3`` equals ``b̄``,
the two-point update is exactly **twice** the ``m = 2`` batch update.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import Backend, RandomStreams, array_module, get_backend
from .kernels import centred_onehot, cosine_kernel, gaussian_kernel, pl_objective

KERNELS = ("gaussian", "cosine")
GROUPINGS = ("none", "grouped", "divisive")
ACTIVATIONS = ("leaky_relu", "tanh")
RULES = ("batch", "online")


@dataclass(frozen=True)
class PHSICSpec:
    """Everything that defines one pHSIC layer's rule (defaults: PL's MNIST setup).

    ``p`` is the divisive-normalisation power; ``None`` means 0.2 for
    ``grouping="divisive"`` and 0.5 for ``grouping="grouped"`` (see module docs).
    """

    kernel: str = "gaussian"
    sigma: float = 5.0
    gamma: float = 2.0
    grouping: str = "none"
    groups: int = 32
    delta: float = 1.0
    p: float | None = None
    activation: str = "leaky_relu"
    slope: float = 0.01

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; expected one of {KERNELS}")
        if self.grouping not in GROUPINGS:
            raise ValueError(f"unknown grouping {self.grouping!r}; expected one of {GROUPINGS}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; expected one of {ACTIVATIONS}"
            )
        if self.grouping != "none" and self.groups < 2:
            raise ValueError("grouping needs at least 2 groups (v is centred across groups)")

    @property
    def power(self) -> float:
        """The divisive power ``p`` in use; the kernel sees ``u^(1−p)``."""
        if self.p is not None:
            return float(self.p)
        return 0.2 if self.grouping == "divisive" else 0.5

    def check_width(self, n: int) -> None:
        """Raise if a layer of ``n`` neurons cannot be split into ``groups`` groups of ≥ 2."""
        if self.grouping != "none" and (n % self.groups or n // self.groups < 2):
            raise ValueError(
                f"a layer of {n} neurons cannot be split into {self.groups} equal groups "
                "of at least 2 neurons"
            )


@dataclass
class LayerPass:
    """One layer's signals for a batch: shapes ``(..., m, n)`` except ``u`` and ``v``.

    ``zc`` (within-group centred z, grouped shape ``(..., m, c, n/c)``) and ``u``
    (``(..., m, c)``) are ``None`` without grouping; ``v`` is the kernel's input
    and ``r`` what the next layer sees.
    """

    a: object
    z: object
    zc: object
    u: object
    v: object
    r: object


def _activate(a, spec: PHSICSpec):
    xp = array_module(a)
    if spec.activation == "tanh":
        return xp.tanh(a)
    return xp.where(a > 0, a, a * spec.slope)


def _activation_slope(a, z, spec: PHSICSpec):
    """``f′(a)``, computed from ``a`` and ``z = f(a)``."""
    xp = array_module(a)
    if spec.activation == "tanh":
        return 1 - z * z
    return xp.where(a > 0, xp.ones_like(a), xp.full_like(a, spec.slope))


def layer_signals(a, spec: PHSICSpec) -> LayerPass:
    """Rates, grouping and divisive normalisation (PL Eqs. 17–22) from pre-activations ``a``."""
    z = _activate(a, spec)
    if spec.grouping == "none":
        return LayerPass(a=a, z=z, zc=None, u=None, v=z, r=z)
    spec.check_width(z.shape[-1])
    size = z.shape[-1] // spec.groups
    zg = z.reshape(*z.shape[:-1], spec.groups, size)
    zc = zg - zg.mean(axis=-1, keepdims=True)
    u = (spec.delta + (zc * zc).sum(axis=-1)) / size
    w = u ** (1 - spec.power)
    v = w - w.mean(axis=-1, keepdims=True)
    if spec.grouping == "divisive":
        r = (zc / (u**spec.power)[..., None]).reshape(z.shape)
    else:
        r = z
    return LayerPass(a=a, z=z, zc=zc, u=u, v=v, r=r)


def layer_forward(W, r_pre, spec: PHSICSpec) -> LayerPass:
    """:func:`layer_signals` of ``a = W r_pre``; ``W (K, n, D)``, ``r_pre (K, m, D)``."""
    xp = array_module(W)
    return layer_signals(xp.matmul(r_pre, xp.swapaxes(W, -1, -2)), spec)


def kernel_matrix(v, spec: PHSICSpec):
    """The activity kernel ``K^z_ij = k(v_i, v_j)``, shape ``(..., m, m)``."""
    if spec.kernel == "gaussian":
        return gaussian_kernel(v, v, spec.sigma)
    return cosine_kernel(v, v)


def third_factor(Ky, Kz, gamma: float):
    """``Φ_ij = (γ k̊(y_i,y_j) − 2 k̊(z_i,z_j)) / m²`` with ``k̊ = K − mean(K)`` (PL Eq. 10/40)."""
    m = Kz.shape[-1]
    ky = Ky - Ky.mean(axis=(-2, -1), keepdims=True)
    kz = Kz - Kz.mean(axis=(-2, -1), keepdims=True)
    return (gamma * ky - 2 * kz) / (m * m)


def kernel_vjp(phi, v, Kz, spec: PHSICSpec):
    """``g_i = Σ_j Φ_ij ∂k(v_i,v_j)/∂v_i + Σ_j Φ_ji ∂k(v_j,v_i)/∂v_i`` for symmetric ``Φ``.

    That is the gradient of ``Σ_ij Φ_ij k(v_i, v_j)`` with respect to ``v_i``.

    * Gaussian: ``∂k_ij/∂v_i = −k_ij (v_i − v_j)/σ²``, so with ``A = Φ ⊙ K``,
      ``g = −(2/σ²) (diag(A 1) − A) v``.
    * Cosine: ``∂k_ij/∂v_i = (v̂_j − k_ij v̂_i)/|v_i|``, so
      ``g_i = (2/|v_i|) ((Φ v̂)_i − (A 1)_i v̂_i)``.
    """
    xp = array_module(v)
    A = phi * Kz
    rows = A.sum(axis=-1, keepdims=True)
    if spec.kernel == "gaussian":
        return (xp.matmul(A, v) - rows * v) * (2.0 / (spec.sigma * spec.sigma))
    norm = xp.maximum(xp.sqrt((v * v).sum(axis=-1, keepdims=True)), 1e-12)
    vhat = v / norm
    return (xp.matmul(phi, vhat) - rows * vhat) * (2.0 / norm)


def weights_vjp(g, lp: LayerPass, r_pre, spec: PHSICSpec):
    """Map ``g = ∂(·)/∂v`` (``(K, m, ·)``) to ``∂(·)/∂W = Σ_i (J_iᵀ g_i) r_pre,iᵀ`` (``(K, n, D)``).

    ``J`` is the chain ``v → z → a``: the per-group term of PL Eqs. 63–66
    ``g_α (1−p) u_α^(−p) 2 z̃_αn / c_α`` when grouping, then ``f′(a)``. ``g``
    must have zero mean over groups (true for every ``g`` built here, see the
    module docs), so the across-group centring of ``v`` adds no term.
    """
    xp = array_module(g)
    if spec.grouping != "none":
        gu = g * (1 - spec.power) * lp.u ** (-spec.power)
        g = (gu[..., None] * lp.zc * (2.0 / lp.zc.shape[-1])).reshape(lp.z.shape)
    ga = g * _activation_slope(lp.a, lp.z, spec)
    return xp.matmul(xp.swapaxes(ga, -1, -2), r_pre)


def batch_rule(W, r_pre, y_code, spec: PHSICSpec):
    """The batch three-factor rule (PL Eq. 10/40) and the layer objective (PL Eq. 9).

    ``W (K, n, D)``, ``r_pre (K, m, D)`` with ``m ≥ 2``, ``y_code (K, m, C)`` the
    centred one-hot labels (PL Eq. 35). Returns ``(ΔW, L, lp)``: ``ΔW = −∂L/∂W``
    (the full gradient through all ``m`` samples, shape ``(K, n, D)``), ``L`` of
    shape ``(K,)`` evaluated before the update, and the :class:`LayerPass`.
    """
    if r_pre.shape[-2] < 2:
        raise ValueError("the pHSIC batch rule needs a batch of at least 2 samples")
    lp = layer_forward(W, r_pre, spec)
    Kz = kernel_matrix(lp.v, spec)
    Ky = cosine_kernel(y_code, y_code)
    phi = third_factor(Ky, Kz, spec.gamma)
    dW = weights_vjp(kernel_vjp(phi, lp.v, Kz, spec), lp, r_pre, spec)
    return dW, pl_objective(Ky, Kz, spec.gamma), lp


@dataclass
class TwoPointResult:
    """One step of :class:`TwoPointRule`; all arrays lead with the trials axis ``K``."""

    dW: object  # (K, n, D) update ΔW (zero on the very first step)
    M: object  # (K,) third factor (PL Eq. 62 for the Gaussian, b2 − b3 for the cosine kernel)
    b2: object  # (K,) γ k(y_t, y_s) − 2 k(v_t, v_s)
    objective: object  # (K,) PL objective of the pair {s, t} (m = 2)
    r: object  # (K, n) what the next layer sees for the current sample


def _pair_matrix(k):
    """``[[1, k], [k, 1]]`` for each entry of ``k`` (shape (K,) → (K, 2, 2))."""
    xp = array_module(k)
    one = xp.ones_like(k)
    return xp.stack([xp.stack([one, k], axis=-1), xp.stack([k, one], axis=-1)], axis=-2)


class TwoPointRule:
    """Online two-point pHSIC rule (PL Eq. 13, Eqs. 59–62) for one layer, batched over trials.

    Holds the running mean ``b3 (K,)`` (starts at 0) and the previous sample
    (pre-synaptic rates, pre-activations and label code). The first step only
    stores the sample and returns ``ΔW = 0``.
    """

    def __init__(self, spec: PHSICSpec, trials: int, n_in: int, n_out: int, n_classes: int,
                 beta: float = 0.1, backend: Backend | None = None) -> None:
        spec.check_width(n_out)
        backend = backend or get_backend()
        self.spec = spec
        self.backend = backend
        self.beta = float(beta)
        self.b3 = backend.zeros((trials,))
        self.r_prev = backend.zeros((trials, n_in))
        self.a_prev = backend.zeros((trials, n_out))
        self.y_prev = backend.zeros((trials, n_classes))
        self.count = 0

    def step(self, W, r_pre, y_code) -> TwoPointResult:
        """Apply Eqs. 59–62 to (previous, current); ``r_pre (K, D)``, ``y_code (K, C)``.

        ``W`` is the current weight; the previous sample's pre-activation is the
        one stored when it was presented.
        """
        xp = array_module(W)
        spec = self.spec
        a_t = xp.matmul(W, r_pre[..., None])[..., 0]
        r2 = xp.stack([self.r_prev, r_pre], axis=1)
        lp = layer_signals(xp.stack([self.a_prev, a_t], axis=1), spec)
        v_s, v_t = lp.v[:, 0], lp.v[:, 1]
        ky = cosine_kernel(self.y_prev[:, None], y_code[:, None])[:, 0, 0]
        dv = v_t - v_s
        if spec.kernel == "gaussian":
            b1 = (dv * dv).sum(axis=-1)
            k = xp.exp(b1 * (-0.5 / (spec.sigma * spec.sigma)))
        else:
            k = cosine_kernel(v_s[:, None], v_t[:, None])[:, 0, 0]
        b2 = spec.gamma * ky - 2 * k
        if self.count:
            self.b3 = self.beta * b2 + (1 - self.beta) * self.b3
            if spec.kernel == "gaussian":
                M = -(b2 - self.b3) * k / (spec.sigma * spec.sigma)
                g = xp.stack([-dv, dv], axis=1) * M[:, None, None]
            else:
                M = b2 - self.b3
                norm = xp.maximum(xp.sqrt((lp.v * lp.v).sum(axis=-1, keepdims=True)), 1e-12)
                vhat = lp.v / norm
                g = (vhat[:, ::-1] - k[:, None, None] * vhat) / norm * M[:, None, None]
            dW = weights_vjp(g, lp, r2, spec)
        else:
            M = xp.zeros_like(b2)
            dW = xp.zeros_like(W)
        objective = pl_objective(_pair_matrix(ky), _pair_matrix(k), spec.gamma)
        self.r_prev, self.a_prev, self.y_prev = r_pre, a_t, y_code
        self.count += 1
        return TwoPointResult(dW=dW, M=M, b2=b2, objective=objective, r=lp.r[:, 1])

    def get_state(self) -> dict:
        """Plain dict of host arrays (for checkpoints)."""
        to_host = self.backend.to_host
        return {"b3": to_host(self.b3), "r_prev": to_host(self.r_prev),
                "a_prev": to_host(self.a_prev), "y_prev": to_host(self.y_prev),
                "count": np.asarray(self.count)}

    def set_state(self, state: dict) -> None:
        asarray = self.backend.asarray
        self.b3 = asarray(state["b3"])
        self.r_prev = asarray(state["r_prev"])
        self.a_prev = asarray(state["a_prev"])
        self.y_prev = asarray(state["y_prev"])
        self.count = int(state["count"])


def _take(data, idx, per_trial: bool):
    """Rows ``idx (K, m)`` of ``data``: ``(N, ...)`` shared by all trials, or ``(K, N, ...)``."""
    if not per_trial:
        return data[idx]
    xp = array_module(data)
    expand = idx.reshape(idx.shape + (1,) * (data.ndim - 2))
    return xp.take_along_axis(data, expand, axis=1)


class PHSICNet:
    """PL's static feed-forward net trained layer-wise by pHSIC, batched over ``K`` trials.

    ``sizes = [n_in, n_1, ..., n_L]``: ``L`` pHSIC layers (no bias); with
    ``readout=True`` a linear softmax readout ``n_L → n_classes`` (with bias) is
    trained by cross-entropy on the last layer's output, as in PL ("final layer
    trained by cross-entropy"); ``sizes = [n_in]`` gives the "last layer only"
    baseline. ``rule="batch"`` uses :func:`batch_rule` on minibatches;
    ``rule="online"`` presents one sample at a time and uses :class:`TwoPointRule`
    on consecutive samples. Weights start ``U(−1/√n_in, 1/√n_in)`` per trial from
    ``RandomStreams(seeds, "phsic.layer<l>")`` (PyTorch's ``nn.Linear`` default).
    """

    def __init__(self, sizes, seeds, n_classes: int = 10, *, kernel: str = "gaussian",
                 grouping: str = "none", sigma: float = 5.0, gamma: float = 2.0,
                 groups: int = 32, delta: float = 1.0, p: float | None = None,
                 activation: str = "leaky_relu", slope: float = 0.01, readout: bool = True,
                 rule: str = "batch", beta: float = 0.1, backend: Backend | None = None) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
        self.spec = PHSICSpec(kernel=kernel, sigma=sigma, gamma=gamma, grouping=grouping,
                              groups=groups, delta=delta, p=p, activation=activation, slope=slope)
        self.sizes = [int(s) for s in sizes]
        for n in self.sizes[1:]:
            self.spec.check_width(n)
        self.backend = backend or get_backend()
        self.n_classes = int(n_classes)
        self.rule = rule
        self.seeds = [int(s) for s in seeds]
        be = self.backend
        self.weights = []
        for layer, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            bound = 1.0 / np.sqrt(n_in)
            init = RandomStreams(self.seeds, f"phsic.layer{layer}").uniform(
                (n_out, n_in), -bound, bound, dtype=be.dtype)
            self.weights.append(be.asarray(init))
        self.readout = None
        if readout:
            bound = 1.0 / np.sqrt(self.sizes[-1])
            streams = RandomStreams(self.seeds, "phsic.readout")
            V = streams.uniform((self.n_classes, self.sizes[-1]), -bound, bound, dtype=be.dtype)
            b = streams.uniform((self.n_classes,), -bound, bound, dtype=be.dtype)
            self.readout = [be.asarray(V), be.asarray(b)]
        self.momenta = [be.xp.zeros_like(w) for w in self.params]
        self.two_point = []
        if rule == "online":
            self.two_point = [
                TwoPointRule(self.spec, self.trials, n_in, n_out, self.n_classes, beta, be)
                for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:], strict=True)
            ]

    @property
    def trials(self) -> int:
        return len(self.seeds)

    @property
    def params(self) -> list:
        """Layer weights, then the readout's ``[V, b]`` if any (the order of ``momenta``)."""
        return self.weights + (self.readout or [])

    def forward(self, x) -> list:
        """Outputs ``r`` of all pHSIC layers, each ``(K, N, n_l)``; ``x`` is (N, D) or (K, N, D)."""
        r = self.backend.asarray(x)
        outs = []
        for W in self.weights:
            r = layer_forward(W, r, self.spec).r
            outs.append(r)
        return outs

    def logits(self, x):
        """Readout logits ``(K, N, n_classes)``."""
        if self.readout is None:
            raise ValueError("this network has no readout (readout=False)")
        r = self.forward(x)[-1] if self.weights else self.backend.asarray(x)
        V, b = self.readout
        return self.backend.xp.matmul(r, self.backend.xp.swapaxes(V, -1, -2)) + b[:, None, :]

    def predict(self, x):
        """Predicted classes ``(K, N)`` from the readout."""
        return self.logits(x).argmax(axis=-1)

    def objectives(self, x, y):
        """PL objective (PL Eq. 9) of every layer on all of ``(x, y)`` as one batch, ``(K, L)``."""
        xp = self.backend.xp
        y_code = self._codes(xp.asarray(y))
        Ky = cosine_kernel(y_code, y_code)
        r = self.backend.asarray(x)
        out = []
        for W in self.weights:
            lp = layer_forward(W, r, self.spec)
            out.append(pl_objective(Ky, kernel_matrix(lp.v, self.spec), self.spec.gamma))
            r = lp.r
        if not out:
            return xp.zeros((self.trials, 0), dtype=self.backend.dtype)
        return xp.stack(out, axis=-1)

    def _codes(self, labels):
        code = centred_onehot(labels, self.n_classes, dtype=self.backend.dtype)
        if code.ndim == 2:
            code = self.backend.xp.broadcast_to(code, (self.trials,) + code.shape)
        return code

    def _readout_step(self, r, labels):
        """Mean cross-entropy ``(K,)`` of the readout on ``r (K, m, n)``, ``[−∂CE/∂V, −∂CE/∂b]``."""
        xp = self.backend.xp
        V, b = self.readout
        logits = xp.matmul(r, xp.swapaxes(V, -1, -2)) + b[:, None, :]
        logits = logits - logits.max(axis=-1, keepdims=True)
        logp = logits - xp.log(xp.exp(logits).sum(axis=-1, keepdims=True))
        onehot = xp.eye(self.n_classes, dtype=self.backend.dtype)[labels]
        ce = -(onehot * logp).sum(axis=-1).mean(axis=-1)
        d = (onehot - xp.exp(logp)) / r.shape[-2]
        return ce, [xp.matmul(xp.swapaxes(d, -1, -2), r), d.sum(axis=-2)]

    def _sgd(self, steps, lr: float, lr_readout: float, momentum: float,
             weight_decay: float = 0.0, readout_weight_decay: float = 0.0) -> None:
        """PyTorch's momentum SGD (``torch.optim.SGD``, no dampening, no Nesterov).

        On the gradient ``g = −step + λ θ`` (``λ`` the weight decay, an L2 penalty
        ``λ|θ|²/2`` added to the loss; the readout's bias decays too, as in
        PyTorch)::

            buf ← μ buf + g;    θ ← θ − lr buf

        ``lr`` and ``weight_decay`` apply to the pHSIC layers, ``lr_readout`` and
        ``readout_weight_decay`` to the readout's ``V`` and ``b``.
        """
        n_w = len(self.weights)
        for i, (theta, buf, step) in enumerate(zip(self.params, self.momenta, steps, strict=True)):
            decay = weight_decay if i < n_w else readout_weight_decay
            buf *= momentum
            buf -= step
            if decay:
                buf += decay * theta
            theta -= (lr if i < n_w else lr_readout) * buf

    def _dropout(self, r, p: float, rng: RandomStreams | None):
        """Inverted dropout: ``r ⊙ [u ≥ p] / (1 − p)``, ``u ~ U[0, 1)`` per entry and trial."""
        if not p:
            return r
        keep = self.backend.asarray(rng.random(r.shape[1:]) >= p)
        return r * keep * (1.0 / (1.0 - p))

    def train_epoch(self, x, y, lr: float, momentum: float, batch_size: int,
                    rng: RandomStreams, lr_readout: float | None = None, *,
                    weight_decay: float = 0.0, readout_weight_decay: float = 0.0,
                    dropout: float = 0.0, dropout_rng: RandomStreams | None = None) -> dict:
        """One pass over ``(x, y)`` in a per-trial random order drawn from ``rng``.

        ``x`` is ``(N, D)`` (shared by all trials) or ``(K, N, D)``; ``y`` is
        ``(N,)`` or ``(K, N)`` integer labels. ``rule="batch"``: minibatches of
        ``batch_size ≥ 2`` and a last, smaller one with the remainder, as PL's
        data loader makes them (``drop_last=False``); a lone remainder sample is
        dropped, since the batch rule needs two.
        ``rule="online"``: ``batch_size`` must be 1; each step presents one new
        sample and the two-point rule pairs it with the previous one (also across
        epochs). Every layer and the readout see the outputs computed before
        this step's update. ``lr`` is the pHSIC layers' rate, ``lr_readout``
        the readout's (default ``lr``); ``weight_decay`` and
        ``readout_weight_decay`` are the L2 terms of :meth:`_sgd`. ``dropout = p``
        (PL's ``nn.Dropout`` after each layer's divisive normalisation) zeroes
        each entry of every layer's output ``r`` with probability ``p`` and
        scales the kept ones by ``1/(1−p)``, in training only: the next layer's
        rule and the readout see ``r ⊙ mask/(1−p)``, while each layer's own
        objective uses its undropped signals. The masks come from
        ``dropout_rng`` (required when ``p > 0``), one ``U[0, 1)`` draw per
        entry, dropped where ``< p``. Returns host arrays: ``"objective"``
        ``(K, L)`` (mean per-update layer objective; for ``online`` the pair's)
        and ``"ce"`` ``(K,)`` (mean readout cross-entropy; NaN without readout).
        """
        be, xp = self.backend, self.backend.xp
        if rng.trials != self.trials:
            raise ValueError(f"rng has {rng.trials} trials but the network has {self.trials}")
        online = self.rule == "online"
        if online and batch_size != 1:
            raise ValueError("rule='online' presents one sample per step: use batch_size=1")
        if not online and batch_size < 2:
            raise ValueError("the pHSIC batch rule needs batch_size >= 2")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if dropout and dropout_rng is None:
            raise ValueError("dropout > 0 needs dropout_rng (a RandomStreams)")
        if dropout and dropout_rng.trials != self.trials:
            raise ValueError(f"dropout_rng has {dropout_rng.trials} trials but the network "
                             f"has {self.trials}")
        lr_readout = lr if lr_readout is None else lr_readout
        x = be.asarray(x)
        y = xp.asarray(y)
        n = x.shape[-2]
        order = xp.asarray(rng.permutation(n))
        n_steps = n // batch_size
        if not online and n % batch_size >= 2:
            n_steps += 1
        if n_steps == 0:
            raise ValueError(f"{n} samples cannot fill one batch of {batch_size}")
        obj_sum = xp.zeros((self.trials, len(self.weights)), dtype=be.dtype)
        ce_sum = xp.zeros((self.trials,), dtype=be.dtype)
        for step in range(n_steps):
            idx = order[:, step * batch_size:(step + 1) * batch_size]
            r = _take(x, idx, x.ndim == 3)
            labels = _take(y, idx, y.ndim == 2)
            codes = self._codes(labels)
            steps, objs = [], []
            if online:
                r, codes = r[:, 0], codes[:, 0]
                for W, rule in zip(self.weights, self.two_point, strict=True):
                    res = rule.step(W, r, codes)
                    steps.append(res.dW)
                    objs.append(res.objective)
                    r = self._dropout(res.r, dropout, dropout_rng)
                r = r[:, None]
            else:
                for W in self.weights:
                    dW, obj, lp = batch_rule(W, r, codes, self.spec)
                    steps.append(dW)
                    objs.append(obj)
                    r = self._dropout(lp.r, dropout, dropout_rng)
            if self.readout is not None:
                ce, readout_steps = self._readout_step(r, labels)
                steps += readout_steps
                ce_sum += ce
            self._sgd(steps, lr, lr_readout, momentum, weight_decay, readout_weight_decay)
            if objs:
                obj_sum += xp.stack(objs, axis=-1)
        ce = be.to_host(ce_sum).astype(np.float64) / n_steps
        if self.readout is None:
            ce[:] = np.nan
        return {"objective": be.to_host(obj_sum).astype(np.float64) / n_steps, "ce": ce}

    def get_state(self) -> dict:
        """Weights, momenta and two-point states as host arrays (for checkpoints)."""
        def copy(t):  # training updates parameters in place: never share them
            return np.array(self.backend.to_host(t), copy=True)

        return {"params": [copy(t) for t in self.params],
                "momenta": [copy(t) for t in self.momenta],
                "two_point": [rule.get_state() for rule in self.two_point]}

    def set_state(self, state: dict) -> None:
        xp, dtype = self.backend.xp, self.backend.dtype
        n_w = len(self.weights)
        params = [xp.array(t, dtype=dtype, copy=True) for t in state["params"]]
        self.weights = params[:n_w]
        if self.readout is not None:
            self.readout = params[n_w:]
        self.momenta = [xp.array(t, dtype=dtype, copy=True) for t in state["momenta"]]
        for rule, s in zip(self.two_point, state["two_point"], strict=True):
            rule.set_state(s)
