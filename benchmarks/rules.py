"""Learning rules: one training tick of each rule vs its bare NumPy expression, and the engine tick.

What it measures
    Part 1 — each rule as the library computes it vs the same math written
    inline ("bare": the same operations, no library function structure,
    preallocated nothing special). Both get the same input arrays; their outputs
    are compared before timing (column "max |diff|"). Rows:

    * DL three-factor rule, analytic mode, one tick: ξ from the working memory
      with ``hsic.xi_from_coefficients`` (DL Eq. 8) and the ΔW update through
      ``ThreeFactorSynapses`` (deliver + step), for a 784→64 layer with N = 32
      and for the 2→2 tanh-MLP layer with N = 10 (K = 4 trials);
    * the per-sample coefficient rows: DL Eq. 8 (``paper``) and the exact ξ*
      (``exact``, doubly centred N×N kernels), and the one-shot
      ``hsic.xi(form="exact")`` (coefficients + ξ*);
    * the pHSIC engine form ``xi_phsic_from_coefficients`` (builds K_Z every tick);
    * the PL batch rule ``phsic.batch_rule`` at batch 256 on a 784→1024 layer
      (Gaussian kernel, no grouping; and with divisive normalisation in 32
      groups, PL's MNIST setup), K = 1. An extra informative column times the
      bare rule with the Gaussian kernel from the Gram identity
      ``|a|² + |b|² − 2 a·b`` instead of the (m, m, n) difference tensor;
    * the reservoir readout rule (DL Eq. 10 with the DL Eq. 13 filters),
      1000 neurons, ``ReadoutLearning.step``.

    Part 2 — one full engine tick of ``scenarios/tanh_mlp_analytic.yaml``
    (2→2→1 tanh MLP, analytic ξ, N = 10, 50-tick samples; the scenario runs
    K = 4, also timed at K = 1 and 16) driven as :class:`eventsim.runner.Runner`
    drives its training phase, in µs/tick over a few thousand ticks, with and
    without the per-sample objective logging, against a bare NumPy loop of the
    same per-tick and per-sample math (checked to give the same weights); then
    each engine component of the tick timed directly (µs/call × calls/tick),
    and a cProfile of the engine tick (top entries by own and by cumulative
    time).

    All variants run interleaved (every repetition runs each once, order
    rotating); numbers are medians. BLAS is pinned to 1 thread and, for part 1,
    also measured at the library default.

Target
    Part 1: library / bare ≤ 1.2× for every rule (the rules are small array
    expressions, so this is a measure of Python call overhead); part 2: an
    engine tick of the tanh MLP in the tens of µs (800k-tick runs: 10 µs/tick =
    8 s per run), and the engine / bare ratio as low as the SimPy structure
    allows (DESIGN.md: one coarse event per population per tick ≈ 1 %).

Usage
    python benchmarks/rules.py [--quick] [--threads both|1|default] [--dtype ...]
        [--skip-rules] [--skip-engine] [--profile-ticks T]
"""

from __future__ import annotations

import cProfile
import io
import math
import pstats
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import _common as C
import numpy as np

from eventsim.backend import RandomStreams, get_backend
from eventsim.plasticity import hsic, phsic
from eventsim.plasticity.readout import ReadoutLearning
from eventsim.plasticity.traces import ThreeFactorSynapses

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "tanh_mlp_analytic.yaml"


