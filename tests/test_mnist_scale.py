"""MNIST-scale pieces: the newest-first working memory, the shared sample kernels, and the
static pHSIC scenario driver (rule: phsic, mode: static).

The engine's speed work is checked for bit-identity against the code before it by
``benchmarks/engine_identity.py``; here the memory layout is checked against the
definition (SCIENCE.md §2: index 0 is now, then the previous samples at the same phase).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eventsim.backend import RandomStreams, get_backend
from eventsim.baselines.phsic_static import accuracy, run_phsic_static_scenario
from eventsim.config.network import parse_network
from eventsim.config.scenario import parse_scenario
from eventsim.engine.simulator import LayerRule, Simulator
from eventsim.errors import ConfigError
from eventsim.feed import SampleFeed
from eventsim.plasticity import hsic
from eventsim.plasticity.phsic import PHSICNet
from eventsim.runner import eta_for_epoch, load_scenario_dataset, run_scenario

F64 = get_backend("numpy", "float64")

TWO_LAYERS = """
name: two
populations:
  x: {kind: input, size: 3}
  h1: {kind: layer, size: 4}
  h2: {kind: layer, size: 2}
projections:
  - {from: x, to: h1}
  - {from: h1, to: h2}
"""


def _two_layer_sim(capacity=3, sample=4, samples=9, seed=5):
    rule = LayerRule(gamma=3.0, memory=capacity, sigma_x=0.7, sigma_y=0.9, sigma_z=0.8)
    sim = Simulator(parse_network(TWO_LAYERS), seeds=[seed, seed + 1], backend=F64,
                    sample_ticks=sample, label_dim=1, rules={"h1": rule, "h2": rule})
    g = np.random.default_rng(seed)
    x = g.uniform(0, 1, (2, samples, 3))
    y = g.integers(0, 2, (2, samples))
    sim.set_feed(SampleFeed(x, y, 2, F64))
    sim.set_learning(layers=True, readouts=False)
    sim.set_eta(0.2)
    return sim, x, y


def test_working_memory_is_the_last_n_samples_at_the_same_phase():
    capacity, sample, samples = 3, 4, 7
    sim, x, y = _two_layer_sim(capacity, sample, samples + 2)
    probe = sim.probe("h2.z")
    sim.run(samples * sample - 1)  # stop at the last phase of sample `samples - 1`
    ticks, z = probe.data()
    mem = sim.memories["h2"]
    current = samples - 1
    for phase in range(sample - 1):
        want = [z[(current - q) * sample + phase] for q in range(capacity)]  # newest first
        np.testing.assert_array_equal(mem.z_at(phase), np.stack(want, axis=1))
    x_mem, y_mem = mem.xy()
    np.testing.assert_array_equal(x_mem, x[:, current - np.arange(capacity)])
    np.testing.assert_array_equal(y_mem[..., 0], y[:, current - np.arange(capacity)])
    assert sim.memories["h1"].samples is mem.samples  # one x/y store for both layers


def test_memory_fills_up_and_xi_uses_only_filled_entries():
    sim, x, y = _two_layer_sim(capacity=4, sample=3, samples=4)
    sim.run(2 * 3)  # two samples seen: two entries
    mem = sim.memories["h1"]
    assert mem.count == 2 and mem.z_at(0).shape == (2, 2, 4)
    rule = sim.rules["h1"]
    x_mem, y_mem = mem.xy()
    want = hsic.xi(x_mem, y_mem, mem.z_at(2), gamma=rule.gamma, sigma_x=rule.sigma_x,
                   sigma_y=rule.sigma_y, sigma_z=rule.sigma_z)
    np.testing.assert_allclose(sim._xi("h1", sim.tick - 1), want, rtol=1e-12)


# ------------------------------------------------------------ static pHSIC driver
STATIC = """
name: static-test
network:
  name: small
  populations:
    x: {{kind: input, size: 2}}
    h: {{kind: layer, size: 8}}
    out: {{kind: layer, size: {out}}}
  projections:
    - {{from: x, to: h}}
    - {{from: h, to: out}}
