"""Factored per-sample updates (eventsim.plasticity.factored) against the per-tick update.

A first layer with many weights keeps each sample's updates of DL Eq. 8 (with SGD
momentum) as rank-1 factors and writes W once per sample. The algebra is exact, so in
float64 every state must match the run that updates W every tick, up to rounding, at
every tick: through momentum, a decaying rate, delayed and lossy deliveries, and
mid-sample reads of W (probes); a mid-sample checkpoint resumes bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from _shared import WIDE_SAMPLE_TICKS as S
from _shared import wide_sim as _sim

from eventsim import checkpoint
from eventsim.engine.simulator import FACTORED_MIN_WEIGHTS
from eventsim.engine.state import restore_simulator, simulator_state


def test_the_first_layer_is_factored_and_the_small_one_is_not():
    assert 48 * 90 >= FACTORED_MIN_WEIGHTS > 3 * 48
    sim = _sim(True)
    assert sim.synapses["h"].factored is not None
    assert sim.synapses["o"].factored is None
    assert _sim(False).synapses["h"].factored is None
    for trace in (5.0, "tick", "sample"):  # a trace or a window keeps full updates
        assert _sim(True, trace=trace).synapses["h"].factored is None


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("extra", ["", ", delay: 3 ms, loss: 0.3, jitter: 2 ms"])
def test_factored_updates_equal_per_tick_updates_at_every_tick(momentum, extra):
    fast, slow = _sim(True, momentum=momentum, extra=extra), _sim(False, momentum=momentum,
                                                                  extra=extra)
    w0 = slow.populations["h"].W.copy()
    for tick in range(1, 8 * S + 4):  # ends mid-sample
        fast.run(tick)
        slow.run(tick)
        for name in ("h", "o"):
            a, b = fast.populations[name].state(), slow.populations[name].state()
            for var in ("u", "z", "W"):
                np.testing.assert_allclose(a[var], b[var], rtol=1e-9, atol=1e-12,
                                           err_msg=f"{name}.{var} at tick {tick}")
    moved = np.abs(slow.populations["h"].W - w0).max()
    assert moved > 1e-3  # the rule did change W
    if momentum:
        np.testing.assert_allclose(fast.synapses["h"].factored.effective_velocity(),
                                   slow.synapses["h"].velocity, rtol=1e-9, atol=1e-12)


def test_a_mid_sample_checkpoint_resumes_bit_for_bit(tmp_path):
    reference = _sim(True)
    reference.run(3 * S + 2)
    assert reference.synapses["h"].factored.pending
    path = checkpoint.save(tmp_path / "mid.npz", {"format": checkpoint.FORMAT, "simulator":
                                                  checkpoint.freeze(simulator_state(reference))})
    reference.run(7 * S + 3)
    resumed = _sim(True)
    restore_simulator(resumed, checkpoint.load(path)["simulator"])
    resumed.feed.i = 4  # the feed is the runner's; here it is rewound by hand
    resumed.run(7 * S + 3)
    for name in ("h", "o"):
        for var, value in reference.populations[name].state().items():
            np.testing.assert_array_equal(resumed.populations[name].state()[var], value,
                                          err_msg=f"{name}.{var}")


def test_evaluation_with_learning_off_leaves_the_weights_alone():
    sim = _sim(True)
    sim.run(4 * S + 1)
    sim.set_learning(layers=False, readouts=False)
    before = sim.populations["h"].state()["W"].copy()
    sim.run(9 * S)
    np.testing.assert_array_equal(sim.populations["h"].W, before)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_commit_stores_the_effective_weights_and_velocity_bit_for_bit(momentum):
    """The in-place commit writes exactly :meth:`effective_weights` / ``effective_velocity``
    (float32, the default dtype), so a checkpoint's reconstructed W and v match it."""
    from types import SimpleNamespace

    from eventsim.backend import get_backend
    from eventsim.plasticity.factored import FactoredUpdates

    be = get_backend("numpy")
    g = np.random.default_rng(5)
    pre = SimpleNamespace(z=g.uniform(size=(2, 30)).astype(np.float32))
    layer = SimpleNamespace(W=g.normal(size=(2, 8, 30)).astype(np.float32), pre=pre)
    velocity = g.normal(size=(2, 8, 30)).astype(np.float32) if momentum else None
    fu = FactoredUpdates(layer, velocity, momentum, be)
    for _ in range(5):
        fu.add(g.normal(size=(2, 8)).astype(np.float32) * np.float32(1e-2))
    want_w = np.array(fu.effective_weights())
    want_v = None if velocity is None else np.array(fu.effective_velocity())
    fu.commit()
    np.testing.assert_array_equal(layer.W, want_w)
    if velocity is not None:
        np.testing.assert_array_equal(velocity, want_v)
    assert not fu.pending and np.array_equal(fu.effective_weights(), want_w)
