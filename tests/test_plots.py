"""Figures: plot_run regenerates every expected PNG from a run directory alone."""

from __future__ import annotations

from pathlib import Path

import h5py
import matplotlib.image as mpimg
import numpy as np
import pytest

from eventsim import plots, rundir
from eventsim.records import expand_channel, runs_of
from eventsim.rundir import RunDir

DT_MS = 1.0
SAMPLE = 50  # ticks per sample
TRIALS = 3
TEST_START = 4000
END = 8000

NETWORK = {
    "name": "tanh-mlp",
    "populations": {
        "x": {"kind": "input", "size": 2},
        "h1": {"kind": "layer", "size": 2},
        "h2": {"kind": "layer", "size": 1},
        "mem_h1": {"kind": "reservoir", "size": 1000},
        "mem_h2": {"kind": "reservoir", "size": 1000},
    },
    "projections": [
        {"from": "x", "to": "h1"},
        {"from": "h1", "to": "h2"},
        {"from": "mem_h1", "to": "h1", "kind": "modulatory"},
        {"from": "mem_h2", "to": "h2", "kind": "modulatory", "delay": "5 ms"},
        {"from": "h1", "to": "mem_h1", "kind": "tap"},
    ],
}

EXPECTED = {
    "network.png", "objectives.png", "accuracy.png", "readout_mem_h1.png",
    "code_words_out.png", "modulator_timing.png",
}


def _metric_rows(rng: np.random.Generator) -> list[dict]:
    rows = []
    for tick in range(SAMPLE, TEST_START, SAMPLE):
        phase = "pretrain" if tick < 1000 else "train"
        epoch = None if tick < 1000 else (tick - 1000) // 600 + 1
        for trial in range(TRIALS):
            for layer, scale in (("h1", 1.0), ("h2", 0.5)):
                value = -scale * (1 - np.exp(-tick / 1500)) + 0.05 * rng.standard_normal()
                rows.append(dict(phase=phase, epoch=epoch, tick=tick, trial=trial,
                                 metric=f"objective_dl/{layer}", value=value))
    for epoch in range(1, 6):
        for trial in range(TRIALS):
            acc = 0.5 + 0.4 * (1 - np.exp(-epoch / 2)) + 0.03 * rng.standard_normal()
            for split, shift in (("test", 0.0), ("train", 0.02)):
                rows.append(dict(phase="train", epoch=epoch, tick=1000 + 600 * epoch,
                                 trial=trial, metric=f"accuracy/{split}", value=acc + shift))
    return rows


