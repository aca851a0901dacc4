"""Seconds per MNIST epoch per trial, analytic and reservoir mode, and where the time goes.

What it measures
    The DL MNIST protocol (scenarios/mnist_hsic.yaml: 784-64-32-10-10, N = 32,
    20 ms per sample, K = 4 batched trials, momentum; 30k samples = 600k ticks
    per epoch) on the engine, in

    * analytic mode (ξ from the working memory), and
    * reservoir mode (scenarios/mnist_hsic_reservoir.yaml: the four 1000-neuron
      reservoirs simulated, readouts learning, layers learning from them).

    For each: the training tick (after the memory is full) and the evaluation
    tick (learning off, the last layer's window mean recorded) are timed over
    ``--ticks`` ticks, and extrapolated to seconds per epoch, per epoch per
    trial, per evaluation pass (train + test set) and to the whole protocol
    (75 epochs + an evaluation every 5 epochs + the final one).

    **Engine vs math.** The hot numerical calls (Layer.step, Reservoir.step,
    ThreeFactorSynapses.step and apply_instant, the analytic ξ, ReadoutLearning.step,
    the working-memory writes, a layer's slice of a sample) are wrapped in timers;
    "math" is the time inside them (the outermost timer only), "engine" the rest
    (SimPy scheduling, channels, the per-tick and per-sample glue).

    **Before/after.** ``--ref REV`` also times the ``eventsim`` package of git
    revision REV with its own scenario and network files (extracted with
    ``git archive``), interleaved with this tree
    (ref, this, ref, this ...; the minimum per variant), so the speedup is a
    ratio measured side by side in one run. Each variant runs in its own
    subprocess with BLAS pinned to one thread.

Usage
    python benchmarks/mnist_epoch.py [--modes analytic,reservoir] [--ticks 2000]
        [--trials 4] [--backends numpy,numba,cupy] [--ref REV] [--reps 2] [--per-tick]

    Every (tree, backend) pair is a variant (``--per-tick`` adds this tree's numba
    backend with slicing off); the rows "X vs Y" are the training- and evaluation-tick
    speedups over the first variant, measured in the same run; each tick is the minimum
    over the repetitions.
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

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = {"analytic": Path("scenarios") / "mnist_hsic.yaml",
             "reservoir": Path("scenarios") / "mnist_hsic_reservoir.yaml"}
"""Relative to the tree under test: a reference revision runs its own scenario files."""
EPOCHS, EVALUATIONS = 75, 15  # the protocol: 75 epochs, evaluated every 5 (the 15th: final)

CHILD = r"""
import json, sys, time
import numpy as np
mode, path, backend, slicing = sys.argv[1], sys.argv[2], sys.argv[5], sys.argv[6]
ticks, trials = int(sys.argv[3]), int(sys.argv[4])
from eventsim.config.scenario import load_scenario
from eventsim.runner import Runner
from eventsim.engine import simulator as S
from eventsim.populations.layer import Layer
from eventsim.populations.reservoir import Reservoir
from eventsim.plasticity.traces import ThreeFactorSynapses
from eventsim.plasticity.readout import ReadoutLearning
from eventsim.plasticity.memory import WorkingMemory

spent, depth = [0.0], [0]
def timed(cls, name):
    fn = getattr(cls, name)
    def wrapper(*a, **k):  # only the outermost timed call counts (no double counting)
        depth[0] += 1
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            depth[0] -= 1
            if not depth[0]:
                spent[0] += time.perf_counter() - t0
    setattr(cls, name, wrapper)
timers = [(Layer, ["step"]), (Reservoir, ["step"]), (ThreeFactorSynapses, ["step"]),
          (S.AnalyticXi, ["__call__", "new_sample", "objectives"]),
          (ReadoutLearning, ["step"]), (WorkingMemory, ["write_z", "new_sample"])]
try:  # the immediate path and the sliced kernels (revisions before them lack these)
    from eventsim.engine.slicing import LayerSlice
    timers += [(LayerSlice, ["run"]), (ThreeFactorSynapses, ["apply_instant"])]
except ImportError:
    pass
for cls, names in timers:
    for name in names:
        timed(cls, name)

sc = load_scenario(path, {"trials": trials, "backend": backend})
runner = Runner(sc)
sim = runner.sim
if slicing == "off":
    sim.slicer = None  # the per-tick path (eventsim.engine.slicing)
be = runner.backend
def sync():
    if be.name == "cupy":
        be.xp.cuda.Stream.null.synchronize()
sim.set_feed(runner._feed("train", shuffle=True))
sim.set_eta(5e-3)
reservoir = sc.spec.modulator.source == "reservoir"
sim.set_learning(layers=True, readouts=reservoir, t_on=0)
sim.reservoir_drives_layers = True
out = {"samples_train": runner.ds.x_train.shape[1], "samples_test": runner.ds.x_test.shape[1],
       "sample_ticks": sim.sample_ticks, "trials": trials, "device": be.device()}
