"""One sample's weight updates kept as rank-1 factors, for a layer whose input is held.

A layer that reads the network input sees the same presynaptic vector ``x`` on
every tick of a sample (inputs are held for the presentation, SCIENCE.md §2).
With the instant eligibility ``e = β`` every delivered update of DL Eq. 8 is
then rank 1 with the same right factor,

    ``g_d = a_d xᵀ``  with  ``a_d = −η m_d ⊙ (1 − z_d²)``  (K, n),

so the ``d``-th delivery of the sample, through SGD momentum
``v_d = μ v_{d−1} + g_d``, ``W_d = W_{d−1} + v_d``, leaves

    ``v_d = μ^d v_0 + b_d xᵀ``,        ``b_d = μ b_{d−1} + a_d``,
    ``W_d = W_0 + C_d v_0 + w_d xᵀ``,  ``C_d = C_{d−1} + μ^d``,  ``w_d = w_{d−1} + b_d``

(without momentum ``W_d = W_0 + w_d xᵀ`` with ``w_d = w_{d−1} + a_d``). The
layer's drive ``W x`` (DL Eq. 6) is therefore

    ``W_d x = W_0 x + C_d (v_0 x) + (x·x) w_d``,

which costs O(K·n) per tick once ``W_0 x`` and ``v_0 x`` are known. The full
``(K, n, m)`` matrices are written once per sample (:meth:`commit`, called when
the next sample is presented) instead of four times per tick. The algebra is
exact; only the floating-point rounding differs from updating ``W`` every tick.
"""

from __future__ import annotations


