"""Reservoir test (DL §6.1): how well *can* a linear readout track ξ, and how well does DL Eq. 10?

What it measures
    1. ``record``: the scenario's reservoir runs with nothing learning (``W_o = 0``,
       exploration noise on) for ``--record`` seconds; the rates ``r`` and the true ξ
       of its layer are probed every tick. With the samples in stored order
       (``order: fixed``) ξ and the input repeat every ``samples × Δt_sample``
       (5 s), and so, once the start-up transient is over, do the rates (the script
       prints how closely).
    2. ``ceiling``: the best linear readout ``ξ ≈ W r + b`` by ridge regression,
       fitted on the first half of the recording (after ``--skip`` seconds) and
       scored on the second half with the engine's tracker score (per-element
       Pearson correlation and NMSE, averaged), also against ξ shifted by a lag
       (readout at t vs ξ at t − lag).
    3. ``replay``: the engine's own :class:`~eventsim.plasticity.readout.ReadoutLearning`
       (DL Eq. 10 / 13) trained for ``--train`` seconds on the recorded periodic
       trajectory (the last whole period, cycled), with the readout's own
       exploration noise ``U(±ζ_o)``. The readout's feedback into the reservoir
       (``W_fb r_o``, |r_o| ~ 0.01 against an input drive ~ 3) is ignored, so this
       is an approximation of the full run, about 50× faster. Printed: the
       noise-free readout's score over one period every ``--every`` seconds (what
       the test phase measures; the test is periodic) and, at the end, the noisy
       readout's score over the last 5 s of training and that of its low-pass
       ``r̄_o`` (the rule's filter, the "filtered readout" DL Fig. 4 shows in training).

    The full run (``eventsim run scenarios/reservoir_xi.yaml``) is the measure; the
    replay is for finding out *why* it falls short, quickly.

Usage
    OPENBLAS_NUM_THREADS=1 python benchmarks/readout_ceiling.py
    OPENBLAS_NUM_THREADS=1 python benchmarks/readout_ceiling.py --reward per_output
    OPENBLAS_NUM_THREADS=1 python benchmarks/readout_ceiling.py --set readout.decay=100s
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventsim.backend import get_backend  # noqa: E402
from eventsim.config.scenario import load_scenario  # noqa: E402
from eventsim.engine.tracking import score  # noqa: E402
from eventsim.plasticity.readout import ReadoutLearning  # noqa: E402
from eventsim.runner import Runner  # noqa: E402


def record(sc, seconds: float):
    """Rates (T, N) and ξ (T, n_out) of trial 0, every tick from tick 0, nothing learning."""
    run = Runner(sc)
    sim = run.sim
    (res,) = [n for n, p in sim.populations.items() if p.kind == "reservoir"]
    layer = sim._served[res]
    pr, px = sim.probe(f"{res}.r"), sim.probe(f"{layer}.xi")
    sim.set_feed(run.train_feed("fixed"))
    sim.set_learning(layers=False, readouts=False, explore=True)
    ticks = int(round(seconds * 1000 / sim.dt_ms))
    t0 = time.time()
    sim.run(ticks)
    print(f"recorded {seconds:g} s in {time.time() - t0:.0f} s wall")
    spec = sc.network.graph.nodes[res]["spec"]
    return (pr.data()[1][:, 0].astype(np.float64), px.data()[1][:, 0].astype(np.float64),
            sim.sample_ticks, spec.noise.readout)


BINS = ((0, 5), (5, 15), (15, 35), (35, 50))
"""Stretches of a 50 ms sample (ms) over which the error profile is averaged."""


def profile(pred, X, sample_ticks):
    """NMSE per stretch of the sample (pred and X of whole periods, aligned to sample starts)."""
    d = X.shape[-1]
    err = ((pred - X) ** 2).reshape(-1, sample_ticks, d)
    var = X.var(axis=0)
    return [float((err[:, a:b].mean(axis=1) / var).mean()) for a, b in BINS
            if b <= sample_ticks]


def spectrum(R):
    """How the rates' energy splits: the constant part and the covariance eigenvalues."""
    mean = R.mean(axis=0)
    total = (R ** 2).sum(axis=1).mean()
    ev = np.linalg.eigvalsh(np.cov(R, rowvar=False))[::-1]
    ranks = [r for r in (1, 10, 50, 100, 200) if r <= len(ev)]
    print(f"\nrates: E|r|² = {total:.0f}, of which |mean r|² = {(mean ** 2).sum():.0f}; "
          "covariance eigenvalues at rank " +
          ", ".join(f"{r}: {ev[r - 1]:.3g}" for r in ranks))


def ridge(R, X, lam):
    A = np.c_[R, np.ones(len(R))]
    return np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ X)


def ceiling(R, X, lams=(0.01, 1.0, 100.0), lags=(0, 10, 25, 40)):
    n = len(R)
    print("\nbest linear readout (ridge; fit on the first half, scored on the second)")
    print("| λ_ridge | lag (ms) | corr | NMSE |\n|---|---|---|---|")
    for lam in lams:
        for lag in lags if lam == 1.0 else (0,):
            Rl, Xl = R[lag:], X[:n - lag]
            half = len(Rl) // 2
            W = ridge(Rl[:half], Xl[:half], lam)
            pred = np.c_[Rl[half:], np.ones(len(Rl) - half)] @ W
            s = score(pred[:, None], Xl[half:, None])
            print(f"| {lam:g} | {lag} | {s['corr'][0]:.3f} | {s['nmse'][0]:.3f} |")


