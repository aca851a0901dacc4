"""Engine overhead: one reservoir-mode tick through the SimPy engine vs a bare NumPy loop.

What it measures
    The same tick — a 2000-neuron dense float32 reservoir (DL Eq. 9, constants
    folded into the matrices) listening to [x, labels, z], plus a tiny rate
    layer x(100) → z(10) (DL Eq. 6) with its noise — run

    (a) through the engine: a :class:`eventsim.engine.simulator.Simulator` built
        from a small network (input ``x`` → layer ``z``, reservoir ``mem`` with
        ``kind: modulatory`` to ``z``), ``modulator='reservoir'``, no learning
        rules, a :class:`eventsim.feed.SampleFeed` presenting a new sample every
        50 ticks, exactly as the runner drives it (``Simulator.run`` in chunks);
    (b) a bare NumPy loop of exactly the same math (same matrices, same noise
        streams drawn in the same 64-tick blocks, same sample order), written
        in place with preallocated buffers;
    (c) with ``--stacked`` (informative): the bare loop with ``[A | B | C]``
        stacked into one matrix so the reservoir does one matrix-vector product
        per tick (the "tuned loop" of DESIGN.md). Off by default: its own 17 MB
        copy of the matrices competes with (a) and (b) for the L3 cache.

    (b) reads the engine's own matrices (same memory), so both see the same
    cache behaviour; at 2000 neurons the float32 recurrent matrix is 16 MB and
    the matrix-vector product is bound by memory bandwidth.

    Before timing, (a) and (b) are run side by side from the same initial state
    and their reservoir rates are compared, so the bare loop is checked to be
    the same computation.

    The variants run interleaved (every repetition runs each once, order
    rotating) and the table shows the median ms/tick and the ratio
    engine / bare, with BLAS pinned to 1 thread and at the library default.

Target
    engine / bare below 1.10× at K = 1 trial (float32, 2000 neurons).

    A second, small reservoir (100 neurons, informative) shows the engine's
    fixed per-tick cost without the large matrix-vector product hiding it.

Usage
    python benchmarks/engine_overhead.py [--quick] [--trials K] [--neurons 2000,100]
        [--threads both|1|default] [--dtype float32|float64]
"""

from __future__ import annotations

import sys

import _common as C
import numpy as np

from eventsim.backend import RandomStreams, get_backend
from eventsim.config.network import parse_network
from eventsim.engine.simulator import Simulator
from eventsim.feed import SampleFeed

NETWORK = """
name: engine-overhead
populations:
  x:   {{kind: input, size: {x}}}
  z:   {{kind: layer, size: {z}, tau: 5 ms, noise: 0.05}}
  mem: {{kind: reservoir, size: {n}, tau: 50 ms, chaos: 1.5, density: 0.1,
        noise: {{hidden: 0.05, readout: 0.25}}}}
projections:
  - {{from: x, to: z}}
  - {{from: mem, to: z, kind: modulatory}}
"""

X_DIM, Z_DIM, SAMPLE_TICKS, SAMPLES, BLOCK = 100, 10, 50, 64, 64


def make_data(trials: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (trials, SAMPLES, X_DIM))
    y = rng.integers(0, 2, (trials, SAMPLES))
    return x, y


def make_engine(n: int, seeds, backend, x, y) -> Simulator:
    net = parse_network(NETWORK.format(x=X_DIM, z=Z_DIM, n=n), file="<engine_overhead>")
    sim = Simulator(net, seeds=seeds, backend=backend, dt_ms=1.0, sample_ticks=SAMPLE_TICKS,
                    label_dim=1, modulator="reservoir")
    sim.set_feed(SampleFeed(x, y, 2, backend, RandomStreams(seeds, "presenter")))
    return sim


