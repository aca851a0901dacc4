"""Backpropagation baseline: an MLP with a DL network's architecture, trained end to end.

Architecture (``sizes = [D, n_1, ..., n_L]``), batched over K trials:

* layers ``z_l = f(z_{l−1} W_lᵀ)`` with ``W_l`` of shape (K, n_l, n_{l−1}) and no
  bias, as in the DL network (DL Eq. 6 at steady state, without noise);
* ``f = tanh`` (DL) or leaky ReLU with slope 0.01 (the PL 3×1024 network);
* a trainable linear head with bias, ``a = z_L Vᵀ + c``, maps the last layer
  to ``label_dim(n_classes)`` logits: one logit with the logistic loss for a
  binary task, ``n_classes`` logits with the softmax cross-entropy otherwise.
  The head is always present, so that the last layer keeps exactly the
  architecture (and the bounded tanh range) of the HSIC network it is compared
  with; for the PL network, ``sizes = [784, 1024, 1024, 1024]`` plus the head
  is PL's linear output layer.

Initialisation: ``W_l ~ N(0, g²/n_{l−1})`` with gain ``g = 1`` (tanh) or
``√2`` (leaky ReLU), ``V ~ N(0, 1/n_L)``, ``c = 0``; each from the per-trial
stream ``backprop/layer<l>`` (``l = 1..L``) or ``backprop/head``. Minibatches
come from per-trial permutations (stream ``backprop/shuffle``), so trial k of a
batched run depends only on its own seed.

Training minimises the mean cross-entropy by minibatch SGD with momentum
(``v ← μ v + g``, ``θ ← θ − η v``). The network is then scored like the HSIC
networks (SCIENCE.md §2 "Evaluation"): :func:`eventsim.evaluate.fit_readout` on
the last layer's outputs for the training set, accuracy on the test set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..backend import Backend, RandomStreams, get_backend
from ..data.dataset import Dataset, label_dim
from ..errors import ConfigError, DivergenceError
from ..evaluate import cross_entropy, fit_readout, readout_accuracy

ACTIVATIONS = ("tanh", "leaky_relu")
LEAKY_SLOPE = 0.01


def learning_rate(lr: float | Mapping[int, float], epoch: int) -> float:
    """The learning rate of 0-based ``epoch``.

    ``lr`` is a constant or a step schedule ``{first_epoch: rate}`` that must
    contain epoch 0, e.g. DL's MNIST ``{0: 5e-2, 20: 5e-3, 50: 1e-3}``.
    """
    if not isinstance(lr, Mapping):
        return float(lr)
    if 0 not in lr:
        raise ConfigError("a learning-rate schedule must give the rate of epoch 0", field="lr")
    return float(lr[max(e for e in lr if e <= epoch)])


class MLP:
    """A bias-free tanh / leaky-ReLU MLP plus a linear head, for K trials at once.

    Attributes:
        params: ``[W_1, ..., W_L, V, c]`` on the backend device; :meth:`train`
            updates them in place.
    """

    def __init__(self, sizes: Sequence[int], n_classes: int, seeds: Sequence[int], *,
                 activation: str = "tanh", backend: Backend | None = None) -> None:
        """Initialise the weights per trial (see the module doc).

        Args:
            sizes: layer widths ``[D, n_1, ..., n_L]``, ``L >= 1``.
            n_classes: number of classes (sets the head's output dimension).
            seeds: one seed per trial.
            activation: ``"tanh"`` or ``"leaky_relu"``.
            backend: array backend and dtype (default :func:`get_backend`).
        """
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise ConfigError(f"sizes must list >= 2 positive widths, got {list(sizes)}",
                              field="sizes")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}", field="activation",
                              hint=f"one of {', '.join(ACTIVATIONS)}")
        self.sizes = [int(n) for n in sizes]
        self.n_classes = int(n_classes)
        self.seeds = [int(s) for s in seeds]
        self.activation = activation
        self.backend = backend or get_backend()
        gain = 1.0 if activation == "tanh" else math.sqrt(2.0)
        dtype = self.backend.dtype
        params = []
        for layer in range(1, len(self.sizes)):
            n_in, n_out = self.sizes[layer - 1], self.sizes[layer]
            w = RandomStreams(self.seeds, f"backprop/layer{layer}").normal(
                (n_out, n_in), std=gain / math.sqrt(n_in), dtype=dtype)
            params.append(self.backend.asarray(w))
        n_last, c = self.sizes[-1], label_dim(self.n_classes)
        head = RandomStreams(self.seeds, "backprop/head").normal(
            (c, n_last), std=1.0 / math.sqrt(n_last), dtype=dtype)
        params.append(self.backend.asarray(head))
        params.append(self.backend.zeros((len(self.seeds), c)))
        self.params = params

    @property
    def trials(self) -> int:
        return len(self.seeds)

    @property
    def layer_weights(self) -> list:
        """``[W_1, ..., W_L]``, each (K, n_l, n_{l−1})."""
        return self.params[:-2]

    def _f(self, u):
        if self.activation == "tanh":
            return self.backend.xp.tanh(u)
        return self.backend.xp.where(u > 0, u, LEAKY_SLOPE * u)

    def _df(self, z):
        """``f'(u)`` expressed through ``z = f(u)``."""
        if self.activation == "tanh":
            return 1.0 - z * z
        return self.backend.xp.where(z > 0, 1.0, LEAKY_SLOPE).astype(z.dtype)

    def forward(self, x) -> list:
        """Layer outputs ``[z_1, ..., z_L]`` for inputs ``x`` of shape (K, B, D)."""
        xp = self.backend.xp
        z = x
        out = []
        for w in self.layer_weights:
            z = self._f(z @ xp.swapaxes(w, 1, 2))
            out.append(z)
        return out

    def logits(self, z_last):
        """Head logits ``z_L Vᵀ + c``, shape (K, B, label_dim)."""
        head_w, head_b = self.params[-2:]
        return z_last @ self.backend.xp.swapaxes(head_w, 1, 2) + head_b[:, None, :]

    def loss_and_gradients(self, x, y):
        """Mean cross-entropy per trial (K,) and its gradients, aligned with :attr:`params`.

        Backpropagation: with ``δ_a = (p − t)/B`` at the logits,
        ``∂/∂V = δ_aᵀ z_L``, ``∂/∂c = Σ_b δ_a``, ``δ_L = δ_a V``, and for each
        layer ``δu_l = δ_l ⊙ f'(u_l)``, ``∂/∂W_l = δu_lᵀ z_{l−1}``,
        ``δ_{l−1} = δu_l W_l``.
        """
        xp = self.backend.xp
        zs = [x, *self.forward(x)]
        ce, dce = cross_entropy(self.logits(zs[-1]), y, self.n_classes)
        delta = dce / x.shape[1]
        head_w = self.params[-2]
        grads = [xp.swapaxes(delta, 1, 2) @ zs[-1], delta.sum(axis=1)]
        dz = delta @ head_w
        for layer in range(len(self.layer_weights), 0, -1):
            du = dz * self._df(zs[layer])
            grads.insert(0, xp.swapaxes(du, 1, 2) @ zs[layer - 1])
            dz = du @ self.params[layer - 1]
        return ce.mean(axis=1), grads

    def train(self, dataset: Dataset, epochs: int, lr: float | Mapping[int, float],
              momentum: float = 0.9, batch_size: int = 32) -> list[dict]:
        """Minibatch SGD with momentum on ``dataset``'s training set.

        Each epoch visits every training sample once in a per-trial random
        order (the last minibatch may be smaller).

        Returns:
            One dict per epoch: ``epoch`` (1-based), ``lr``, and ``loss``, the
            per-trial mean training cross-entropy over the epoch's minibatches,
            each taken before its update, host array (K,).

        Raises:
            ConfigError: if ``batch_size < 1``.
            DivergenceError: if the loss becomes NaN or infinite.
        """
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
        xp = self.backend.xp
        x = self.backend.asarray(dataset.x_train)
        y = xp.asarray(dataset.y_train)
        samples = x.shape[1]
        shuffle = RandomStreams(self.seeds, "backprop/shuffle")
        velocity = [xp.zeros_like(p) for p in self.params]
        history = []
        for epoch in range(epochs):
            rate = learning_rate(lr, epoch)
            order = xp.asarray(shuffle.permutation(samples))
            total = xp.zeros(self.trials, dtype=x.dtype)
            for start in range(0, samples, batch_size):
                idx = order[:, start:start + batch_size]
                xb = xp.take_along_axis(x, idx[:, :, None], axis=1)
                yb = xp.take_along_axis(y, idx, axis=1)
                loss, grads = self.loss_and_gradients(xb, yb)
                for p, v, g in zip(self.params, velocity, grads, strict=True):
                    v *= momentum
                    v += g
                    p -= rate * v
                total += loss * idx.shape[1]
            mean_loss = self.backend.to_host(total / samples)
            if not np.isfinite(mean_loss).all():
                bad = np.flatnonzero(~np.isfinite(mean_loss)).tolist()
                raise DivergenceError(
                    f"backprop loss diverged in epoch {epoch + 1}, trials {bad} "
                    "(hint: lower the learning rate)")
            history.append({"epoch": epoch + 1, "lr": rate, "loss": mean_loss})
        return history


def run_backprop(dataset: Dataset, sizes: Sequence[int], seeds: Sequence[int], *,
                 activation: str = "tanh", epochs: int = 50,
                 lr: float | Mapping[int, float] = 0.05, momentum: float = 0.9,
                 batch_size: int = 32, readout_l2: float = 1e-4, readout_steps: int = 500,
                 backend: Backend | None = None) -> dict:
    """Train an :class:`MLP` on ``dataset`` and score it as the HSIC networks are scored.

    Returns a dict of host arrays:

    * ``test_accuracy`` (K,): linear readout fitted on the last layer's outputs
      for the training set, accuracy on the test set (the headline number);
    * ``train_accuracy`` (K,): the same readout on the training set;
    * ``head_test_accuracy`` (K,): the trained head's own test accuracy;
    * ``loss`` (epochs, K): per-epoch mean training cross-entropy;
    * ``lr`` (epochs,): the learning rate of each epoch.
    """
    if int(sizes[0]) != dataset.input_dim:
        raise ConfigError(f"sizes[0] = {sizes[0]} but dataset {dataset.name!r} has input "
                          f"dimension {dataset.input_dim}", field="sizes")
    if len(seeds) != dataset.trials:
        raise ConfigError(f"{len(seeds)} seeds for {dataset.trials} trials", field="seeds")
    net = MLP(sizes, dataset.n_classes, seeds, activation=activation, backend=backend)
    history = net.train(dataset, epochs, lr, momentum=momentum, batch_size=batch_size)
    be, xp = net.backend, net.backend.xp
    z_train = net.forward(be.asarray(dataset.x_train))[-1]
    z_test = net.forward(be.asarray(dataset.x_test))[-1]
    y_train, y_test = xp.asarray(dataset.y_train), xp.asarray(dataset.y_test)
    readout = fit_readout(z_train, y_train, dataset.n_classes, l2=readout_l2,
                          steps=readout_steps)
    logits = net.logits(z_test)
    if dataset.n_classes == 2:
        head_pred = logits[..., 0] > 0
    else:
        head_pred = xp.argmax(logits, axis=-1)
    return {
        "test_accuracy": be.to_host(readout_accuracy(readout, z_test, y_test)),
        "train_accuracy": be.to_host(readout_accuracy(readout, z_train, y_train)),
        "head_test_accuracy": be.to_host((head_pred == y_test).mean(axis=1)),
        "loss": np.array([h["loss"] for h in history]).reshape(len(history), net.trials),
        "lr": np.array([h["lr"] for h in history]),
    }