sim.run(sim.tick + 40 * sim.sample_ticks)  # fill the working memory (N = 32)
for label in ("train", "eval"):
    if label == "eval":
        sim.set_learning(layers=False, readouts=False, explore=False)
        sim.reservoir_drives_layers = False
        # as Runner.evaluate; revisions before memories_run kept the memories running
        setattr(sim, "memories_run" if hasattr(sim, "memories_run") else "reservoirs_run", False)
        window = sim.window(runner.out_layer)
        window.enabled = True
        sim.run(sim.tick + 2 * sim.sample_ticks)
    sync()
    spent[0] = 0.0
    t0 = time.perf_counter()
    sim.run(sim.tick + ticks)
    sync()
    total = time.perf_counter() - t0
    out[label] = {"s_per_tick": total / ticks, "math_fraction": spent[0] / total}
import eventsim
out["package"] = eventsim.__file__
print("RESULT " + json.dumps(out))
"""


def extract(ref: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "archive", ref, "eventsim", "scenarios", "networks"],
                             cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def child(package_root: Path, mode: str, ticks: int, trials: int, backend: str,
          slicing: str) -> dict:
    # cwd = the package root: ``python -c`` puts the cwd first on sys.path
    env = {**os.environ, "PYTHONPATH": str(package_root), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    scenario = package_root / SCENARIOS[mode]
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(scenario), str(ticks),
                           str(trials), backend, slicing], env=env, cwd=package_root,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    if not Path(out["package"]).is_relative_to(package_root):
        raise SystemExit(f"{package_root}: the child imported {out['package']}")
    return out


def report(name: str, r: dict) -> list[str]:
    k, t = r["trials"], r["sample_ticks"]
    epoch_ticks = r["samples_train"] * t
    eval_ticks = (r["samples_train"] + r["samples_test"]) * t
    epoch_s = r["train"]["s_per_tick"] * epoch_ticks
    eval_s = r["eval"]["s_per_tick"] * eval_ticks
    protocol_h = (EPOCHS * epoch_s + EVALUATIONS * eval_s) / 3600
    return [name, f"{r['train']['s_per_tick'] * 1e6:.0f}", f"{epoch_s:.0f}", f"{epoch_s / k:.0f}",
            f"{r['train']['math_fraction']:.0%}", f"{r['eval']['s_per_tick'] * 1e6:.0f}",
            f"{eval_s:.0f}", f"{protocol_h:.1f}"]


def table(rows, heads) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(heads, *rows, strict=True)]
    line = "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
    body = ["  ".join(f"{c:>{w}}" for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "-" * len(line), *body])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", default="analytic,reservoir")
    p.add_argument("--ticks", type=int, default=2000, help="timed ticks per measurement")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--backends", default="numpy",
                   help="comma-separated, of numpy, numba, cupy; each is timed, interleaved")
    p.add_argument("--ref", help="also time this git revision, interleaved")
    p.add_argument("--reps", type=int, default=1,
                   help="repetitions per variant (the minimum of each tick kept)")
    p.add_argument("--per-tick", action="store_true",
                   help="also time this tree's numba backend with slicing off")
    args = p.parse_args(argv)
    backends = args.backends.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": REPO}
        if args.ref:
            trees = {f"ref {args.ref}": extract(args.ref, Path(tmp)), **trees}
        variants = {f"{tree}, {backend}": (root, backend, "on")
                    for tree, root in trees.items() for backend in backends}
        if args.per_tick and "numba" in backends:  # after the ref's, before this tree's
            refs = {v: x for v, x in variants.items() if v.startswith("ref ")}
            variants = {**refs, "this tree, numba, slicing off": (REPO, "numba", "off"),
                        **{v: x for v, x in variants.items() if v not in refs}}
        for mode in args.modes.split(","):
            best: dict[str, dict] = {}
            for _ in range(args.reps):
                for name, (root, backend, slicing) in variants.items():
                    r = child(root, mode, args.ticks, args.trials, backend, slicing)
                    old = best.setdefault(name, r)
                    for tick in ("train", "eval"):  # the minimum of each, separately
                        if r[tick]["s_per_tick"] < old[tick]["s_per_tick"]:
                            old[tick] = r[tick]
            for name, r in best.items():
                rows.append(report(f"{mode}, {name}", r))
            first, *others = variants
            for name in others:  # training- and evaluation-tick speedups over the first
                a, b = (best[first][t]["s_per_tick"] / best[name][t]["s_per_tick"]
                        for t in ("train", "eval"))
                rows.append([f"{mode}: {name} vs {first}", f"{a:.2f}x", "", "", "",
                             f"{b:.2f}x", "", ""])
        devices = sorted({r["device"] for r in best.values()})
    print(f"mnist_epoch: K = {args.trials} trials batched, backends {', '.join(backends)} "
          f"({', '.join(devices)}), {args.ticks} timed ticks, BLAS 1 thread")
    print(table(rows, ["variant", "train µs/tick", "s/epoch", "s/epoch/trial", "math",
                       "eval µs/tick", "s/eval", "protocol h"]))
    print("   epoch = 30k samples x 20 ticks; eval = train + test sets with learning off; "
          f"protocol = {EPOCHS} epochs + {EVALUATIONS} evaluations; "
          "math = share of the training tick inside the numerical calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
