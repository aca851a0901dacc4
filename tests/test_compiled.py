"""The ``numba`` backend: compiled per-tick kernels (eventsim.compiled) against the array code.

* ξ (DL Eq. 8 and ξ*) against the explicit loop over the equation and against the array
  contraction;
* the elementwise kernels (the instant DL Eq. 8 update with momentum, the factored
  drive, add and commit) against the NumPy code, bit for bit in float32;
* whole simulations (a wide first layer with factored updates, momentum, delayed and lossy
  deliveries) against the ``numpy`` backend to rounding, deterministic, and with a trial's
  numbers independent of how many trials are batched;
* the backend's errors.
"""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from _shared import F32, F64, wide_sim

from eventsim.backend import available_backends, get_backend
from eventsim.errors import BackendError
from eventsim.plasticity import hsic
from eventsim.plasticity.traces import ThreeFactorSynapses

compiled = pytest.importorskip("eventsim.compiled")
N32 = get_backend("numba", "float32")
N64 = get_backend("numba", "float64")


def _loop_xi(coef, z, sigma_z):
    """``1/(N−1)² Σ_q c_q α_i(q)``, ``α_i(q) = −(2/σ²) k(z0, zq)(z0_i − zq_i)``; one trial."""
    N, n = z.shape
    out = np.zeros(n)
    for q in range(N):
        k = math.exp(-sum((z[0, d] - z[q, d]) ** 2 for d in range(n)) / (2 * sigma_z**2))
        for i in range(n):
            out[i] += coef[q] * (-2.0 / sigma_z**2) * k * (z[0, i] - z[q, i])
    return out / (N - 1) ** 2


@pytest.mark.parametrize("form", ["paper", "exact"])
def test_compiled_xi_matches_the_explicit_loop_and_the_array_contraction(form):
    g = np.random.default_rng(3)
    K, N, n = 3, 7, 5
    x, y = g.normal(size=(K, N, 4)), g.integers(0, 2, size=(K, N, 1)).astype(float)
    z = np.tanh(g.normal(size=(K, N, n)))
    coef = hsic.xi_coefficients(x, y, gamma=2.0, sigma_x=1.5, sigma_y=0.5, form=form)
    got = hsic.xi_from_coefficients(coef, z, 0.8, compiled.xi)
    for k in range(K):
        np.testing.assert_allclose(got[k], _loop_xi(coef[k], z[k], 0.8), rtol=1e-12, atol=1e-15)
    z32, c32 = z.astype(np.float32), coef.astype(np.float32)
    got32 = hsic.xi_from_coefficients(c32, z32, 0.8, compiled.xi)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, hsic.xi_from_coefficients(c32, z32, 0.8), rtol=2e-5,
                               atol=1e-7)
    assert not np.shares_memory(got32, hsic.xi_from_coefficients(c32, z32, 0.8, compiled.xi))


def _synapses(backend, *, momentum, factored, seed=0):
    """Synapses on a stand-in layer (W, z and the presynaptic z; no dynamics)."""
    g = np.random.default_rng(seed)
    k, n, m = 2, 6, 40
    pre = SimpleNamespace(z=g.uniform(size=(k, m)).astype(np.float32), kind="input")
    layer = SimpleNamespace(W=g.normal(size=(k, n, m)).astype(np.float32), pre=pre,
                            z=np.tanh(g.normal(size=(k, n))).astype(np.float32), updates=None)
    syn = ThreeFactorSynapses(layer, dt_ms=1.0, momentum=momentum, factored=factored,
                              backend=backend)
    if momentum:
        syn.velocity[...] = g.normal(size=syn.velocity.shape) * 0.01
    syn.eta_base, syn.decay_ticks = 0.05, 30.0
    return syn, g


