"""Scenario driver for ``rule: backprop``: the same data, network sizes and evaluation."""

from __future__ import annotations

import time

import numpy as np

from ..runner import RunResult, load_scenario_dataset
from .backprop import run_backprop


def run_backprop_scenario(sc, *, backend) -> RunResult:
    """Train the network's layers end to end by SGD with momentum (``rule.lr``)."""
    start = time.time()
    ds = load_scenario_dataset(sc)
    net = sc.network
    layers = net.nodes_of("layer")
    sizes = [ds.input_dim] + [net.graph.nodes[n]["size"] for n in layers]
    epochs = sum(p.epochs or 0 for p in sc.spec.phases)
    if epochs == 0:
        raise sc.error(("phases",), "backprop needs a phase with epochs",
                       "e.g. phases: [{name: train, epochs: 50, learn: [layers]}]")
    lr = sc.spec.rule.lr
    rate = dict(lr.schedule) if lr.schedule else lr.eta
    if isinstance(rate, dict) and 0 not in rate:
        rate[0] = lr.eta
    out = run_backprop(ds, sizes, sc.seeds, epochs=epochs, lr=rate, momentum=lr.momentum,
                       batch_size=sc.spec.rule.batch, backend=backend)
    result = RunResult(scenario=sc, backend=backend)
    for e, losses in enumerate(out["loss"]):
        for k, v in enumerate(losses):
            result.metrics.append({"phase": "train", "epoch": e + 1, "tick": 0, "trial": k,
                                   "metric": "loss/backprop", "value": float(v)})
    for split in ("train", "test"):
        for k, v in enumerate(out[f"{split}_accuracy"]):
            result.metrics.append({"phase": "final", "epoch": epochs, "tick": 0, "trial": k,
                                   "metric": f"accuracy/{split}", "value": float(v)})
    result.summary = {"test_accuracy": np.asarray(out["test_accuracy"]),
                      "train_accuracy": np.asarray(out["train_accuracy"])}
    result.wall_time_s = time.time() - start
    return result