seed: 3
trials: 2
dataset: {{name: tanh_boundary, seed: 1, params: {{samples: 64, test_samples: 50}}}}
rule:
  name: phsic
  mode: static
  gamma: {gamma}
  batch: {batch}
  lr: {{eta: 0.5, momentum: 0.9, schedule: {{2: 0.1}}}}
  static: {{sigma: 1.0, online: {online}, readout_lr: 0.2, activation: tanh{extra}}}
phases:
  - {{name: train, epochs: 3}}
"""


def _static(out=2, gamma=2, batch=16, online="false", extra=""):
    return parse_scenario(STATIC.format(out=out, gamma=gamma, batch=batch, online=online,
                                        extra=extra))


@pytest.mark.parametrize("wd, wd_ro, p", [(0.0, 0.0, 0.0), (1e-3, 1e-2, 0.1)])
def test_static_driver_equals_the_trainer_driven_by_hand(wd, wd_ro, p):
    extra = "" if p == 0 else (f", weight_decay: {wd}, readout_weight_decay: {wd_ro}, "
                               f"dropout: {p}")
    sc = _static(extra=extra)
    st = sc.spec.rule.static
    assert (st.weight_decay, st.readout_weight_decay, st.dropout) == (wd, wd_ro, p)
    result = run_scenario(sc)
    ds = load_scenario_dataset(sc)
    be = get_backend()
    net = PHSICNet([2, 8], sc.seeds, 2, sigma=1.0, gamma=2.0, activation="tanh", backend=be)
    rng = RandomStreams(sc.seeds, "phsic/shuffle")
    drop = RandomStreams(sc.seeds, "phsic/dropout")
    for epoch in range(3):
        eta = eta_for_epoch(sc.spec.rule.lr, epoch)
        net.train_epoch(ds.x_train, ds.y_train, lr=eta, momentum=0.9, batch_size=16, rng=rng,
                        lr_readout=0.2 * eta / 0.5, weight_decay=wd, readout_weight_decay=wd_ro,
                        dropout=p, dropout_rng=drop)
    np.testing.assert_array_equal(result.summary["test_accuracy"],
                                  accuracy(net, ds.x_test, ds.y_test))
    rows = [r for r in result.metrics if r["metric"] == "objective_pl/h"]
    assert [r["epoch"] for r in rows] == [1, 1, 2, 2, 3, 3]
    assert result.summary["test_accuracy"].shape == (2,)


@pytest.mark.parametrize("extra", ["", ", dropout: 0.05, weight_decay: 1e-4"])
def test_static_online_two_point_rule_runs(extra):
    result = run_scenario(_static(batch=2, online="true", extra=extra))
    values = [r["value"] for r in result.metrics]
    assert values and np.isfinite(values).all()


@pytest.mark.parametrize("kwargs, field", [
    ({"batch": 4, "online": "true"}, "rule.batch"),
    ({"batch": 1}, "rule.batch"),
    ({"out": 3}, "network"),
    ({"gamma": "{h: 1, out: 2}"}, "rule.gamma"),
    ({"extra": ", dropout: 1"}, "rule.static.dropout"),
])
def test_static_driver_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        run_phsic_static_scenario(_static(**kwargs), backend=get_backend())
    assert f": {field}:" in str(err.value)


@pytest.mark.parametrize("extra, field", [
    (", weight_decay: -1e-7", "rule.static.weight_decay"),
    (", readout_weight_decay: .nan", "rule.static.readout_weight_decay"),
    (", dropout: 1.5", "rule.static.dropout"),
    (", dropout: -0.1", "rule.static.dropout"),
    (", dropout: 1", "rule.static.dropout"),
])
def test_static_regularisers_are_validated_with_file_and_line(extra, field):
    with pytest.raises(ConfigError) as err:
        _static(extra=extra)
    text = str(err.value)
    line = STATIC.splitlines().index(
        "  static: {{sigma: 1.0, online: {online}, readout_lr: 0.2, activation: tanh{extra}}}") + 1
    assert f":{line}: {field}:" in text, text


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_mem", [1, 2, 7, 32])
def test_per_tick_xi_contraction_equals_the_sum_over_alpha(dtype, n_mem):
    """The per-tick ξ never forms α; it must equal ``scale · Σ_q c_q α_i(q)`` with α from
    :func:`hsic.alpha` (DL Eq. 8), in the input's dtype."""
    g = np.random.default_rng(n_mem)
    z = np.tanh(g.normal(size=(3, n_mem, 64))).astype(dtype)
    coef = g.normal(size=(3, n_mem)).astype(dtype)
    sigma, scale = 0.5 * 8.0, 1.0 / 31**2
    z64, coef64 = z.astype(np.float64), coef.astype(np.float64)
    want = scale * np.einsum("kq,kqi->ki", coef64, hsic.alpha(z64, sigma))
    got = hsic._contract_alpha(coef, z, sigma, scale)
    assert got.dtype == np.dtype(dtype) and got.shape == (3, 64)
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max() + 1e-300)