class BareLoop:
    """DL Eq. 6 + Eq. 9 for K trials in plain NumPy, from a simulator's initial state.

    Same matrices, same noise streams ("<pop>/noise" names, 64-tick blocks,
    float64 draws cast to the state dtype) and same presentation order as the
    engine, so the trajectories agree up to rounding.
    """

    def __init__(self, sim: Simulator, x, y, stacked: bool = False) -> None:
        res, lay = sim.populations["mem"], sim.populations["z"]
        dt = sim.backend.dtype
        self.K = K = sim.trials
        self.n = n = res.size
        self.dtype = dt
        self.stacked = stacked
        self.W = lay.W.copy()                      # (K, z, x)
        self.leak = lay.leak
        self.decay = res.decay
        in_size = X_DIM + 1 + Z_DIM
        # state s = [r | x | y | z | r_o]; the reservoir drive is [A | B | C] @ s
        self.s = np.zeros((K, n + in_size + Z_DIM), dtype=dt)
        self.r = self.s[:, :n]
        self.xin = self.s[:, n:n + X_DIM]
        self.yin = self.s[:, n + X_DIM:n + X_DIM + 1]
        self.zin = self.s[:, n + X_DIM + 1:n + in_size]
        self.r_o = self.s[:, n + in_size:]
        self.rin = self.s[:, n:n + in_size]
        # contiguous copies: the engine keeps them as column blocks of one stacked matrix
        self.A, self.B, self.Cfb = (np.ascontiguousarray(m) for m in (res.A, res.B, res.C))
        self.M = np.ascontiguousarray(np.concatenate([res.A, res.B, res.C], axis=-1))
        self.W_o = res.W_o.copy()                  # (K, out, n)
        self.u = np.zeros((K, n), dtype=dt)
        self.uz = np.zeros((K, Z_DIM), dtype=dt)
        self.drive = np.zeros((K, n), dtype=dt)
        self.tmp = np.zeros((K, n), dtype=dt)
        self.zdrive = np.zeros((K, Z_DIM), dtype=dt)
        seeds = sim.seeds
        self.g_h = RandomStreams(seeds, "mem/hidden_noise").generators
        self.g_o = RandomStreams(seeds, "mem/readout_noise").generators
        self.g_z = RandomStreams(seeds, "z/noise").generators
        self.a_h = float(sim.network.graph.nodes["mem"]["spec"].noise.hidden)
        self.a_o = float(sim.network.graph.nodes["mem"]["spec"].noise.readout)
        self.a_z = float(sim.network.graph.nodes["z"]["spec"].noise)
        self.presenter = RandomStreams(seeds, "presenter").generators
        self.x_data = x.astype(dt)
        self.y_data = y.astype(dt)
        self.rows = np.arange(K)
        self.order = None
        self.pos = SAMPLES
        self.pos_noise = BLOCK
        self.tick = 0

    def _noise_blocks(self) -> None:
        def block(gens, a, size):
            return np.ascontiguousarray(np.swapaxes(np.stack(
                [g.uniform(-a, a, (BLOCK, size)) for g in gens]).astype(self.dtype), 0, 1))
        self.nh = block(self.g_h, self.a_h, self.n)
        self.no = block(self.g_o, self.a_o, Z_DIM)
        self.nz = block(self.g_z, self.a_z, Z_DIM)
        self.pos_noise = 0

    def _present(self) -> None:
        if self.pos >= SAMPLES:
            self.order = np.stack([g.permutation(SAMPLES) for g in self.presenter])
            self.pos = 0
        idx = self.order[:, self.pos]
        self.pos += 1
        self.xin[...] = self.x_data[self.rows, idx]
        self.yin[:, 0] = self.y_data[self.rows, idx]

    def run(self, ticks: int) -> None:
        K, mm = self.K, np.matmul
        for _ in range(ticks):
            if self.tick % SAMPLE_TICKS == 0:
                self._present()
            if self.pos_noise >= BLOCK:
                self._noise_blocks()
            p = self.pos_noise
            self.pos_noise += 1
            # layer z (DL Eq. 6): u += leak (W x − u); z = tanh(u) + ζ
            mm(self.W, self.xin[..., None], out=self.zdrive[..., None])
            self.zdrive -= self.uz
            self.zdrive *= self.leak
            self.uz += self.zdrive
            np.tanh(self.uz, out=self.zin)
            self.zin += self.nz[p]
            # reservoir (DL Eq. 9): u ← decay u + A r + B r_in + C r_o
            # (every trial has its own matrices: A, B, C are (K, n, ·))
            if self.stacked:
                if K == 1:
                    np.dot(self.M[0], self.s[0], out=self.drive[0])
                else:
                    mm(self.M, self.s[..., None], out=self.drive[..., None])
            elif K == 1:
                np.dot(self.A[0], self.r[0], out=self.drive[0])
                np.dot(self.B[0], self.rin[0], out=self.tmp[0])
                self.drive += self.tmp
                np.dot(self.Cfb[0], self.r_o[0], out=self.tmp[0])
                self.drive += self.tmp
            else:
                mm(self.A, self.r[..., None], out=self.drive[..., None])
                mm(self.B, self.rin[..., None], out=self.tmp[..., None])
                self.drive += self.tmp
                mm(self.Cfb, self.r_o[..., None], out=self.tmp[..., None])
                self.drive += self.tmp
            self.u *= self.decay
            self.u += self.drive
            np.tanh(self.u, out=self.r)
            self.r += self.nh[p]
            # readout r_o = W_o r + ζ_o
            mm(self.W_o, self.r[..., None], out=self.r_o[..., None])
            self.r_o += self.no[p]
            self.tick += 1


