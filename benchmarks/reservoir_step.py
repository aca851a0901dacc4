"""Reservoir step: the library's reservoir tick vs a bare NumPy loop, 1000/2000 neurons, K = 1/4/16.

What it measures
    One Euler step of DL Eq. 9 with the constants folded into the matrices::

        u ← (1 − dt/τ) u + A r + B r_in + C r_o
        r = tanh(u) + ζ_r,    r_o = W_o r + ζ_o

    (a) ``engine``: :meth:`eventsim.populations.reservoir.Reservoir.step`, the
        call the engine makes every tick (``in_size`` = 111 = x(100) + label(1)
        + z(10), readout of 10);
    (b) ``bare``: the same math inline with preallocated buffers and ``out=``,
        reading contiguous copies of the engine's three matrix blocks and the
        same noise streams in the same 64-tick blocks. Every trial has its
        own reservoir, so ``A`` is (K, N, N) and a tick is K matrix-vector
        products whichever way it is written;
    (c) informative, K > 1: ``bare, per-trial dot`` — a Python loop of K
        ``np.dot`` calls instead of one batched ``np.matmul``.
    (d) with ``--shared``: the reservoir's matrices are drawn once (its
        ``seed``) and shared by the K trials, so ``A`` is (1, N, N); (a) then
        does K matrix-vector products on one matrix, and the informative
        ``gemm`` column is the same tick with one matrix-matrix product over
        the trials, ``[r | r_in | r_o] (K, P) @ Mᵀ (P, N)``, which sums in a
        different order for K > 1 than for K = 1 (so it is not the engine's
        choice; see ``eventsim/populations/reservoir.py``).

    The engine stacks ``M = [A | B | C]`` and does one product per trial on
    ``s = [r | r_in | r_o]``; the bare loop keeps three products, so their
    rates agree to rounding (the check below prints the difference).

    Before timing, (a) and (b) run side by side from the same state and their
    rates are compared, so (b) is checked to be the same computation.

    The variants run interleaved (every repetition runs each once, order
    rotating); the table gives median µs/tick, µs per trial-tick and the ratio
    engine / bare, with BLAS pinned to 1 thread and at the library default.

    Informative, if SciPy is importable: the recurrent product alone,
    ``A @ r`` with ``A`` in CSR form (density 0.1, the reservoir's own mask)
    vs dense, for the same K (K trials = one block-diagonal CSR matrix). Dense
    float32 is 16 MB per trial at 2000 neurons, CSR about 3.2 MB, so once the
    K dense matrices no longer fit the last-level cache CSR can win.

Target
    engine / bare ≤ 1.05× at 2000 neurons for every K (the step does the same
    memory traffic; only call overhead and temporaries differ). CSR is expected
    to be slower than dense at these sizes (DESIGN.md: about 2×).

Usage
    python benchmarks/reservoir_step.py [--quick] [--neurons 1000,2000]
        [--trials 1,4,16] [--threads both|1|default] [--dtype float32|float64] [--shared]
"""

from __future__ import annotations

import sys
import time

import _common as C
import numpy as np

from eventsim.backend import RandomStreams, get_backend
from eventsim.config.network import ReservoirPop
from eventsim.populations.reservoir import Reservoir

IN_SIZE, OUT_SIZE, BLOCK = 111, 10, 64


def make_reservoir(n: int, trials: int, backend, shared: bool = False) -> Reservoir:
    spec = ReservoirPop(kind="reservoir", size=n, tau=50.0, chaos=1.5, density=0.1,
                        seed=0 if shared else None)
    return Reservoir("mem", spec, in_size=IN_SIZE, out_size=OUT_SIZE, backend=backend,
                     seeds=list(range(trials)), dt_ms=1.0)