def test_static_runs_report_progress_in_epochs():
    """Off a terminal a static pHSIC run prints one line per epoch with its position, its
    pace and the readout's cross-entropy (it has no ticks to count)."""
    import io

    from eventsim.progress import Progress

    out = io.StringIO()
    progress = Progress(3, None, stream=out, unit="epoch", every_s=0.0)  # one line per epoch
    run_scenario(_static(), progress=progress)
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "[train] epoch 1/3", "[train] epoch 2/3", "[train] epoch 3/3"]
    assert all(" s/epoch) ce=" in line for line in lines)


def test_static_runs_score_the_last_epoch_once():
    """With ``evaluate.every`` dividing the epochs, the last epoch is scored by the final
    evaluation only (as in engine runs), not also by the periodic one."""
    sc = parse_scenario(STATIC.format(out=2, gamma=2, batch=16, online="false", extra=""),
                        overrides={"evaluate.every": 1})
    rows = [(r["phase"], r["epoch"]) for r in run_scenario(sc).metrics
            if r["metric"] == "accuracy/test" and r["trial"] == 0]
    assert rows == [("train", 1), ("train", 2), ("final", 3)]


ENGINE_EVAL = f"""name: eval
network: {Path(__file__).resolve().parents[1] / "networks" / "tanh_mlp.yaml"}
seed: 3
trials: 2
dataset: {{name: tanh_boundary, params: {{samples: 12, test_samples: 10}}}}
timing: {{dt: 1 ms, sample: 5 ms}}
rule: {{name: hsic, gamma: 2, memory: 4, lr: {{eta: 0.05}}}}
phases:
  - {{name: train, epochs: 3, learn: [layers]}}
"""


def test_an_evaluation_does_not_touch_the_working_memory():
    """Evaluation samples neither enter the working memory nor the logged objectives
    (before, they were flushed into the next epoch's objective means)."""
    from eventsim.runner import Runner

    runner = Runner(parse_scenario(ENGINE_EVAL))
    runner.run()
    sim = runner.sim
    before = {name: {k: np.array(v) for k, v in mem.get_state().items()}
              for name, mem in sim.memories.items()}
    versions = [samples.version for samples, _ in sim.sample_memories.values()]
    runner.evaluate("again")
    assert sim.objective_log == []
    assert [samples.version for samples, _ in sim.sample_memories.values()] == versions
    for name, mem in sim.memories.items():
        for key, value in mem.get_state().items():
            np.testing.assert_array_equal(value, before[name][key], err_msg=f"{name}.{key}")