def _traces(rng: np.random.Generator) -> tuple[dict, dict]:
    ticks = np.arange(0, END)
    xi = np.sin(2 * np.pi * (ticks // SAMPLE)[:, None, None] / 7.0 + np.arange(2)) * np.ones(
        (1, TRIALS, 1))
    readout = xi + 0.1 * rng.standard_normal(xi.shape)
    readout[ticks >= TEST_START] += 0.3 * np.sin(ticks[ticks >= TEST_START] / 300)[:, None, None]
    samples = np.arange(TEST_START, END, SAMPLE)
    labels = np.tile(np.arange(samples.size) % 4, (TRIALS, 1)).T
    codewords = rng.uniform(-1, 1, size=(TRIALS, 4, 6))
    code = codewords[np.arange(TRIALS)[None, :], labels] + 0.05 * rng.standard_normal(
        (samples.size, TRIALS, 6))
    traces = {
        "mem_h1.readout": dict(data=readout.astype(np.float32), ticks=ticks, units="a.u."),
        "mem_h1.xi_true": dict(data=xi.astype(np.float32), ticks=ticks, units="a.u."),
        "out.code": dict(data=code, ticks=samples, units="rate"),
        "out.label": dict(data=labels, ticks=samples, units="class"),
    }
    sent = np.arange(0, 2000, 5)
    deliver = sent[:, None] + 7 + rng.integers(-3, 4, size=(sent.size, TRIALS))
    deliver[rng.random(deliver.shape) < 0.1] = -1
    channels = {"mem_h1->h1": dict(sent_runs=runs_of(sent), trials=TRIALS, delay=7,
                                   deliver_tick=deliver, sample_runs=[[0, SAMPLE, END // SAMPLE]])}
    return traces, channels


def make_synthetic_run(root: Path) -> RunDir:
    """A run directory with every kind of data plot_run knows how to draw."""
    rng = np.random.default_rng(0)
    config = {"name": "synthetic", "network": NETWORK, "timing": {"dt": "1 ms"}}
    run = RunDir.create(root, scenario_name="synthetic", resolved_config=config)
    run.write_meta(backend="numpy", phases=[
        {"name": "pretrain", "start_tick": 0, "end_tick": 1000},
        {"name": "train", "start_tick": 1000, "end_tick": TEST_START},
        {"name": "test", "start_tick": TEST_START, "end_tick": END},
    ])
    run.add_metrics(_metric_rows(rng))
    run.flush_metrics()
    traces, channels = _traces(rng)
    run.write_traces(traces, channels, DT_MS)
    return run


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and number of distinct colours of a PNG, checking it is not mostly blank."""
    image = mpimg.imread(path)
    height, width = image.shape[:2]
    pixels = image[..., :3].reshape(-1, 3)
    inked = np.mean(np.any(pixels < 0.95, axis=1))
    assert inked > 0.01, f"{path.name}: only {inked:.1%} of the pixels are not white"
    return width, height, len(np.unique(pixels, axis=0))


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> RunDir:
    return make_synthetic_run(tmp_path_factory.mktemp("runs"))


def test_plot_run_writes_expected_pngs(synthetic_run):
    paths = plots.plot_run(synthetic_run.path)
    assert {p.name for p in paths} == EXPECTED
    assert {p.name for p in synthetic_run.plots_dir.iterdir()} == EXPECTED
    for path in paths:
        width, height, distinct = png_size_and_colours(path)
        assert width > 300 and height > 200, path.name
        assert distinct > 20, f"{path.name} looks blank"


def test_plot_run_skips_missing_data(tmp_path):
    run = RunDir.create(tmp_path, scenario_name="bare", resolved_config={"name": "bare"})
    assert plots.plot_run(run.path) == []
    run.add_metrics([dict(phase="test", epoch=None, tick=10, trial=t, metric="accuracy/test",
                          value=0.8 + 0.01 * t) for t in range(3)])
    run.flush_metrics()
    assert [p.name for p in plots.plot_run(run.path)] == ["accuracy.png"]


def test_accuracy_plot_draws_each_scored_layer(tmp_path, monkeypatch):
    seen = {}
    original = plots._save

    def spy(fig, out_dir, name):
        seen["labels"] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        seen["lines"] = {line.get_label(): line.get_ydata() for line in fig.axes[0].lines}
        return original(fig, out_dir, name)

    monkeypatch.setattr(plots, "_save", spy)
    rows = [dict(phase="train", epoch=e, tick=e, trial=t, metric=m, value=v + 0.01 * e)
            for e in (1, 2) for t in (0, 1)
            for m, v in (("accuracy/test", 0.5), ("accuracy/train", 0.6),
                         ("accuracy/test/h1", 0.9), ("accuracy/train/h1", 0.95))]
    plots.plot_accuracy(rows, tmp_path)
    assert seen["labels"] == ["test (mean of 2 trials)", "train (mean of 2 trials)",
                              "test, layer h1 (mean of 2 trials)"]
    np.testing.assert_allclose(seen["lines"]["test, layer h1 (mean of 2 trials)"], [0.91, 0.92])


def test_readout_without_phases_uses_recording_windows(synthetic_run, tmp_path):
    traces = _traces(np.random.default_rng(1))[0]
    path = plots.plot_readout(traces["mem_h1.readout"], traces["mem_h1.xi_true"], tmp_path,
                              name="mem_h1", test_start_tick=None, dt_ms=None)
    assert path.name == "readout_mem_h1.png" and png_size_and_colours(path)[2] > 20


def test_graph_from_config_kinds_and_layout():
    graph = plots.graph_from_config(NETWORK)
    assert graph.edges["mem_h1", "h1"]["kind"] == "modulatory"
    assert graph.edges["x", "h1"]["kind"] == "feedforward"
    assert graph.edges["mem_h2", "h2"]["delay"] == "5 ms"
    pos = plots._layout(graph)
    assert pos["x"][0] < pos["h1"][0] < pos["h2"][0]
    assert pos["mem_h1"][1] < pos["h1"][1] and pos["mem_h1"][0] == pos["h1"][0]


def test_code_words_average_per_class(tmp_path, monkeypatch):
    seen = {}
    original = plots._save

    def spy(fig, out_dir, name):
        seen["image"] = fig.axes[0].images[0].get_array()
        return original(fig, out_dir, name)

    monkeypatch.setattr(plots, "_save", spy)
    rates = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, -1.0]])
    plots.plot_code_words(rates, np.array([0, 0, 1]), tmp_path)
    np.testing.assert_allclose(seen["image"], [[2.0, 0.0], [0.0, -1.0]])


REAL_RUN = """name: plotted run
network:
  name: small reservoirs
  populations:
    x: {kind: input, size: 2}
    h1: {kind: layer, size: 3}
    out: {kind: layer, size: 1}
    m1: {kind: reservoir, size: 20, tau: 10 ms}
    m2: {kind: reservoir, size: 20, tau: 10 ms}
  projections:
    - {from: x, to: h1}
    - {from: h1, to: out}
    - {from: m1, to: h1, kind: modulatory, delay: 3 ms, jitter: 2 ms, loss: 0.2}
    - {from: m2, to: out, kind: modulatory, delay: 5 ms}
trials: 2
dataset: {name: tanh_boundary, params: {samples: 10, test_samples: 10}}
timing: {dt: 1 ms, sample: 10 ms}
rule: {name: hsic, gamma: 2, memory: 4, lr: {eta: 0.05}}
modulator: {source: reservoir}
phases:
  - {name: pretrain, duration: 100 ms, learn: [readouts]}
  - {name: train, epochs: 2, learn: [layers, readouts]}
evaluate: {every: 1}
probes: [{target: m1.readout, every: 2}, {target: h1.xi, every: 2}]
"""


def test_eventsim_plot_reproduces_the_figures_of_a_real_run(tmp_path, capsys):
    """Every figure a real run drew is drawn again, byte for byte, from its files alone
    (the readout is paired with the probed ξ of the layer its reservoir modulates)."""
    from eventsim.api import execute  # noqa: PLC0415
    from eventsim.cli import main  # noqa: PLC0415
    from eventsim.config.scenario import parse_scenario  # noqa: PLC0415

    run = execute(parse_scenario(REAL_RUN), out=tmp_path / "run", quiet=True)
    drawn = {p.name: p.read_bytes() for p in run.directory.plots_dir.iterdir()}
    # readout_m2: drawn from the readout-vs-ξ windows every reservoir's tracker records
    assert set(drawn) == {"network.png", "objectives.png", "accuracy.png", "readout_m1.png",
                          "readout_m2.png", "code_words_out.png", "modulator_timing.png"}
    for path in run.directory.plots_dir.iterdir():
        path.unlink()
    run.directory.plots_dir.rmdir()
    capsys.readouterr()
    assert main(["plot", str(run.directory.path)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(drawn)
    for name, content in drawn.items():
        assert (run.directory.plots_dir / name).read_bytes() == content, name


def test_a_run_stores_its_channel_records_compactly(tmp_path):
    """traces.h5 of a real run holds the send ticks as runs (one per stretch of
    training for a channel that sends every tick) and delivery ticks only for the
    jittered, lossy channel; the records expand to what the channels sent."""
    from eventsim.api import execute  # noqa: PLC0415
    from eventsim.config.scenario import parse_scenario  # noqa: PLC0415

    run = execute(parse_scenario(REAL_RUN), out=tmp_path / "run", quiet=True, plots=False)
    with h5py.File(run.directory.path / "traces.h5", "r") as f:
        out, h1 = f["channels/out"], f["channels/h1"]
        assert set(out) == {"sent_runs"} and set(h1) == {"sent_runs", "deliver_tick"}
        # two epochs (the pretraining trains no layer), each followed by an evaluation
        assert out["sent_runs"].shape == (2, 3) and out.attrs["delay"] == 5
    loaded = rundir.load_channels(run.directory.path)
    for name, record in run.result.channels.items():
        got, sent = expand_channel(loaded[name]), expand_channel(record)
        for key in ("sent_tick", "deliver_tick"):
            np.testing.assert_array_equal(got[key], sent[key])
        np.testing.assert_array_equal(got["sample_ticks"],
                                      np.arange(0, run.result.ticks, 10))
    assert expand_channel(loaded["out"])["sent_tick"].size == 2 * 10 * 10  # every tick