class BareReservoir:
    """DL Eq. 9 inline, reading ``res``'s matrices (never writing them)."""

    def __init__(self, res: Reservoir, per_trial_dot: bool = False, gemm: bool = False) -> None:
        dt = res.u.dtype
        self.K, self.n = res.u.shape
        self.dtype = dt
        self.per_trial_dot = per_trial_dot
        self.gemm = gemm
        self.shared = res.shared
        self.MT = res.M[0].T                        # (P, N) view, for the gemm variant
        self.s = np.zeros((self.K, res.M.shape[-1]), dtype=dt)
        # contiguous copies: the engine keeps them as column blocks of one stacked matrix
        self.A, self.B, self.Cfb = (np.ascontiguousarray(m) for m in (res.A, res.B, res.C))
        self.W_o = res.W_o.copy()
        self.decay = res.decay
        self.u = res.u.copy()
        self.r = res.r.copy()
        self.r_o = res.r_o.copy()
        self.drive = np.zeros_like(self.u)
        self.tmp = np.zeros_like(self.u)
        seeds = res.hidden_noise.streams.seeds
        self.g_h = RandomStreams(seeds, "mem/hidden_noise").generators
        self.g_o = RandomStreams(seeds, "mem/readout_noise").generators
        self.a_h = res.hidden_noise.amplitude
        self.a_o = res.readout_noise.amplitude
        self.explore = res.explore
        self.pos = BLOCK

    def _blocks(self) -> None:
        def block(gens, a, size):
            return np.ascontiguousarray(np.swapaxes(np.stack(
                [g.uniform(-a, a, (BLOCK, size)) for g in gens]).astype(self.dtype), 0, 1))
        self.nh = block(self.g_h, self.a_h, self.n)
        self.no = block(self.g_o, self.a_o, OUT_SIZE)
        self.pos = 0

    def run(self, r_in, ticks: int) -> None:
        mm, dot = np.matmul, np.dot
        K = self.K
        A, B, Cfb, W_o = self.A, self.B, self.Cfb, self.W_o
        u, r, r_o, drive, tmp = self.u, self.r, self.r_o, self.drive, self.tmp
        for _ in range(ticks):
            if self.pos >= BLOCK:
                self._blocks()
            p = self.pos
            self.pos += 1
            if self.gemm:
                n, s = self.n, self.s
                s[:, :n] = r
                s[:, n:n + r_in.shape[1]] = r_in
                s[:, n + r_in.shape[1]:] = r_o
                mm(s, self.MT, out=drive)
            elif K == 1 or self.per_trial_dot:
                for k in range(K):
                    m = 0 if self.shared else k
                    dot(A[m], r[k], out=drive[k])
                    dot(B[m], r_in[k], out=tmp[k])
                    drive[k] += tmp[k]
                    dot(Cfb[m], r_o[k], out=tmp[k])
                    drive[k] += tmp[k]
            else:
                mm(A, r[..., None], out=drive[..., None])
                mm(B, r_in[..., None], out=tmp[..., None])
                drive += tmp
                mm(Cfb, r_o[..., None], out=tmp[..., None])
                drive += tmp
            u *= self.decay
            u += drive
            np.tanh(u, out=r)
            r += self.nh[p]
            if K == 1 or self.per_trial_dot:
                for k in range(K):
                    dot(W_o[k], r[k], out=r_o[k])
            else:
                mm(W_o, r[..., None], out=r_o[..., None])
            if self.explore:
                r_o += self.no[p]


def engine_run(res: Reservoir, r_in, ticks: int) -> None:
    step = res.step
    for _ in range(ticks):
        step(r_in)


def check_same_math(n: int, K: int, backend, ticks: int, shared: bool = False) -> float:
    res = make_reservoir(n, K, backend, shared)
    bare = BareReservoir(res)
    r_in = np.random.default_rng(1).uniform(0, 1, (K, IN_SIZE)).astype(backend.dtype)
    # a non-zero readout, so the feedback term C r_o and W_o r are exercised
    res.W_o[...] = np.random.default_rng(2).normal(0, 0.01, res.W_o.shape)
    bare.W_o[...] = res.W_o
    engine_run(res, r_in, ticks)
    bare.run(r_in, ticks)
    return float(np.max(np.abs(res.r - bare.r)))


def csr_table(sizes, trials, quick: bool, backend, label: str, shared: bool = False) -> None:
    try:
        import scipy  # noqa: PLC0415
        import scipy.sparse as sp  # noqa: PLC0415
    except ImportError:
        print("   SciPy is not importable: CSR comparison skipped "
              "(pip install scipy to include it)")
        return
    rows = []
    for n in sizes:
        for K in trials:
            res = make_reservoir(n, K, backend, shared)
            A = res.A                        # (K or 1 shared, n, n), density 0.1
            # K trials = one block-diagonal CSR matrix, one sparse product per tick
            A_csr = sp.block_diag([sp.csr_matrix(A[0 if shared else k]) for k in range(K)],
                                  format="csr")
            r = np.random.default_rng(3).uniform(-1, 1, (K, n)).astype(A.dtype)
            out = np.zeros((K, n), dtype=A.dtype)
            assert np.allclose((A_csr @ r.ravel()).reshape(K, n),
                               np.matmul(A, r[..., None])[..., 0], atol=1e-4)
            t0 = time.perf_counter()
            np.matmul(A, r[..., None], out=out[..., None])
            per = time.perf_counter() - t0
            budget = 0.3 if quick else 3.0
            calls = max(2, int(budget / (2.6 * 11 * max(per, 1e-6))))

            def dense(A=A, r=r, out=out):
                np.matmul(A, r[..., None], out=out[..., None])

            def csr(A_csr=A_csr, r=r):
                return A_csr @ r.ravel()

            med = C.interleave({"dense": C.repeat(dense, calls), "csr": C.repeat(csr, calls)},
                               reps=3 if quick else 11, per_call=calls, max_s=budget,
                               min_reps=3)
            dense_mb = A.nbytes / 2**20
            csr_mb = (A_csr.data.nbytes + A_csr.indices.nbytes + A_csr.indptr.nbytes) / 2**20
            rows.append([label, n, K, f"{A_csr.nnz / K / n / n:.3f}", f"{dense_mb:.0f}",
                         f"{csr_mb:.0f}", f"{med['dense'] * 1e6:.1f}",
                         f"{med['csr'] * 1e6:.1f}", f"{med['csr'] / med['dense']:.2f}x"])
            del res, A, A_csr
    print(f"   recurrent product A @ r only (scipy {scipy.__version__}); K trials: dense = one "
          "batched matmul over (K, N, N), CSR = one block-diagonal matrix; SciPy's product "
          "is single-threaded")
    print(C.table(rows, ["BLAS", "neurons", "K", "density", "dense MB", "CSR MB", "dense µs",
                         "CSR µs", "CSR/dense"]))