class FactoredUpdates:
    """Pending updates of a layer's ``W`` (and the synapses' momentum ``v``) in one sample.

    ``layer.W`` and ``velocity`` hold the values at the start of the sample; the
    effective values are :meth:`effective_weights` / :meth:`effective_velocity`.
    """

    def __init__(self, layer, velocity, momentum: float, backend) -> None:
        self.layer = layer
        self.velocity = velocity
        self.momentum = float(momentum)
        self.xp = backend.xp
        self.kernels = backend.kernels
        """The compiled drive and commit (:mod:`eventsim.compiled`) on ``numba``, else None."""
        k, n, _ = layer.W.shape
        self.w = backend.zeros((k, n))
        self.b = backend.zeros((k, n)) if velocity is not None else None
        self.wx = backend.zeros((k, n))
        """``W_0 x`` of the current sample."""
        self.vx = backend.zeros((k, n)) if velocity is not None else None
        """``v_0 x`` of the current sample."""
        self.xx = backend.zeros((k, 1))
        self.scratch = backend.zeros(layer.W.shape)
        """A (K, n, m) buffer for :meth:`commit` (no fresh large arrays per sample)."""
        self.c = 0.0
        self.decay = 1.0
        self.pending = False
        self.fresh = False
        """Whether ``wx`` and ``xx`` belong to the current input."""
        self.vx_fresh = False
        """Whether ``vx`` does (computed at the first update of a sample)."""

    def reset(self) -> None:
        """Forget the pending updates (after a commit, or when W or v are restored)."""
        self.w[...] = 0.0
        if self.b is not None:
            self.b[...] = 0.0
        self.c, self.decay = 0.0, 1.0
        self.pending = False
        self.fresh = self.vx_fresh = False

    def add(self, a) -> None:
        """Record one delivered update ``a xᵀ`` (``a`` (K, n) already holds ``−η``)."""
        if self.b is None:
            self.w += a
        else:
            self._velocity_drive()
            self.b *= self.b.dtype.type(self.momentum)
            self.b += a
            self._count_delivery()
            self.w += self.b
        self.pending = True

    def add_delivered(self, inbox, z, neg_eta) -> None:
        """:meth:`add` of ``a = −η m ⊙ (1 − z²)`` from the inbox ``m`` in one compiled loop
        (``numba`` backend); empties the inbox."""
        momentum = self.b is not None
        if momentum:
            self._velocity_drive()
        dtype = self.w.dtype.type
        self.kernels.factored_add(self.w, self.b if momentum else self.w, inbox, z,
                                  dtype(neg_eta), dtype(self.momentum), momentum)
        if momentum:
            self._count_delivery()
        self.pending = True

    def _count_delivery(self) -> None:
        """``μ^d`` and ``C_d = C_{d−1} + μ^d`` of the module docstring."""
        self.decay *= self.momentum
        self.c += self.decay

    def _velocity_drive(self):
        """``v_0 x``, computed once per sample, when the first update needs it."""
        if not self.vx_fresh:
            x = self.layer.pre.z
            self.xp.matmul(self.velocity, x[..., None], out=self.vx[..., None])
            self.vx_fresh = True
        return self.vx

    def _input_drive(self) -> None:
        """``W_0 x`` and ``x·x``, computed once per sample."""
        if not self.fresh:
            xp, x = self.xp, self.layer.pre.z
            xp.matmul(self.layer.W, x[..., None], out=self.wx[..., None])
            xp.sum(x * x, axis=-1, keepdims=True, out=self.xx)
            self.fresh = True

    def prepare_input(self):
        """``W_0 x``, ``x·x`` and ``v_0 x`` (without momentum ``W_0 x`` stands in for it) for
        a compiled caller that drives and updates the layer itself
        (:func:`eventsim.compiled.slice_factored`)."""
        self._input_drive()
        return self.wx if self.vx is None else self._velocity_drive()

    def drive(self, out) -> None:
        """``W x`` with the pending updates, into ``out`` (K, n)."""
        xp = self.xp
        self._input_drive()
        if self.kernels is not None:
            use_v = self.pending and self.vx is not None
            self.kernels.factored_drive(out, self.xx, self.w, self.wx,
                                        self._velocity_drive() if use_v else self.wx,
                                        self.wx.dtype.type(self.c), use_v)
            return
        xp.multiply(self.xx, self.w, out=out)
        out += self.wx
        if self.pending and self.vx is not None:
            out += self._velocity_drive() * self.vx.dtype.type(self.c)

    def effective_weights(self):
        """``W_0 + C v_0 + w xᵀ`` (a new array; ``layer.W`` itself when nothing is pending)."""
        if not self.pending:
            return self.layer.W
        x = self.layer.pre.z
        out = self.layer.W + self.w[..., :, None] * x[..., None, :]
        if self.velocity is not None:
            out += self.velocity * self.velocity.dtype.type(self.c)
        return out

    def effective_velocity(self):
        """``μ^d v_0 + b xᵀ`` (a new array; the stored velocity when nothing is pending)."""
        if not self.pending or self.velocity is None:
            return self.velocity
        x = self.layer.pre.z
        out = self.velocity * self.velocity.dtype.type(self.decay)
        out += self.b[..., :, None] * x[..., None, :]
        return out

    def get_state(self) -> dict:
        """The pending factors (with the stored ``W`` and ``v`` they make the exact state)."""
        state = {"w": self.w, "c": self.c, "decay": self.decay, "pending": self.pending}
        if self.b is not None:
            state["b"] = self.b
        return state

    def set_state(self, state: dict) -> None:
        xp = self.xp
        self.w[...] = xp.asarray(state["w"])
        if self.b is not None:
            self.b[...] = xp.asarray(state["b"])
        self.c, self.decay = float(state["c"]), float(state["decay"])
        self.pending = bool(state["pending"])
        self.fresh = self.vx_fresh = False

    def commit(self) -> None:
        """Write the pending updates into ``W`` and ``v``; call before the input changes.

        In place and in the operation order of :meth:`effective_weights` and
        :meth:`effective_velocity`, so the stored values equal theirs bit for bit."""
        if self.pending and self.kernels is not None:
            v = self.velocity
            dtype = self.w.dtype.type
            self.kernels.factored_commit(self.layer.W, self.layer.W if v is None else v,
                                         self.w, self.w if self.b is None else self.b,
                                         self.layer.pre.z, dtype(self.c), dtype(self.decay),
                                         v is not None)
        elif self.pending:
            xp, x, tmp, W = self.xp, self.layer.pre.z, self.scratch, self.layer.W
            xp.multiply(self.w[..., :, None], x[..., None, :], out=tmp)
            W += tmp
            if self.velocity is not None:
                v = self.velocity
                xp.multiply(v, v.dtype.type(self.c), out=tmp)
                W += tmp
                v *= v.dtype.type(self.decay)
                xp.multiply(self.b[..., :, None], x[..., None, :], out=tmp)
                v += tmp
        self.reset()
