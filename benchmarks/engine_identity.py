"""Bit-identity of the engine before and after a change (the speed work must not move a bit).

What it does
    Extracts the ``eventsim`` package and the scenario and network files of a
    git revision (``--ref``, e.g. the commit before an optimisation) into a
    temporary folder with ``git archive``, then runs the same short scenarios
    with that package and with this working tree, each in its own subprocess,
    and compares every final array bit for bit: every population's state
    (``u``, ``z``, ``W``, reservoir ``r``, readout), the synapses' momentum
    buffers, the working memories, every metric row (objectives per epoch,
    accuracies) and the evaluation features.

Cases (each on the MNIST network 784-64-32-10-10, a small seeded subset, K = 2):
    analytic    analytic ξ, N = 32, momentum 0.9, one epoch + evaluation (on the
                first 200 test images)
    channels    the same with an eligibility trace (5 ms) and a jittered, lossy,
                delayed channel on h1 (the random delivery path)
    reservoir   the four reservoirs simulated (100 ticks pretraining the readouts,
                then the layers learning from them)

Exit status 1 if any array differs.

Usage
    python benchmarks/engine_identity.py --ref REV [--cases analytic,channels,reservoir]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCENARIO = Path("scenarios") / "mnist_hsic.yaml"
"""Relative to the tree under test: a reference revision runs its own scenario file."""

ONE_EPOCH = {"phases": [{"name": "train", "epochs": 1, "learn": ["layers"]}],
             "evaluate.every": 0}
CASES = {
    "analytic": {"dataset.params.subset": 0.004, "trials": 2, **ONE_EPOCH},
    "channels": {"dataset.params.subset": 0.004, "trials": 2, "rule.trace": "5 ms", **ONE_EPOCH,
                 "modulator.channels": {"h1": {"delay": "2 ms", "jitter": "1 ms", "loss": 0.2}}},
    "reservoir": {"dataset.params.subset": 0.002, "trials": 2, "modulator.source": "reservoir",
                  "phases": [{"name": "pretrain", "duration": "100 ms", "learn": ["readouts"]},
                             {"name": "train", "duration": "200 ms", "learn": ["layers"]}]},
}

CHILD = r"""
import dataclasses, json, sys
import numpy as np
from eventsim.config.scenario import Evaluate, load_scenario
from eventsim.runner import Runner
overrides = json.loads(sys.argv[2])
if "objective_every" in Evaluate.model_fields:  # log every sample, as earlier revisions
    overrides["evaluate.objective_every"] = 1
sc = load_scenario(sys.argv[1], overrides)
runner = Runner(sc)
# a 200-image test set keeps the evaluation pass short (the same for both trees)
runner.ds = dataclasses.replace(runner.ds, x_test=runner.ds.x_test[:, :200],
                                y_test=runner.ds.y_test[:, :200])
result = runner.run()
sim = runner.sim
out = {}
for name, pop in sim.populations.items():
    for var, arr in pop.state().items():
        out[f"pop/{name}/{var}"] = np.asarray(arr)
for name, syn in sim.synapses.items():
    for var, arr in syn.get_state().items():
        if arr is not None:
            out[f"syn/{name}/{var}"] = np.asarray(arr)
for name, mem in sim.memories.items():
    state = mem.get_state()
    x, z, count = np.asarray(state["x"]), np.asarray(state["z"]), state["count"]
    if "slot" in state:  # the ring layout x (K, N, D), z (K, N, T, n): reorder newest first
        order = (state["slot"] - np.arange(count)) % mem.capacity
        x, z = x[:, order], np.moveaxis(z[:, order], 2, 0)
    else:  # newest first already: x (K, N, D), z (T, K, N, n)
        x, z = x[:, :count], z[:, :, :count]
    out[f"mem/{name}/x"], out[f"mem/{name}/z"] = x, z
out["metrics"] = np.array([row["value"] for row in result.metrics])
out["metric_names"] = np.array([f"{r['phase']}|{r['epoch']}|{r['metric']}|{r['trial']}"
                                for r in result.metrics])
for key, value in result.summary.items():
    value = np.asarray(value)
    if value.dtype.kind in "fiub":  # the numeric summaries (not the code-word tables)
        out[f"summary/{key}"] = value
import eventsim
out["package"] = np.array(eventsim.__file__)
np.savez(sys.argv[3], **out)
"""


def run_case(package_root: Path, overrides: dict, path: Path) -> None:
    # cwd = the package root: ``python -c`` puts the cwd first on sys.path
    env = {**os.environ, "PYTHONPATH": str(package_root), "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", CHILD, str(package_root / SCENARIO),
                    json.dumps(overrides), str(path)], env=env, check=True, cwd=package_root)


def compare(a: Path, b: Path) -> list[str]:
    fa, fb = np.load(a, allow_pickle=True), np.load(b, allow_pickle=True)
    if str(fa["package"]) == str(fb["package"]):
        raise SystemExit(f"both runs imported the same package {fa['package']}")
    problems = []
    if sorted(fa.files) != sorted(fb.files):
        problems.append(f"different arrays: {sorted(set(fa.files) ^ set(fb.files))}")
    for key in sorted(set(fa.files) & set(fb.files) - {"package"}):
        x, y = fa[key], fb[key]
        if x.shape != y.shape or x.dtype != y.dtype:
            problems.append(f"{key}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
        elif x.dtype.kind in "fc" and not np.array_equal(np.atleast_1d(x).view(np.uint8),
                                                        np.atleast_1d(y).view(np.uint8)):
            problems.append(f"{key}: max |diff| {np.max(np.abs(x - y)):.3e}")
        elif x.dtype.kind not in "fc" and not np.array_equal(x, y):
            problems.append(f"{key}: differs")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", required=True, help="git revision to compare against")
    p.add_argument("--cases", default=",".join(CASES))
    args = p.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = subprocess.run(["git", "archive", args.ref, "eventsim", "scenarios",
                                  "networks"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp / "ref", filter="data")
        for case in args.cases.split(","):
            ref, new = tmp / f"{case}-ref.npz", tmp / f"{case}-new.npz"
            run_case(tmp / "ref", CASES[case], ref)
            run_case(REPO, CASES[case], new)
            problems = compare(ref, new)
            n = len(np.load(new).files)
            if problems:
                failed = True
                print(f"{case}: DIFFERENT from {args.ref} in {len(problems)} of {n} arrays")
                for line in problems:
                    print(f"   {line}")
            else:
                print(f"{case}: bit-identical to {args.ref} ({n} arrays)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