def check_same_math(n: int, trials: int, backend, ticks: int) -> float:
    """Max |r_engine − r_bare| after ``ticks`` ticks from the same initial state."""
    x, y = make_data(trials)
    seeds = list(range(trials))
    sim = make_engine(n, seeds, backend, x, y)
    bare = BareLoop(make_engine(n, seeds, backend, x, y), x, y)
    sim.run(ticks)
    bare.run(ticks)
    return float(np.max(np.abs(sim.populations["mem"].r - bare.r)))


def measure(n: int, K: int, backend, limit, reps: int, budget_s: float,
            stacked: bool) -> dict[str, float]:
    """Interleaved medians (s/tick) of the engine and the bare loop at one size.

    The bare loop reads the engine's own matrices (same memory, so the same
    cache behaviour); it never writes them.
    """
    x, y = make_data(K)
    seeds = list(range(K))
    with C.blas_threads(limit):
        sim = make_engine(n, seeds, backend, x, y)
        variants = {"engine": None, "bare": BareLoop(sim, x, y)}
        if stacked:
            variants["stacked"] = BareLoop(sim, x, y, stacked=True)
        # warm up (first noise blocks, first sample, BLAS buffers) and calibrate
        sim.run(sim.tick + SAMPLE_TICKS)
        for name in list(variants)[2:]:
            variants[name].run(SAMPLE_TICKS)
        per_tick = C.per_unit(lambda: variants["bare"].run(SAMPLE_TICKS), SAMPLE_TICKS)
        ticks = max(SAMPLE_TICKS, int(budget_s / (1.3 * len(variants) * reps * per_tick)))
        ticks = ticks // SAMPLE_TICKS * SAMPLE_TICKS
        fns = {"engine": lambda: sim.run(sim.tick + ticks)}
        for name, loop in list(variants.items())[1:]:
            fns[name] = (lambda lp: lambda: lp.run(ticks))(loop)
        med = C.interleave(fns, reps=reps, per_call=ticks, max_s=budget_s,
                           min_reps=min(reps, 5))
    med["ticks"] = ticks
    return med


def main(argv=None) -> None:
    p = C.parser(__doc__)
    p.add_argument("--trials", type=int, default=1, help="K trials batched (default 1)")
    p.add_argument("--neurons", default="2000,100",
                   help="reservoir sizes, comma-separated (default 2000,100; the small one "
                        "exposes the fixed per-tick cost)")
    p.add_argument("--stacked", action="store_true",
                   help="also time the bare loop with [A | B | C] stacked into one matrix "
                        "(its own copy of the matrices competes for the cache)")
    args = p.parse_args(argv)
    quick = args.quick
    if quick and "--threads" not in (argv if argv is not None else sys.argv[1:]):
        args.threads = "1"
    sizes = [int(v) for v in args.neurons.split(",")]
    K = args.trials
    backend = get_backend("numpy", args.dtype)
    C.header(f"engine_overhead: reservoir {'/'.join(map(str, sizes))} neurons + layer "
             f"{X_DIM}->{Z_DIM}, K = {K}, {args.dtype}, sample = {SAMPLE_TICKS} ticks")

    check_ticks = 60 if quick else 300
    for n in sizes:
        diff = check_same_math(n, K, backend, check_ticks)
        print(f"   same-math check, {n} neurons: max |r_engine - r_bare| after {check_ticks} "
              f"ticks = {diff:.2e}")

    reps = 3 if quick else 15
    rows = []
    for label, limit in C.blas_settings(args.threads):
        for n in sizes:
            big = n >= 1000
            budget = (0.6 if big else 0.3) if quick else (25.0 if big else 6.0)
            med = measure(n, K, backend, limit, reps, budget, args.stacked)
            e, b = med["engine"], med["bare"]
            row = [label, n, f"{med['_reps']}x{med['ticks']}", f"{e * 1e3:.3f}", f"{b * 1e3:.3f}",
                   C.paired_ratio(med, "engine", "bare"), f"{(e - b) * 1e6:+.1f}"]
            if args.stacked:
                row += [f"{med['stacked'] * 1e3:.3f}", C.paired_ratio(med, "engine", "stacked")]
            rows.append(row)
    heads = ["BLAS", "neurons", "reps x ticks", "engine ms/tick", "bare ms/tick",
             "engine/bare (range)",
             "engine-bare µs/tick"]
    if args.stacked:
        heads += ["stacked ms/tick", "engine/stacked"]
    print(C.table(rows, heads))
    print("   ms/tick: medians of interleaved repetitions; engine/bare: median (min-max) of the "
          "per-repetition ratios;\n   target engine/bare < 1.10x at 2000 "
          "neurons (the 100-neuron row is informative: it shows the fixed per-tick cost)")


if __name__ == "__main__":
    sys.exit(main())