def main(argv=None) -> None:
    p = C.parser(__doc__)
    p.add_argument("--neurons", default="1000,2000")
    p.add_argument("--trials", default="1,4,16")
    p.add_argument("--shared", action="store_true",
                   help="trial-shared reservoir matrices (the reservoir's 'seed')")
    args = p.parse_args(argv)
    quick = args.quick
    if quick and "--threads" not in (argv if argv is not None else sys.argv[1:]):
        args.threads = "1"
    if quick and "--trials" not in (argv if argv is not None else sys.argv[1:]):
        args.trials = "1,4"
    sizes = [int(v) for v in args.neurons.split(",")]
    trials = [int(v) for v in args.trials.split(",")]
    backend = get_backend("numpy", args.dtype)
    C.header(f"reservoir_step: DL Eq. 9 step, {args.dtype}, in {IN_SIZE}, readout {OUT_SIZE}")

    check_ticks = 20 if quick else 100
    diffs = [check_same_math(n, K, backend, check_ticks, args.shared) for n in sizes[:1]
             for K in trials[:2]]
    print(f"   same-math check ({sizes[0]} neurons, K = {trials[:2]}, {check_ticks} ticks): "
          f"max |r_engine - r_bare| = {max(diffs):.2e}")

    reps = 3 if quick else 11
    rows = []
    settings = C.blas_settings(args.threads)
    for n in sizes:
        for K in trials:
            res = make_reservoir(n, K, backend, args.shared)
            r_in = np.random.default_rng(1).uniform(0, 1, (K, IN_SIZE)).astype(backend.dtype)
            loops = {"bare": BareReservoir(res)}
            if K > 1:
                loops["dot loop"] = BareReservoir(res, per_trial_dot=True)
            if args.shared:
                loops["gemm"] = BareReservoir(res, gemm=True)
            for label, limit in settings:
                with C.blas_threads(limit):
                    engine_run(res, r_in, 2)
                    for lp in loops.values():
                        lp.run(r_in, 2)
                    t0 = time.perf_counter()
                    loops["bare"].run(r_in, 5)
                    per_tick = (time.perf_counter() - t0) / 5
                    budget = 0.3 if quick else (8.0 if n >= 2000 else 4.0)
                    if limit is None:
                        budget *= 0.5
                    ticks = max(2, int(budget / (1.3 * (1 + len(loops)) * reps * per_tick)))
                    fns = {"engine": lambda res=res, r_in=r_in, t=ticks: engine_run(res, r_in, t)}
                    for name, lp in loops.items():
                        fns[name] = lambda b=lp, r_in=r_in, t=ticks: b.run(r_in, t)
                    med = C.interleave(fns, reps=reps, per_call=ticks, max_s=budget,
                                       min_reps=min(reps, 5))
                e, b = med["engine"], med["bare"]
                dl = med.get("dot loop")
                gm = med.get("gemm")
                rows.append([label, n, K, f"{med['_reps']}x{ticks}", f"{e * 1e6:.1f}",
                             f"{b * 1e6:.1f}", f"{e / b:.3f}x", f"{e / K * 1e6:.1f}",
                             "-" if dl is None else f"{dl * 1e6:.1f}",
                             "-" if dl is None else f"{e / dl:.3f}x",
                             "-" if gm is None else f"{gm * 1e6:.1f}",
                             "-" if gm is None else f"{e / gm:.3f}x"])
            del res, loops
    order = {label: i for i, (label, _) in enumerate(settings)}
    rows.sort(key=lambda r: order[r[0]])
    print(C.table(rows, ["BLAS", "neurons", "K", "reps x ticks", "engine µs/tick", "bare µs/tick",
                         "engine/bare", "engine µs/trial-tick", "dot-loop µs/tick",
                         "engine/dot-loop", "gemm µs/tick", "engine/gemm"]))
    print("   medians of interleaved repetitions; target engine/bare <= 1.05x")

    for label, limit in settings[:1]:
        with C.blas_threads(limit):
            csr_table(sizes, trials, quick, backend, label, args.shared)


if __name__ == "__main__":
    sys.exit(main())