def test_objectives_logged_every_nth_sample_are_those_samples_and_leave_learning_alone():
    from eventsim.runner import Runner

    def run(every):
        runner = Runner(parse_scenario(ENGINE_EVAL,
                                       overrides={"evaluate.objective_every": every}))
        logs, flush = [], runner._flush_objectives

        def spy(phase, epoch):
            logs.append([(t, layer, metric, v.tolist())
                         for t, layer, metric, v in runner.sim.objective_log])
            flush(phase, epoch)
        runner._flush_objectives = spy
        return runner.run(), logs

    full, full_logs = run(1)
    sparse, sparse_logs = run(4)
    sample_ticks = 5
    assert len(sparse_logs) == len(full_logs) == 3  # one flush per epoch
    for every_sample, every_fourth in zip(full_logs, sparse_logs, strict=True):
        assert every_fourth == [e for e in every_sample if (e[0] // sample_ticks + 1) % 4 == 0]
        assert len(every_fourth) == 3 * 2 * 2  # samples x layers x {dl, pl}
    np.testing.assert_array_equal(sparse.test_accuracy, full.test_accuracy)
    for name, w in full.weights.items():
        np.testing.assert_array_equal(sparse.weights[name], w, err_msg=name)


def test_objectives_are_logged_every_nth_training_sample_across_evaluations():
    """Evaluation samples do not count: after a periodic evaluation (22 samples here) the
    sparse log still holds every 4th training sample (it shifted before)."""
    from eventsim.runner import Runner

    def log(every):
        runner = Runner(parse_scenario(ENGINE_EVAL, overrides={
            "evaluate.objective_every": every, "evaluate.every": 1}))
        entries, flush = [], runner._flush_objectives

        def spy(phase, epoch):
            entries.extend((layer, metric, v.tolist())
                           for _, layer, metric, v in runner.sim.objective_log)
            flush(phase, epoch)
        runner._flush_objectives = spy
        runner.run()
        return entries

    full, sparse = log(1), log(4)
    per_sample = 4  # two layers x {objective_dl, objective_pl}
    samples = [full[i:i + per_sample] for i in range(0, len(full), per_sample)]
    assert len(samples) == 3 * 12  # 3 epochs of 12 training samples
    assert sparse == [e for i, s in enumerate(samples) if (i + 1) % 4 == 0 for e in s]


def test_validated_scenario_is_mnist_hsic_with_its_two_stated_kernel_changes():
    """``mnist_hsic_validated.yaml`` is ``mnist_hsic.yaml`` plus exactly the σ_z and γ
    changes its header (and the README's rows) state."""
    from eventsim.config.scenario import load_scenario

    scenarios = Path(__file__).resolve().parents[1] / "scenarios"
    base = load_scenario(scenarios / "mnist_hsic.yaml", {
        "rule.sigma.z": 0.25, "rule.gamma": {"h1": 50, "h2": 100, "h3": 20, "out": 20}}).resolved()
    variant = load_scenario(scenarios / "mnist_hsic_validated.yaml").resolved()
    for key in ("name", "description"):
        base.pop(key), variant.pop(key)
    assert variant == base


def test_evaluate_layers_scores_each_listed_layer_with_its_own_readout(monkeypatch):
    """``evaluate.layers: [h1]`` fits a second readout on h1's window means (its own
    units) and logs ``accuracy/<split>/h1``; the last layer's scores do not change."""
    from eventsim import runner as runner_module
    from eventsim.evaluate import readout_accuracy
    from eventsim.runner import Runner

    fits = []
    fit = runner_module.fit_readout

    def spy(features, y, n_classes, **kw):
        fitted = fit(features, y, n_classes, **kw)
        fits.append((features.shape, fitted))
        return fitted

    monkeypatch.setattr(runner_module, "fit_readout", spy)
    plain = Runner(parse_scenario(ENGINE_EVAL)).run()
    fits.clear()
    runner = Runner(parse_scenario(ENGINE_EVAL, overrides={"evaluate.layers": ["h1"]}))
    result = runner.run()

    def rows(res, metric):
        return [r["value"] for r in res.metrics if r["metric"] == metric]

    assert rows(result, "accuracy/test") == rows(plain, "accuracy/test")
    assert rows(result, "accuracy/train") == rows(plain, "accuracy/train")
    assert [shape[-1] for shape, _ in fits] == [1, 2]  # out (1 unit), then h1 (2 units)
    h1 = rows(result, "accuracy/test/h1")
    assert len(h1) == 2 and len(rows(result, "accuracy/train/h1")) == 2  # two trials
    # the logged h1 score is its readout's accuracy on h1's test window means
    sim = runner.sim
    window = sim.window("h1")
    window.enabled = True
    sim.set_learning(layers=False, readouts=False, explore=False)
    sim.memories_run = False
    sim.set_feed(runner._feed("test", shuffle=False))
    sim.run(sim.tick + runner.ds.x_test.shape[1] * sim.sample_ticks)
    again = readout_accuracy(fits[1][1], window.take(), runner.ds.y_test)
    np.testing.assert_allclose(again, h1)


def test_evaluate_layers_names_an_unknown_layer_in_one_line():
    with pytest.raises(ConfigError) as err:
        parse_scenario(ENGINE_EVAL + "evaluate: {layers: [h1, h9]}\n")
    message = str(err.value)
    assert "\n" not in message
    assert "<string>:10: evaluate.layers[1]" in message and "'h9'" in message and "h1" in message
