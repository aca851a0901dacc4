"""Scenario driver for ``rule: phsic`` with ``mode: static``: PL's static pHSIC trainer.

This is *not* the event-driven engine. Each network layer but the last is a
static pHSIC layer of :class:`~eventsim.plasticity.phsic.PHSICNet`
(``z = f(W r_pre)``, no bias, no time); the last layer of the network file is
the linear cross-entropy readout (with bias) that PL train on the top layer's
output, so its size must equal the number of classes. Two rules:

* **static minibatch** (``rule.batch = m ≥ 2``): the PL batch rule (PL Eq.
  10/40) on minibatches of ``m`` samples, every layer minimising its own
  ``pHSIC(Z,Z) − γ pHSIC(Y,Z)`` (PL Eq. 9) — DL Fig. 2's "batch 256";
* **online two-point** (``rule.static.online: true``, ``rule.batch = 2``): one
  new sample per step, paired with the previous one (PL Eq. 13 with the online
  centring of PL Eqs. 59–62) — DL Fig. 2's "batch 2".

Optimiser: PyTorch-style SGD with momentum ``rule.lr.momentum`` on the layers
(rate ``rule.lr`` with its epoch schedule) and on the readout (rate
``rule.static.readout_lr``, scaled by the same schedule factor), with the L2
weight decay ``rule.static.weight_decay`` / ``readout_weight_decay`` (gradient
``+ λ θ``, PyTorch's ``weight_decay``). ``rule.static.dropout = p`` zeroes each
entry of every layer's output with probability ``p`` in training (kept
entries ×1/(1−p); masks from the stream ``phsic/dropout``); scoring uses no
dropout. The score is
PL's: the trained readout's accuracy on the held-out test set (and on the
training set). Epochs are per-trial shuffled from the stream ``phsic/shuffle``.
"""

from __future__ import annotations

import time

import numpy as np

from ..backend import RandomStreams
from ..errors import DivergenceError
from ..plasticity.phsic import PHSICNet
from ..runner import RunResult, eta_for_epoch, load_scenario_dataset

EVAL_CHUNK = 2000
"""Samples per forward pass when scoring (bounds memory at 3 × 1024 units)."""


def _shared(a: np.ndarray) -> np.ndarray:
    """(K, S, ...) data shared by all trials (a broadcast view) -> (S, ...); else unchanged."""
    return a[0] if a.strides[0] == 0 else a


def accuracy(net: PHSICNet, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Readout accuracy per trial (K,) on ``x`` (S, D) or (K, S, D), in chunks."""
    be = net.backend
    correct = np.zeros(net.trials)
    n = x.shape[-2]
    for start in range(0, n, EVAL_CHUNK):
        xb = x[..., start:start + EVAL_CHUNK, :]
        yb = y[..., start:start + EVAL_CHUNK]
        pred = be.to_host(net.predict(xb))
        correct += (pred == yb).sum(axis=-1)
    return correct / n


def build_net(sc, ds, backend) -> PHSICNet:
    """The :class:`PHSICNet` of a static-mode scenario (layers and readout from the network)."""
    rule = sc.spec.rule
    st = rule.static
    g = sc.network.graph
    layers = sc.network.nodes_of("layer")
    if len(layers) < 1 or g.nodes[layers[-1]]["size"] != ds.n_classes:
        raise sc.error(("network",), f"the last layer must be the {ds.n_classes}-way readout "
                       "in static pHSIC mode",
                       f"end the network with a layer of size {ds.n_classes}")
    if isinstance(rule.gamma, dict):
        raise sc.error(("rule", "gamma"), "static pHSIC mode takes one gamma for all layers",
                       "write e.g. gamma: 2")
    sizes = [ds.input_dim] + [g.nodes[n]["size"] for n in layers[:-1]]
    try:
        return PHSICNet(sizes, sc.seeds, ds.n_classes, kernel=rule.kernel,
                        grouping=st.grouping, sigma=st.sigma, gamma=float(rule.gamma),
                        groups=st.groups, delta=st.delta, p=st.power,
                        activation=st.activation, readout=True,
                        rule="online" if st.online else "batch", beta=st.beta, backend=backend)
    except ValueError as exc:
        raise sc.error(("rule", "static"), str(exc)) from None


def run_phsic_static_scenario(sc, *, backend, progress=None) -> RunResult:
    """Train a static pHSIC network for the scenario's epochs; score its readout."""
    start = time.time()
    ds = load_scenario_dataset(sc)
    if any(p.epochs is None for p in sc.spec.phases) or not sc.spec.phases:
        raise sc.error(("phases",), "static pHSIC mode runs in epochs",
                       "e.g. phases: [{name: train, epochs: 100, learn: [layers]}]")
    net = build_net(sc, ds, backend)
    rule = sc.spec.rule
    lr = rule.lr
    readout_lr = lr.eta if rule.static.readout_lr is None else rule.static.readout_lr
    layers = sc.network.nodes_of("layer")[:-1]
    x_train, y_train = _shared(ds.x_train), _shared(ds.y_train)
    x_test, y_test = _shared(ds.x_test), _shared(ds.y_test)
    shuffle = RandomStreams(sc.seeds, "phsic/shuffle")
    dropout = RandomStreams(sc.seeds, "phsic/dropout")
    st = rule.static
    batch = 1 if rule.static.online else rule.batch
    result = RunResult(scenario=sc, backend=backend)

    def metric(phase, epoch, name, values):
        for k, v in enumerate(np.ravel(values)):
            result.metrics.append({"phase": phase, "epoch": epoch, "tick": 0, "trial": k,
                                   "metric": name, "value": float(v)})

    epoch = 0
    every = sc.spec.evaluate.every
    last = sum(p.epochs for p in sc.spec.phases)  # scored once, by the final evaluation
    for phase in sc.spec.phases:
        for _ in range(phase.epochs):
            eta = eta_for_epoch(lr, epoch)
            scale = eta / lr.eta if lr.eta > 0 else 1.0
            stats = net.train_epoch(x_train, y_train, lr=eta, momentum=lr.momentum,
                                    batch_size=batch, rng=shuffle,
                                    lr_readout=readout_lr * scale,
                                    weight_decay=st.weight_decay,
                                    readout_weight_decay=st.readout_weight_decay,
                                    dropout=st.dropout, dropout_rng=dropout)
            epoch += 1
            if not (np.isfinite(stats["objective"]).all() and np.isfinite(stats["ce"]).all()):
                raise DivergenceError(f"static pHSIC diverged in epoch {epoch} "
                                      "(hint: lower rule.lr.eta or rule.static.readout_lr)")
            for i, layer in enumerate(layers):
                metric(phase.name, epoch, f"objective_pl/{layer}", stats["objective"][:, i])
            metric(phase.name, epoch, "loss/readout_ce", stats["ce"])
            if every and epoch % every == 0 and epoch < last:
                metric(phase.name, epoch, "accuracy/test", accuracy(net, x_test, y_test))
            if progress is not None:
                progress.set_phase(phase.name)
                progress.advance(epoch, line=False)
                progress.metric(f"ce={np.mean(stats['ce']):.4g}")
    test = accuracy(net, x_test, y_test)
    train = accuracy(net, x_train, y_train)
    metric("final", epoch, "accuracy/train", train)
    metric("final", epoch, "accuracy/test", test)
    result.summary = {"test_accuracy": test, "train_accuracy": train}
    result.wall_time_s = time.time() - start
    return result