@pytest.mark.parametrize("factored", [False, True], ids=["per_tick", "factored"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_elementwise_kernels_equal_the_numpy_step_bit_for_bit(momentum, factored):
    """Five deliveries (learning switched off for one), then the drive and the commit."""
    runs = []
    for backend in (F32, N32):
        syn, g = _synapses(backend, momentum=momentum, factored=factored)
        drives = []
        for tick in range(5):
            syn.enabled = tick != 2
            syn.layer.z[...] = np.tanh(g.normal(size=syn.layer.z.shape))
            syn.deliver(g.normal(size=syn.inbox.shape).astype(np.float32))
            syn.step(tick)
            assert not syn.inbox.any() and not syn.pending
            if factored:
                drive = np.empty(syn.inbox.shape, np.float32)
                syn.factored.drive(drive)
                drives.append(drive)
        if factored:
            syn.factored.commit()
        runs.append((syn.layer.W, syn.velocity, drives))
    (w_np, v_np, d_np), (w_nb, v_nb, d_nb) = runs
    np.testing.assert_array_equal(w_nb, w_np)
    if momentum:
        np.testing.assert_array_equal(v_nb, v_np)
    for a, b in zip(d_nb, d_np, strict=True):
        np.testing.assert_array_equal(a, b)
    fresh = _synapses(F32, momentum=momentum, factored=factored)[0].layer.W
    assert np.abs(w_np - fresh).max() > 1e-4  # the updates did move W


def _states(sim):
    return {f"{name}.{var}": np.array(value) for name in ("h", "o")
            for var, value in sim.populations[name].state().items()}


@pytest.mark.parametrize("extra", ["", ", delay: 3 ms, loss: 0.3, jitter: 2 ms"])
@pytest.mark.parametrize("factored", [True, False], ids=["factored", "per_tick"])
@pytest.mark.parametrize(("reference", "backend", "rtol"), [(F64, N64, 1e-9), (F32, N32, 2e-4)],
                         ids=["float64", "float32"])
def test_a_simulation_on_numba_matches_numpy_to_rounding(reference, backend, rtol, factored,
                                                         extra):
    want = wide_sim(factored, extra=extra, backend=reference)
    got = wide_sim(factored, extra=extra, backend=backend)
    w0 = np.array(want.populations["h"].W)
    for tick in (9, 26, 49):  # ends mid-sample
        want.run(tick)
        got.run(tick)
        a, b = _states(want), _states(got)
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=rtol, atol=rtol * 1e-2,
                                       err_msg=f"{key} at tick {tick}")
    assert np.abs(np.array(want.populations["h"].W) - w0).max() > 1e-3


def _records(sim):
    return {name: ch.record()["sent_runs"] for name, ch in sim.channels.items()}


@pytest.mark.parametrize("factored", [True, False], ids=["factored", "per_tick"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_immediate_modulation_equals_the_general_path_bit_for_bit(factored, momentum):
    """A zero-delay ξ applied in POPULATION (eventsim.engine.immediate) against the same ξ sent
    through the channel, delivered and applied in PLASTICITY: weights, velocities, states and
    the channels' send records agree exactly, through learning switched off and on."""
    fused = wide_sim(factored, momentum=momentum, backend=N32, slicing=False)
    general = wide_sim(factored, momentum=momentum, backend=N32, immediate=False)
    assert set(fused.immediate) == {"h", "o"} and not general.immediate
    for tick, learning in ((9, True), (20, False), (49, True)):  # ends mid-sample
        for sim in (fused, general):
            sim.set_learning(layers=learning, readouts=False, layer_decay_ms=40.0)
            sim.run(tick)
        for key, value in _states(general).items():
            np.testing.assert_array_equal(_states(fused)[key], value, err_msg=f"{key} at {tick}")
        for name, syn in general.synapses.items():
            if momentum:
                np.testing.assert_array_equal(fused.synapses[name].velocity, syn.velocity)
        for name, runs in _records(general).items():
            np.testing.assert_array_equal(_records(fused)[name], runs)
    assert np.abs(np.array(fused.populations["o"].W)
                  - np.array(wide_sim(factored, backend=N32).populations["o"].W)).max() > 1e-3


SCHEDULE = ((9, True, True), (20, False, True), (26, True, True), (27, True, True),
            (41, False, False), (61, True, True))
"""Run ends (mid-sample), whether the layers learn up to each and whether the working
memories run (off: as in evaluation)."""


def _run_schedule(sim, stops):
    """Run through :data:`SCHEDULE`, also stopping at every tick in ``stops``; the state
    (and what the run logged) at each of the schedule's ends."""
    sim.window("o").enabled = True
    sim.objective_every = 2
    out, start = [], 0
    for end, learning, memories in SCHEDULE:
        sim.set_learning(layers=learning, readouts=False, layer_decay_ms=40.0)
        sim.memories_run = memories
        for tick in [t for t in stops if start < t < end] + [end]:
            sim.run(tick)
        start = end
        seen = _states(sim)
        for name, syn in sim.synapses.items():
            if syn.velocity is not None:
                seen[f"{name}.v"] = np.array(syn.velocity)
            if syn.factored is not None:
                seen.update({f"{name}.factored.{k}": np.array(v)
                             for k, v in syn.factored.get_state().items()})
        out.append(seen)
    logged = {"window": sim.windows["o"].take(), "records": _records(sim),
              "objectives": sim.objective_log}
    return out, logged


@pytest.mark.parametrize("backend", [N32, N64], ids=["float32", "float64"])
@pytest.mark.parametrize("factored", [True, False], ids=["factored", "per_tick"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_sliced_run_does_not_depend_on_where_its_slices_end(factored, momentum, backend):
    """Layers stepped through the rest of a sample in one call each (eventsim.engine.slicing):
    a run in five calls against the same run stopped at every tick (every slice one tick long)
    and one stopped every 4 ticks, out of step with the 6-tick samples: states, weights,
    velocities, pending factors, window means, logged objectives and send records agree bit
    for bit, through learning switched off (the per-tick path), the memories paused (slices
    that only step) and both on again."""
    runs = {}
    for stops in ((), range(62), range(0, 62, 4)):
        sim = wide_sim(factored, momentum=momentum, backend=backend)
        slices = []
        sliced = sim.slicer.run
        sim.slicer.run = lambda *a, learn, slices=slices, sliced=sliced: (
            slices.append((*a, learn)), sliced(*a, learn=learn))
        runs[len(stops)] = (*_run_schedule(sim, stops), slices)
    (want, logged, slices), *others = runs.values()
    # the memories fill with the 4th sample (tick 18), learning is off from 9 to 20, and a
    # slice ends at the end of its sample or of its run; from 27 to 41 the memories pause
    assert slices[:6] == [(20, 2, 4, True), (24, 0, 2, True), (26, 2, 1, True),
                          (27, 3, 3, False), (30, 0, 6, False), (36, 0, 5, False)]
    assert slices[6:8] == [(41, 5, 1, True), (42, 0, 6, True)] and len(slices) == 11
    assert len(runs[62][2]) == 61 - 20
    for got, got_logged, _ in others:
        for at, (a, b) in enumerate(zip(got, want, strict=True)):
            for key, value in b.items():
                np.testing.assert_array_equal(a[key], value, err_msg=f"{key} at stop {at}")
        np.testing.assert_array_equal(got_logged["window"], logged["window"])
        for name, runs_ in logged["records"].items():
            np.testing.assert_array_equal(got_logged["records"][name], runs_)
        assert len(got_logged["objectives"]) == len(logged["objectives"]) > 4
        for a, b in zip(got_logged["objectives"], logged["objectives"], strict=True):
            assert a[:3] == b[:3]
            np.testing.assert_array_equal(a[3], b[3])


@pytest.mark.parametrize(("backend", "rtol"), [(N32, 2e-5), (N64, 1e-12)],
                         ids=["float32", "float64"])
@pytest.mark.parametrize("factored", [True, False], ids=["factored", "per_tick"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_slicing_matches_the_per_tick_path_to_rounding(factored, momentum, backend, rtol):
    """The same schedule with ``slicing=False``: the numbers to rounding (the compiler may group
    an inlined reassociated sum differently), the logged ticks and send records exactly."""
    want, logged = _run_schedule(
        wide_sim(factored, momentum=momentum, backend=backend, slicing=False), ())
    got, got_logged = _run_schedule(wide_sim(factored, momentum=momentum, backend=backend), ())
    for at, (a, b) in enumerate(zip(got, want, strict=True)):
        for key, value in b.items():
            np.testing.assert_allclose(a[key], value, rtol=rtol, atol=rtol * 1e-2,
                                       err_msg=f"{key} at stop {at}")
    np.testing.assert_allclose(got_logged["window"], logged["window"], rtol=rtol, atol=rtol)
    for name, runs_ in logged["records"].items():
        np.testing.assert_array_equal(got_logged["records"][name], runs_)
    assert [a[:3] for a in got_logged["objectives"]] == [b[:3] for b in logged["objectives"]]


@pytest.mark.parametrize("extra", [", delay: 1 ms", ", loss: 0.2", ", jitter: 1 ms"])
def test_a_delayed_or_random_channel_keeps_the_general_path(extra):
    sim = wide_sim(True, extra=extra, backend=N32)
    assert set(sim.immediate) == {"o"}  # the edit is on h's channel
    assert not wide_sim(True, backend=F32).immediate  # numpy: no compiled kernels


def test_numba_runs_are_deterministic_and_a_trial_does_not_depend_on_the_batch():
    batched = wide_sim(True, seeds=(0, 1, 2), backend=N32)
    again = wide_sim(True, seeds=(0, 1, 2), backend=N32)
    single = wide_sim(True, seeds=(2,), backend=N32)
    for sim in (batched, again, single):
        sim.run(40)
    for key, value in _states(batched).items():
        np.testing.assert_array_equal(_states(again)[key], value, err_msg=key)
        np.testing.assert_array_equal(_states(single)[key][0], value[2], err_msg=key)


def test_backend_kernels_are_the_compiled_module_only_on_numba():
    assert N32.kernels is compiled and N32.xp is np
    assert F32.kernels is None
    assert available_backends()["numba"].startswith("available (numba ")


def test_numba_missing_is_a_one_line_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    with pytest.raises(BackendError) as err:
        get_backend("numba")
    message = str(err.value)
    assert "\n" not in message and "eventsim[fast]" in message and "--backend numpy" in message
    assert available_backends()["numba"].startswith("unavailable: ")


def test_cli_runs_a_scenario_on_numba(tmp_path):
    r = subprocess.run([sys.executable, "-m", "eventsim.cli", "info", "--backend", "numba"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "numba" in r.stdout