# --------------------------------------------------------------------------- data
def dl_case(K, x_dim, n, N, y_dim, dtype, seed=0):
    """Working-memory arrays and a layer for the DL rule (σ = s·sqrt(D))."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (K, N, x_dim)).astype(dtype)
    if y_dim == 1:
        y = rng.integers(0, 2, (K, N, 1)).astype(dtype)
    else:
        y = np.eye(y_dim, dtype=dtype)[rng.integers(0, y_dim, (K, N))]
    z = np.tanh(rng.normal(0, 1, (K, N, n))).astype(dtype)
    W = rng.normal(0, 1 / math.sqrt(x_dim), (K, n, x_dim)).astype(dtype)
    return dict(x=x, y=y, z=z, zpre=x[:, 0].copy(), W=W,
                sigma_x=0.2 * math.sqrt(x_dim), sigma_y=0.5 * math.sqrt(y_dim),
                sigma_z=0.5 * math.sqrt(n))


# ------------------------------------------------------------- bare expressions
# Every bare expression exists in two forms for the squared distances inside
# the Gaussian kernels: ``gram=False`` takes the explicit difference tensor
# (…, P, Q, D); ``gram=True`` uses |a|² + |b|² − 2 a·b (clipped at 0), one matmul.
def bare_sq_row0(a, gram):
    if gram:
        sa = (a * a).sum(-1)
        d2 = sa[:, :1] + sa - 2.0 * np.matmul(a[:, :1], np.swapaxes(a, -1, -2))[:, 0]
        return np.maximum(d2, 0.0)
    d = a[:, :1, :] - a
    return (d * d).sum(-1)


def bare_sq_full(a, gram):
    if gram:
        sa = (a * a).sum(-1)
        d2 = sa[..., :, None] + sa[..., None, :] - 2.0 * np.matmul(a, np.swapaxes(a, -1, -2))
        return np.maximum(d2, 0.0)
    d = a[..., :, None, :] - a[..., None, :, :]
    return (d * d).sum(-1)


def bare_paper_coef(x, y, gamma, sx, sy, gram=False):
    c = (np.exp(bare_sq_row0(x, gram) * (-0.5 / (sx * sx)))
         - gamma * np.exp(bare_sq_row0(y, gram) * (-0.5 / (sy * sy))))
    return c - c.mean(-1, keepdims=True)


def bare_exact_coef(x, y, gamma, sx, sy, gram=False):
    kx = np.exp(bare_sq_full(x, gram) * (-0.5 / (sx * sx)))
    kx = kx - kx.mean(-1, keepdims=True)
    kx = kx - kx.mean(-2, keepdims=True)
    ky = np.exp(bare_sq_full(y, gram) * (-0.5 / (sy * sy)))
    ky = ky - ky.mean(-1, keepdims=True)
    ky = ky - ky.mean(-2, keepdims=True)
    return kx[:, 0] - gamma * ky[:, 0]


def bare_xi(coef, z, sz, norm, gram=False):
    w = coef * np.exp(bare_sq_row0(z, gram) * (-0.5 / (sz * sz)))
    wz = np.matmul(w[:, None, :], z)[:, 0]
    return (w.sum(-1)[:, None] * z[:, 0] - wz) * (-2.0 / (sz * sz) / norm)


def bare_phsic_xi(coef_y, z, sz, gram=False):
    N = z.shape[1]
    kz = np.exp(bare_sq_full(z, gram) * (-0.5 / (sz * sz)))
    c = 2.0 * (kz[:, 0] - kz.mean((-2, -1))[:, None]) + coef_y
    w = c * kz[:, 0]
    wz = np.matmul(w[:, None, :], z)[:, 0]
    return (w.sum(-1)[:, None] * z[:, 0] - wz) * (-2.0 / (sz * sz) / N**2)


def bare_dw(W, xi, z0, zpre, eta):
    post = (1.0 - z0 * z0) * xi
    W += (post * -eta)[:, :, None] * zpre[:, None, :]


def bare_batch_rule(W, r, yc, spec, gram: bool):
    """PL Eq. 10/40 inline: ΔW, objective. Gaussian kernel; grouping none or divisive."""
    s2 = spec.sigma * spec.sigma
    a = np.matmul(r, np.swapaxes(W, -1, -2))
    z = np.where(a > 0, a, a * spec.slope)
    if spec.grouping == "none":
        v = z
    else:
        c = spec.groups
        size = z.shape[-1] // c
        zg = z.reshape(*z.shape[:-1], c, size)
        zc = zg - zg.mean(-1, keepdims=True)
        u = (spec.delta + (zc * zc).sum(-1)) / size
        w = u ** (1 - spec.power)
        v = w - w.mean(-1, keepdims=True)
    Kz = np.exp(bare_sq_full(v, gram) * (-0.5 / s2))
    ny = np.sqrt((yc * yc).sum(-1))
    Ky = np.matmul(yc, np.swapaxes(yc, -1, -2)) / np.maximum(ny[..., :, None] * ny[..., None, :],
                                                             1e-12)
    m = Kz.shape[-1]
    ky = Ky - Ky.mean((-2, -1), keepdims=True)
    kz = Kz - Kz.mean((-2, -1), keepdims=True)
    phi = (spec.gamma * ky - 2 * kz) / (m * m)
    A = phi * Kz
    g = (np.matmul(A, v) - A.sum(-1, keepdims=True) * v) * (2.0 / s2)
    if spec.grouping != "none":
        gu = g * (1 - spec.power) * u ** (-spec.power)
        g = (gu[..., None] * zc * (2.0 / size)).reshape(z.shape)
    ga = g * np.where(a > 0, 1.0, spec.slope).astype(a.dtype)
    dW = np.matmul(np.swapaxes(ga, -1, -2), r)
    mk = Kz.mean((-2, -1))
    obj = ((Kz * Kz).mean((-2, -1)) - mk * mk
           - spec.gamma * ((Ky * Kz).mean((-2, -1)) - Ky.mean((-2, -1)) * mk))
    return dW, obj


# ------------------------------------------------------------------ part 1 rows
def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(1e-30, float(np.max(np.abs(a)))))


def dl_rows(case, gamma, backend):
    """[(name, lib, bare, gram, diff)] for one DL layer configuration."""
    x, y, z, zpre = case["x"], case["y"], case["z"], case["zpre"]
    sx, sy, sz = case["sigma_x"], case["sigma_y"], case["sigma_z"]
    N = z.shape[1]
    eta = 5e-3
    coef = hsic.xi_coefficients(x, y, gamma=gamma, sigma_x=sx, sigma_y=sy, form="paper")

    # library: ξ + synapse update through ThreeFactorSynapses (τ_e = 0: β used directly)
    layer = SimpleNamespace(W=case["W"].copy(), z=z[:, 0].copy(),
                            pre=SimpleNamespace(z=zpre.copy()))
    syn = ThreeFactorSynapses(layer, dt_ms=1.0, backend=backend)
    syn.enabled, syn.eta_base = True, eta
    W_bare = {False: case["W"].copy(), True: case["W"].copy()}
    z0 = z[:, 0].copy()

    def lib_tick():
        xi = hsic.xi_from_coefficients(coef, z, sz)
        syn.deliver(xi)
        syn.step(1)

    def bare_tick(gram):
        xi = bare_xi(coef, z, sz, (N - 1) ** 2, gram)
        bare_dw(W_bare[gram], xi, z0, zpre, eta)

    # exactness of the update: one step from W = 0, so W afterwards is ΔW itself
    # (ΔW does not depend on W; W_after − W_before would add float32 rounding of W)
    W0 = np.zeros_like(case["W"])
    dw_lib = None
    diffs = []
    for gram in (False, True):
        layer.W[...] = W0
        W_bare[gram][...] = W0
        lib_tick()
        bare_tick(gram)
        dw_lib = layer.W - W0
        diffs.append(_rel(dw_lib, W_bare[gram] - W0))

    coef_y = hsic.phsic_label_coefficients(y, gamma=gamma, sigma_y=sy)
    rows = [("ξ (DL Eq. 8) + ΔW, per tick", lib_tick,
             lambda: bare_tick(False), lambda: bare_tick(True), max(diffs))]
    for name, lib, bare in (
        ("paper coefficients, per sample",
         lambda: hsic.xi_coefficients(x, y, gamma=gamma, sigma_x=sx, sigma_y=sy, form="paper"),
         lambda g: bare_paper_coef(x, y, gamma, sx, sy, g)),
        ("exact ξ* coefficients, per sample",
         lambda: hsic.xi_coefficients(x, y, gamma=gamma, sigma_x=sx, sigma_y=sy, form="exact"),
         lambda g: bare_exact_coef(x, y, gamma, sx, sy, g)),
        ("exact ξ* one-shot (hsic.xi)",
         lambda: hsic.xi(x, y, z, gamma=gamma, sigma_x=sx, sigma_y=sy, sigma_z=sz,
                         form="exact"),
         lambda g: bare_xi(bare_exact_coef(x, y, gamma, sx, sy, g), z, sz, (N - 1) ** 2, g)),
        ("pHSIC ξ (xi_phsic_from_coefficients)",
         lambda: hsic.xi_phsic_from_coefficients(coef_y, z, sz),
         lambda g: bare_phsic_xi(coef_y, z, sz, g)),
    ):
        ref = lib()
        diff = max(_rel(ref, bare(False)), _rel(ref, bare(True)))
        rows.append((name, lib, (lambda b: lambda: b(False))(bare),
                     (lambda b: lambda: b(True))(bare), diff))
    return rows


def pl_rows(batch, dtype):
    rng = np.random.default_rng(5)
    K, n_in, n_out = 1, 784, 1024
    W = rng.uniform(-1 / 28, 1 / 28, (K, n_out, n_in)).astype(dtype)
    r = rng.uniform(0, 1, (K, batch, n_in)).astype(dtype)
    labels = rng.integers(0, 10, (K, batch))
    yc = (np.eye(10, dtype=dtype)[labels] - 0.1).astype(dtype)
    rows = []
    for title, spec in (("PL batch rule, gaussian", phsic.PHSICSpec()),
                        ("PL batch rule, divisive 32 groups",
                         phsic.PHSICSpec(grouping="divisive", groups=32))):
        def lib(spec=spec):
            return phsic.batch_rule(W, r, yc, spec)[0]

        def bare(spec=spec, gram=False):
            return bare_batch_rule(W, r, yc, spec, gram=gram)[0]

        ref = lib()
        diff = max(_rel(ref, bare()), _rel(ref, bare(gram=True)))
        rows.append((f"{title} ({n_in}->{n_out}, m={batch}, K={K})", lib, bare,
                     (lambda s: lambda: bare(s, True))(spec), diff))
    return rows


def readout_rows(dtype, backend, n=1000):
    rows = []
    for K, n_out in ((4, 2), (1, 64)):
        rng = np.random.default_rng(7)
        res = SimpleNamespace(r_o=rng.normal(0, 1, (K, n_out)).astype(dtype),
                              r=np.tanh(rng.normal(0, 1, (K, n)).astype(dtype)),
                              W_o=np.zeros((K, n_out, n), dtype=dtype))
        target = rng.normal(0, 1, (K, n_out)).astype(dtype)
        ro = ReadoutLearning(res, eta0=1e-4, tau_decay_ticks=20_000.0, tau_lpf_ticks=5.0,
                             backend=backend)
        ro.enabled, ro.t_on = True, 0
        st = SimpleNamespace(p_bar=np.zeros(K, dtype), ro_bar=np.zeros((K, n_out), dtype),
                             W_o=res.W_o.copy())
        alpha = dtype.type(1.0 / 5.0)

        def bare(st=st, res=res, target=target, tick=10, a=alpha):
            err = res.r_o - target
            perf = -(err * err).sum(-1)
            st.p_bar += a * (perf - st.p_bar)
            st.ro_bar += a * (res.r_o - st.ro_bar)
            gate = (perf > st.p_bar).astype(dtype)
            eta = dtype.type(1e-4 / (1.0 + tick / 20_000.0))
            post = (eta * gate)[:, None] * (res.r_o - st.ro_bar)
            st.W_o += post[:, :, None] * res.r[:, None, :]

        def lib(ro=ro, target=target):
            ro.step(10, target)

        lib()
        bare()
        rows.append((f"readout DL Eq. 10 ({n} neurons, out {n_out}, K={K})", lib, bare, None,
                     _rel(res.W_o, st.W_o)))
    return rows


def part1(args, dtype, backend) -> None:
    quick = args.quick
    cases = [
        ("784->64, N=32, K=4", dl_case(4, 784, 64, 32, 10, dtype), 2.0),
        ("2->2 tanh MLP, N=10, K=4", dl_case(4, 2, 2, 10, 1, dtype), 20.0),
    ]
    rows = []
    for tag, case, gamma in cases:
        for name, lib, bare, gram, diff in dl_rows(case, gamma, backend):
            rows.append((f"DL {name} [{tag}]", lib, bare, gram, diff))
    rows += readout_rows(dtype, backend)
    rows += pl_rows(64 if quick else 256, dtype)

    settings = C.blas_settings(args.threads)
    table = []
    reps = 3 if quick else 9
    for label, limit in settings:
        with C.blas_threads(limit):
            for name, lib, bare, gram, diff in rows:
                per = C.per_unit(lib)
                budget = 0.15 if quick else (6.0 if per > 0.02 else 1.2)
                if limit is None:
                    budget *= 0.6
                variants = {"lib": lib, "bare": bare}
                if gram is not None:
                    variants["gram"] = gram
                calls = max(1, int(budget / (2.0 * len(variants) * reps * per)))
                med = C.interleave({k: C.repeat(f, calls) for k, f in variants.items()},
                                   reps=reps, per_call=calls, max_s=budget, min_reps=3)
                best = "bare" if med["bare"] <= med.get("gram", math.inf) else "gram"
                table.append([label, name, f"{med['_reps']}x{calls}",
                              f"{med['lib'] * 1e6:.1f}", f"{med['bare'] * 1e6:.1f}",
                              "-" if gram is None else f"{med['gram'] * 1e6:.1f}",
                              C.paired_ratio(med, "lib", best), f"{diff:.1e}"])
    print(C.table(table, ["BLAS", "rule", "reps x calls", "library µs", "bare µs",
                          "bare-Gram µs", "library/best bare (range)", "rel. diff"]))
    print("   bare: squared distances from the explicit difference tensor; bare-Gram: from "
          "|a|²+|b|²-2a·b (one matmul).\n   rel. diff: max |library − bare| / max |library| "
          "over both bare forms (ΔW rows: the update ΔW).")


# ------------------------------------------------------------------- part 2
def make_runner(trials: int | None = None):
    from eventsim.config.scenario import load_scenario  # noqa: PLC0415
    from eventsim.runner import Runner, eta_for_epoch  # noqa: PLC0415

    sc = load_scenario(SCENARIO, None if trials is None else {"trials": trials})
    runner = Runner(sc)
    sim = runner.sim
    phase = sc.spec.phases[0]
    lr = sc.spec.rule.lr
    # what Runner.run does at the start of the training phase
    sim.phase = phase.name
    sim.set_learning(layers="layers" in phase.learn, readouts="readouts" in phase.learn,
                     explore=phase.explore, layer_decay_ms=lr.decay, t_on=sim.tick)
    sim.reservoir_drives_layers = "layers" in phase.learn
    sim.set_feed(runner._feed("train", shuffle=True))
    sim.set_eta(eta_for_epoch(lr, 0))
    return runner


class BareMLP:
    """The tanh-MLP analytic training tick in plain NumPy, from a fresh runner's state.

    Per sample: next sample (per-trial shuffled order from the "presenter"
    streams), working-memory ring update and the DL Eq. 8 coefficient rows
    per layer. Per tick: each layer's Euler step with its noise (64-tick blocks
    from the "<layer>/noise" streams), the memory write, ξ (DL Eq. 8), then
    ΔW = −η(t) (1 − z²) ξ zpreᵀ for every layer (after all layers stepped).
    """

    def __init__(self, runner) -> None:
        sim, ds = runner.sim, runner.ds
        self.K = K = sim.trials
        self.T = sim.sample_ticks
        dt = sim.backend.dtype
        self.dtype = dt
        self.layers = []
        for name in ("h1", "out"):
            pop, rule, syn = sim.populations[name], sim.rules[name], sim.synapses[name]
            self.layers.append(SimpleNamespace(
                name=name, W=pop.W.copy(), u=np.zeros_like(pop.u), z=np.zeros_like(pop.z),
                leak=pop.leak, n=pop.size, rule=rule, amp=pop.noise.amplitude,
                gens=RandomStreams(sim.seeds, f"{name}/noise").generators,
                eta_base=syn.eta_base, decay_ticks=syn.decay_ticks, t_on=syn.t_on,
                zmem=np.zeros((K, rule.memory, self.T, pop.size), dt), coef=None))
        self.N = self.layers[0].rule.memory
        self.xmem = np.zeros((K, self.N, ds.input_dim), dt)
        self.ymem = np.zeros((K, self.N, ds.label_dim), dt)
        self.slot, self.count = -1, 0
        self.x_data = np.asarray(ds.x_train, dtype=dt)
        self.y_data = np.asarray(ds.y_train)[..., None].astype(dt)   # binary: label_dim 1
        self.S = self.x_data.shape[1]
        self.presenter = RandomStreams(sim.seeds, "presenter").generators
        self.rows = np.arange(K)
        self.order = None
        self.pos = self.S
        self.noise_pos = 64
        self.tick = 0
        self.x = np.zeros((K, ds.input_dim), dt)

    def _sample(self) -> None:
        if self.pos >= self.S:
            self.order = np.stack([g.permutation(self.S) for g in self.presenter])
            self.pos = 0
        idx = self.order[:, self.pos]
        self.pos += 1
        self.x = self.x_data[self.rows, idx]
        y = self.y_data[self.rows, idx]
        self.slot = (self.slot + 1) % self.N
        self.count = min(self.count + 1, self.N)
        self.xmem[:, self.slot] = self.x
        self.ymem[:, self.slot] = y
        self.mem_order = (self.slot - np.arange(self.count)) % self.N
        xm, ym = self.xmem[:, self.mem_order], self.ymem[:, self.mem_order]
        for L in self.layers:
            r = L.rule
            L.coef = bare_paper_coef(xm, ym, r.gamma, r.sigma_x, r.sigma_y)

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            tick = self.tick
            phase = tick % self.T
            if phase == 0:
                self._sample()
            if self.noise_pos >= 64:
                for L in self.layers:
                    L.noise = np.ascontiguousarray(np.swapaxes(np.stack(
                        [g.uniform(-L.amp, L.amp, (64, L.n)) for g in L.gens]
                    ).astype(self.dtype), 0, 1))
                self.noise_pos = 0
            p = self.noise_pos
            self.noise_pos += 1
            pre = self.x
            pres = []
            for L in self.layers:
                drive = np.matmul(L.W, pre[..., None])[..., 0]
                L.u += L.leak * (drive - L.u)
                np.tanh(L.u, out=L.z)
                L.z += L.noise[p]
                L.zmem[:, self.slot, phase] = L.z
                pres.append(pre)
                if self.count >= 2:
                    zm = L.zmem[:, self.mem_order, phase]
                    L.xi = bare_xi(L.coef, zm, L.rule.sigma_z, (self.count - 1) ** 2)
                else:
                    L.xi = np.zeros_like(L.z)
                pre = L.z
            for L, zpre in zip(self.layers, pres, strict=True):
                eta = L.eta_base
                if L.decay_ticks > 0 and tick > L.t_on:
                    eta = L.eta_base / (1.0 + (tick - L.t_on) / L.decay_ticks)
                bare_dw(L.W, L.xi, L.z, zpre, self.dtype.type(eta))
            self.tick += 1


def component_table(quick: bool) -> None:
    """Per-tick cost of each engine component of the tanh MLP tick, timed directly
    (no profiler): every call as the engine makes it, on a warmed-up runner."""
    from simpy import Environment  # noqa: PLC0415

    from eventsim.engine.channels import Channel  # noqa: PLC0415
    from eventsim.engine.simulator import _At  # noqa: PLC0415

    r = make_runner()
    sim = r.sim
    sim.run(sim.tick + 520)                    # mid-sample, memory full, learning on
    tick = sim.tick
    phase = sim.phase_of(tick)
    n = 200 if quick else 2000
    rows = []

    def add(what, fn, per_tick_calls, note="", batch=None):
        """``fn`` is one call; with ``batch``, ``batch()`` does ``n`` calls at once."""
        run = batch if batch is not None else C.repeat(fn, n)
        per = C.interleave({"x": run}, reps=3 if quick else 7, per_call=n)["x"]
        rows.append([what, f"{per * 1e6:.2f}", per_tick_calls,
                     f"{per * 1e6 * per_tick_calls:.1f}", note])

    layers = [name for name in sim.populations if sim.populations[name].kind == "layer"]
    name = layers[0]
    pop, mem, src, syn = (sim.populations[name], sim.memories[name], sim.xi_sources[name],
                          sim.synapses[name])
    xi = src(phase)
    nl = len(layers)
    add("Layer.step", pop.step, nl)
    add("WorkingMemory.write_z", lambda: mem.write_z(phase, pop.z), nl)
    add("AnalyticXi(phase): z gather + xi_from_coefficients", lambda: src(phase), nl)
    ch = Channel("bench", delay=0, jitter=0, jitter_dist="uniform", loss=0.0, period=1,
                 seeds=sim.seeds, schedule=lambda delay, cb: None)
    ch.receiver = syn
    add("Channel.send (scheduler stubbed out)", lambda: ch.send(tick, xi), nl,
        "np.unique, arrival bookkeeping")
    W0 = pop.W.copy()

    def deliver_step():
        syn.deliver(xi)
        syn.step(tick)

    add("ThreeFactorSynapses.deliver + step", deliver_step, nl)
    pop.W[...] = W0
    env = Environment()

    def proc():
        while True:
            yield _At(env, 1, 20_000)

    env.process(proc())
    add("SimPy event + process resume", None, 1 + 1 / sim.sample_ticks,
        "the tick process + the presenter once per sample",
        batch=lambda: env.run(until=env.now + n))
    add("network.served_layer / taps (reservoir mode only)",
        lambda: sim.network.served_layer(name), 0, "3 calls/tick/reservoir in reservoir mode")
    add("AnalyticXi.objectives (once per sample)", lambda: src.objectives(phase),
        nl / sim.sample_ticks, "objective_every = 1")
    add("AnalyticXi.new_sample (once per sample)", src.new_sample, nl / sim.sample_ticks)
    print(f"   components of one tanh_mlp_analytic tick (K = {sim.trials}, {nl} layers, "
          "1 BLAS thread), timed directly on a warmed-up simulator")
    print(C.table(rows, ["component", "µs/call", "calls/tick", "µs/tick", "note"]))


def part2(args) -> None:
    quick = args.quick
    with C.blas_threads(1):
        # same-math check: weights after a few samples from identical starts
        runner = make_runner()
        bare = BareMLP(make_runner())
        check = 150 if quick else 1000
        runner.sim.run(check)
        bare.run(check)
        diffs = [float(np.max(np.abs(runner.sim.populations[L.name].W - L.W)))
                 for L in bare.layers]
        w_scale = max(float(np.max(np.abs(L.W))) for L in bare.layers)
        print(f"   same-math check after {check} ticks: max |W_engine - W_bare| = "
              f"{max(diffs):.2e} (max |W| = {w_scale:.2f})")

        ticks = 250 if quick else 2000
        reps = 3 if quick else 7
        rows = []
        for K in (4,) if quick else (1, 4, 16):
            eng, eng_nolog = make_runner(K), make_runner(K)
            eng_nolog.sim.objective_every = 10**12  # never
            bare = BareMLP(make_runner(K))
            for r in (eng, eng_nolog):
                r.sim.run(r.sim.tick + 500)
            bare.run(500)
            med = C.interleave({
                "engine": (lambda e: lambda: e.sim.run(e.sim.tick + ticks))(eng),
                "engine, objectives not logged":
                    (lambda e: lambda: e.sim.run(e.sim.tick + ticks))(eng_nolog),
                "bare": (lambda b: lambda: b.run(ticks))(bare),
            }, reps=reps, per_call=ticks)
            rows += [[K, name, f"{med[name] * 1e6:.1f}", C.paired_ratio(med, name, "bare"),
                      f"{med[name] / K * 1e6:.1f}", f"{med[name] * 800_000:.0f}"]
                     for name in ("engine", "engine, objectives not logged", "bare")]
        print(f"   tanh_mlp_analytic training tick (1 BLAS thread), medians of {reps} "
              f"interleaved repetitions of {ticks} ticks; the scenario runs K = 4")
        print(C.table(rows, ["K", "variant", "µs/tick", "vs bare", "µs/trial-tick",
                             "s per 800k ticks"]))

        component_table(quick)

        # profile
        prof_ticks = args.profile_ticks or (500 if quick else 5000)
        r = make_runner()
        r.sim.run(500)
        pr = cProfile.Profile()
        start = r.sim.tick
        t0 = time.perf_counter()
        pr.enable()
        r.sim.run(start + prof_ticks)
        pr.disable()
        wall = time.perf_counter() - t0
        for key, n in (("tottime", 22), ("cumulative", 30)):
            buf = io.StringIO()
            st = pstats.Stats(pr, stream=buf)
            st.sort_stats(key).print_stats(n)
            text = buf.getvalue()
            body = text[text.index("   ncalls"):] if "   ncalls" in text else text
            print(f"   cProfile of {prof_ticks} engine ticks ({wall / prof_ticks * 1e6:.0f} "
                  f"µs/tick under the profiler), top {n} by {key}:")
            print(body.replace(str(ROOT) + "/", "").replace(
                str(Path(np.__file__).parent.parent) + "/", "").rstrip())


def main(argv=None) -> None:
    p = C.parser(__doc__)
    p.add_argument("--skip-rules", action="store_true", help="skip part 1")
    p.add_argument("--skip-engine", action="store_true", help="skip part 2")
    p.add_argument("--profile-ticks", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick and "--threads" not in (argv if argv is not None else sys.argv[1:]):
        args.threads = "1"
    backend = get_backend("numpy", args.dtype)
    dtype = backend.dtype
    C.header(f"rules: one training tick per rule vs bare NumPy, {args.dtype}")
    if not args.skip_rules:
        part1(args, dtype, backend)
    if not args.skip_engine:
        print()
        C.header("rules part 2: engine tick of scenarios/tanh_mlp_analytic.yaml")
        part2(args)


if __name__ == "__main__":
    sys.exit(main())