class _Stub:
    """What ReadoutLearning reads: rates ``r``, readout ``r_o`` and ``W_o`` of one trial."""

    def __init__(self, n, n_out, backend):
        self.r = backend.zeros((1, n))
        self.r_o = backend.zeros((1, n_out))
        self.W_o = backend.zeros((1, n_out, n))


def replay(Rc, Xc, *, eta0, decay_ms, lpf_ms, zeta, reward, train_s, every_s, sample_ticks,
           seed=0):
    be = get_backend("numpy", "float32")
    period, n = Rc.shape
    n_out = Xc.shape[1]
    Rc32, Xc32 = Rc.astype(np.float32), Xc.astype(np.float32)
    stub = _Stub(n, n_out, be)
    rule = ReadoutLearning(stub, eta0=eta0, tau_decay_ticks=decay_ms, tau_lpf_ticks=lpf_ms,
                           backend=be, reward=reward)
    rng = np.random.default_rng(seed)
    ticks, every = int(train_s * 1000), int(every_s * 1000)
    last, last_lpf = [], []
    print(f"\nreplay of DL Eq. 10 (reward {reward}, η0 {eta0:g}, τ_decay {decay_ms / 1000:g} s, "
          f"τ_lpf {lpf_ms:g} ms, ζ_o {zeta:g}), {train_s:g} s")
    print("| t (s) | test corr | test NMSE |\n|---|---|---|")
    t0 = time.time()
    for t in range(ticks):
        j = t % period
        stub.r[0] = Rc32[j]
        np.matmul(stub.W_o[0], Rc32[j], out=stub.r_o[0])
        stub.r_o[0] += rng.uniform(-zeta, zeta, n_out).astype(np.float32)
        rule.step(t, Xc32[j][None])
        if t >= ticks - 5000:
            last.append(stub.r_o[0].copy())
            last_lpf.append(rule.ro_bar[0].copy())
        if (t + 1) % every == 0 or t + 1 == ticks:
            s = score((Rc32 @ stub.W_o[0].T)[:, None], Xc32[:, None])
            print(f"| {(t + 1) / 1000:g} | {s['corr'][0]:.3f} | {s['nmse'][0]:.3f} |", flush=True)
    tail = np.arange(ticks - len(last), ticks) % period
    s = score(np.array(last)[:, None], Xc32[tail][:, None])
    f = score(np.array(last_lpf)[:, None], Xc32[tail][:, None])
    print(f"last 5 s of training (noise on): corr {s['corr'][0]:.3f} NMSE {s['nmse'][0]:.3f}; "
          f"its {lpf_ms:g} ms low-pass r̄_o: corr {f['corr'][0]:.3f} NMSE {f['nmse'][0]:.3f}; "
          f"|W_o| {np.linalg.norm(stub.W_o):.4f}; {time.time() - t0:.0f} s wall")
    # the least-squares readout of the same period, for comparison
    A = np.c_[Rc, np.ones(period)]
    W = ridge(Rc, Xc, 1.0)
    learned = profile(Rc32 @ stub.W_o[0].T, Xc32, sample_ticks)
    best = profile(A @ W, Xc, sample_ticks)
    print("\nNMSE over stretches of the 50 ms sample (ms from the step), one period:")
    print("| readout | norm of W_o | " + " | ".join(f"{a}-{b - 1}" for a, b in BINS) + " |")
    print("|---|---|" + "---|" * len(learned))
    print(f"| DL Eq. 10, after {train_s:g} s | {np.linalg.norm(stub.W_o):.4f} | " +
          " | ".join(f"{v:.2f}" for v in learned) + " |")
    print(f"| least squares (ridge 1, in-sample) | {np.linalg.norm(W[:-1]):.4f} | " +
          " | ".join(f"{v:.2f}" for v in best) + " |")
    return stub.W_o[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "reservoir_xi.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="scenario override, as for eventsim run")
    ap.add_argument("--record", type=float, default=17.0, help="seconds recorded")
    ap.add_argument("--skip", type=float, default=2.0, help="start-up seconds not used")
    ap.add_argument("--train", type=float, default=500.0, help="replay training seconds")
    ap.add_argument("--every", type=float, default=100.0, help="replay report interval (s)")
    ap.add_argument("--reward", choices=["total", "per_output"], default=None,
                    help="default: the scenario's readout.reward")
    ap.add_argument("--no-replay", action="store_true")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    sc = load_scenario(args.scenario, overrides)
    if sc.spec.timing.dt != 1.0:
        raise SystemExit("the replay assumes dt = 1 ms")
    R, X, sample_ticks, zeta = record(sc, args.record)
    skip = int(args.skip * 1000)
    R, X = R[skip:], X[skip:]
    ro = sc.spec.readout
    print(f"ξ: std per element {X.std(0).mean():.4f} (mean over elements); exploration noise "
          f"U(±{zeta:g}) has std {zeta / np.sqrt(3):.4f}")
    ceiling(R, X)
    spectrum(R)
    period = sample_ticks * sc.spec.dataset.params.get("samples", 100)
    if args.no_replay or len(R) < 2 * period:
        return 0
    # the last whole period, indexed by tick mod period
    start = skip + len(R) - period
    idx = np.array([len(R) - period + ((j - start) % period) for j in range(period)])
    drift = np.abs(R[-period:] - R[-2 * period:-period]).max()
    print(f"\nrates one period apart differ by at most {drift:.4f}")
    replay(R[idx], X[idx], eta0=ro.eta0, decay_ms=ro.decay, lpf_ms=ro.lpf, zeta=zeta,
           reward=args.reward or ro.reward, train_s=args.train, every_s=args.every,
           sample_ticks=sample_ticks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
