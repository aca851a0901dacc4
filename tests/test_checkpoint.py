"""Checkpoints and resume: a killed or interrupted run continues bit for bit, a
diverging run keeps its last good checkpoint, the state file round-trips."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import eventsim
from eventsim import checkpoint
from eventsim.api import execute
from eventsim.cli import main
from eventsim.config.scenario import load_scenario, parse_scenario
from eventsim.errors import CheckpointError, ConfigError, DivergenceError, Interrupted
from eventsim.rundir import (
    CONFIG_FILE,
    ENVIRONMENT_FIELDS,
    META_FIELDS,
    RunDir,
    config_hash,
    environment_facts,
    load_channels,
    load_config,
    load_meta,
    load_traces,
    load_weights,
)
from eventsim.runner import Runner

REPO = Path(__file__).resolve().parents[1]
NETWORK = REPO / "networks" / "tanh_mlp.yaml"
SAMPLE_TICKS, SAMPLES, WARMUP = 5, 40, 13

SCENARIO = f"""name: checkpoint test
network: {NETWORK}
seed: 3
trials: 2
dataset: {{name: tanh_boundary, params: {{samples: {SAMPLES}, test_samples: 12}}}}
timing: {{dt: 1 ms, sample: {SAMPLE_TICKS} ms}}
rule: {{name: hsic, gamma: 2, memory: 4, trace: 3 ms, lr: {{eta: 0.05, momentum: 0.5{{lr}}}}}}
modulator:
  channels: {{h1: {{delay: 3 ms, jitter: 2 ms, loss: 0.1}}, out: {{delay: 6 ms, period: 2 ms}}}}
phases:
  - {{name: warmup, duration: {WARMUP} ms}}
  - {{name: train, epochs: 12, learn: [layers]}}
evaluate: {{every: 4}}
checkpoint: {{every: 1 epoch}}
probes: [{{target: h1.z, every: 7}}, {{target: out.xi, every: 11}}]
"""
"""12 epochs of 40 samples of 5 ticks after a 13-tick warm-up (so epochs end inside
a sample), jittered, lossy and delayed channels, eligibility trace, momentum, probes."""


def _write(tmp_path: Path, lr: str = "") -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace("{lr}", lr), encoding="utf-8")
    return path


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "eventsim.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, **kw)


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "eventsim.cli", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.005)


def _assert_same_run(ref: Path, other: Path) -> None:
    """Bit-identical results: metrics, final weights, traces, channel records, summary."""
    assert (other / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
    w_ref, w = load_weights(ref), load_weights(other)
    assert set(w) == set(w_ref) == {"h1.W", "out.W"}
    for name in w_ref:
        np.testing.assert_array_equal(w[name], w_ref[name], err_msg=name)
        assert w[name].dtype == w_ref[name].dtype
    t_ref, t = load_traces(ref), load_traces(other)
    assert set(t) == set(t_ref)
    for name in t_ref:
        np.testing.assert_array_equal(t[name]["ticks"], t_ref[name]["ticks"])
        np.testing.assert_array_equal(t[name]["data"], t_ref[name]["data"], err_msg=name)
    c_ref, c = load_channels(ref), load_channels(other)
    assert set(c) == set(c_ref) == {"h1", "out"}
    for name in c_ref:
        for key in c_ref[name]:
            np.testing.assert_array_equal(c[name][key], c_ref[name][key], err_msg=f"{name} {key}")
    m_ref, m = load_meta(ref), load_meta(other)
    for key in ("summary", "ticks", "phases", "seeds"):
        assert m[key] == m_ref[key], key


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """(scenario file, run directory) of the uninterrupted run."""
    tmp = tmp_path_factory.mktemp("reference")
    scenario = _write(tmp)
    out = tmp / "run"
    execute(load_scenario(scenario), out=out, quiet=True, plots=False)
    return scenario, out


# ============================================================ kill and resume
def test_sigkill_after_first_checkpoint_then_resume_is_bit_identical(tmp_path, reference):
    scenario, ref = reference
    out = tmp_path / "killed"
    proc = _start("run", str(scenario), "--out", str(out), "--quiet", "--no-plots")
    _wait_for(out / checkpoint.CHECKPOINT_FILE, proc)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert load_meta(out)["status"] == "running"  # killed mid-run, not finished
    assert not (out / "weights.npz").exists()
    saved = checkpoint.load(out / checkpoint.CHECKPOINT_FILE)
    tick = saved["simulator"]["tick"]
    assert (tick - WARMUP) % (SAMPLES * SAMPLE_TICKS) == 0  # an epoch checkpoint
    assert 0 < tick < load_meta(ref)["ticks"]

    r = _cli("run", "--resume", str(out), "--quiet", "--no-plots")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.splitlines()[0] == f"run directory: {out}"
    _assert_same_run(ref, out)

    meta = load_meta(out)
    assert meta["status"] == "finished" and meta["error"] is None
    assert [entry["tick"] for entry in meta["resumed"]] == [tick]
    assert {key: meta["resumed"][0][key] for key in ("git_commit", "git_dirty")} == {
        key: environment_facts()[key] for key in ("git_commit", "git_dirty")}
    assert set(META_FIELDS) | set(ENVIRONMENT_FIELDS) <= set(meta)
    for key in META_FIELDS:
        assert meta[key] is not None, key
    assert meta["seeds"] == [3, 4] and meta["backend"] == "numpy" and meta["dtype"] == "float32"
    assert meta["start_time"] < meta["resumed"][0]["time"] <= meta["end_time"]
    assert meta["wall_time_s"] > 0
    assert meta["checkpoint"]["epoch"] == 12


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_a_stop_signal_saves_a_checkpoint_exits_130_and_resumes_identically(tmp_path, reference,
                                                                             sig):
    """Without periodic checkpoints: Ctrl-C or SIGTERM (a batch scheduler's stop) alone
    saves one, one line, exit status 130."""
    scenario, ref = reference
    out = tmp_path / "interrupted"
    proc = _start("run", str(scenario), "--out", str(out), "--no-plots",
                  "--set", "checkpoint.every=0")
    first = proc.stderr.readline()
    assert first.startswith("[train]") and "epoch 1 " in first, first
    proc.send_signal(sig)
    stdout, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    assert stdout == "" and "Traceback" not in rest
    lines = rest.splitlines()
    messages = [line for line in lines if line.startswith("eventsim:")]
    assert messages == lines[-1:], rest  # progress lines, then the one message
    assert messages[0].startswith("eventsim: interrupted; checkpoint at tick ")
    assert messages[0].endswith(f"(hint: continue with: eventsim run --resume {out})")
    meta = load_meta(out)
    assert meta["status"] == "interrupted"
    tick = checkpoint.load(out / checkpoint.CHECKPOINT_FILE)["simulator"]["tick"]
    assert meta["checkpoint"]["tick"] == tick
    assert f"at tick {tick} " in messages[0]

    run = eventsim.resume(out, plots=False)
    assert run.directory.path == out
    _assert_same_run(ref, out)


class _StopAfter:
    """A progress sink that asks the runner to stop after its ``n``-th chunk of ticks."""

    def __init__(self, runner: Runner, n: int) -> None:
        self.runner, self.n, self.chunks = runner, n, 0

    def set_phase(self, name: str) -> None:
        pass

    def metric(self, text: str) -> None:
        pass

    def advance(self, tick: int) -> None:
        self.chunks += 1
        if self.chunks == self.n:
            self.runner.stop_requested = True


class _InMemory:
    """A checkpointer that keeps the states."""

    directory = "memory"

    def __init__(self) -> None:
        self.states: list[dict] = []

    def save(self, state: dict) -> None:
        self.states.append(state)


RESERVOIR_SCENARIO = """name: stops
network:
  name: two reservoirs
  populations:
    x: {{kind: input, size: 2}}
    h1: {{kind: layer, size: 3}}
    out: {{kind: layer, size: 1}}
    m1: {{kind: reservoir, size: 24, tau: 10 ms}}
    m2: {{kind: reservoir, size: 16, tau: 10 ms}}
  projections:
    - {{from: x, to: h1}}
    - {{from: h1, to: out}}
    - {{from: m1, to: h1, kind: modulatory, delay: 3 ms, jitter: 2 ms, loss: 0.2}}
    - {{from: m2, to: out, kind: modulatory, delay: 7 ms, period: 2 ms}}
trials: 2
dataset: {{name: tanh_boundary, params: {{samples: 20, test_samples: 150}}}}
timing: {{dt: 1 ms, sample: 7 ms}}
rule: {{name: hsic, gamma: 2, memory: 4, trace: 3 ms,
       lr: {{eta: 0.05, momentum: 0.5, decay: 100 ms}}}}
modulator: {{source: {source}}}
phases:
  - {{name: warm, duration: 23 ms{warm_learn}}}
  - {{name: settle, duration: 1000 ms{warm_learn}}}
  - {{name: train, epochs: 3, learn: [layers{train_learn}]}}
  - {{name: more, epochs: 1, learn: [layers]}}
evaluate: {{every: 3}}
probes: [{{target: h1.z, every: 3}}, {{target: out.xi, every: 5}}]
"""
"""Chunks of ticks end at 23 (warm), 1017 (inside 'settle'), 1023 (its end), 1163, 1303,
1443 (epochs 1-3), 1583 and 2577 (inside the evaluation after epoch 3), 2633 (its end),
2773 (epoch 4), 2913, 3907 and 3963 (final evaluation); all but 2633 inside a sample
of 7 ticks. A stop requested at the end of a chunk comes at the next of: the end of
a chunk inside a stretch of ticks, the end of an epoch or phase, the start of an
evaluation; inside an evaluation it saves the state from before it."""


def _stops_scenario(source: str):
    readouts = ", readouts" if source == "reservoir" else ""
    return parse_scenario(RESERVOIR_SCENARIO.format(
        source=source, warm_learn=", learn: [readouts]" if readouts else "",
        train_learn=readouts))


def _assert_same_result(a, b) -> None:
    assert a.metrics == b.metrics
    assert a.phases == b.phases and a.ticks == b.ticks
    assert set(a.weights) == set(b.weights)
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name], err_msg=name)
    assert set(a.traces) == set(b.traces)
    for name, (ticks, values) in a.traces.items():
        np.testing.assert_array_equal(b.traces[name][0], ticks)
        np.testing.assert_array_equal(b.traces[name][1], values, err_msg=name)
    for name, record in a.channels.items():
        for key, value in record.items():
            np.testing.assert_array_equal(b.channels[name][key], value)
    for key, value in a.summary.items():
        np.testing.assert_array_equal(b.summary[key], value, err_msg=key)


def _stop_and_resume(tmp_path, sc, n: int):
    """Run ``sc`` until a stop after its ``n``-th chunk, save the checkpoint to disk and
    restore it into a fresh runner: (the saved state, the restored runner)."""
    runner = Runner(sc)
    runner.checkpoints = _InMemory()
    runner.progress = _StopAfter(runner, n)
    with pytest.raises(Interrupted, match="saved in memory"):
        runner.run()
    (state,) = runner.checkpoints.states
    assert runner.sim.tick >= state["simulator"]["tick"] > 0
    path = checkpoint.save(tmp_path / f"stop{n}.npz", state)
    resumed = Runner(sc)
    checkpoint.restore(resumed, checkpoint.load(path))
    assert resumed.sim.tick == state["simulator"]["tick"]
    return state, resumed


@pytest.mark.parametrize(("source", "stops"), [
    ("analytic", [3, 6, 8, 12]),  # end of a phase, before / inside an evaluation, final one
    ("reservoir", [2]),           # inside a phase, readouts learning
])
def test_stop_anywhere_and_resume_is_bit_identical(tmp_path, source, stops):
    sc = _stops_scenario(source)
    reference = Runner(sc).run()
    assert set(reference.weights) == ({"h1.W", "out.W", "m1.W_o", "m2.W_o"}
                                      if source == "reservoir" else {"h1.W", "out.W"})
    in_flight = 0
    for n in stops:
        state, resumed = _stop_and_resume(tmp_path, sc, n)
        in_flight += sum(len(ch["in_flight"]) for ch in state["simulator"]["channels"].values())
        _assert_same_result(reference, resumed.run())
    assert in_flight > 0 or source == "reservoir"  # delayed messages crossed a checkpoint


SLICED_SCENARIO = """name: sliced stops
network:
  name: zero-delay analytic
  populations:
    x: {kind: input, size: 2}
    h1: {kind: layer, size: 3}
    out: {kind: layer, size: 1}
    m1: {kind: reservoir, size: 8}
    m2: {kind: reservoir, size: 8}
  projections:
    - {from: x, to: h1}
    - {from: h1, to: out}
    - {from: m1, to: h1, kind: modulatory}
    - {from: m2, to: out, kind: modulatory}
trials: 2
backend: numba
dataset: {name: tanh_boundary, params: {samples: 20, test_samples: 150}}
timing: {dt: 1 ms, sample: 7 ms}
rule: {name: hsic, gamma: 2, memory: 4, lr: {eta: 0.05, momentum: 0.5, decay: 100 ms}}
modulator: {source: analytic}
phases:
  - {name: warm, duration: 23 ms}
  - {name: settle, duration: 1000 ms, learn: [layers]}
  - {name: train, epochs: 3, learn: [layers]}
  - {name: more, epochs: 1, learn: [layers]}
evaluate: {every: 3}
"""
"""RESERVOIR_SCENARIO's schedule with zero-delay channels, the instant eligibility and no
probes, on the numba backend: its learning and evaluation ticks run in slices
(eventsim.engine.slicing), and its chunks end inside samples."""


def test_a_sliced_run_stopped_anywhere_resumes_bit_identically(tmp_path):
    pytest.importorskip("numba")
    sc = parse_scenario(SLICED_SCENARIO)
    runner = Runner(sc)
    slices = []
    sliced = runner.sim.slicer.run
    runner.sim.slicer.run = lambda *a, learn: (slices.append(learn), sliced(*a, learn=learn))
    reference = runner.run()
    assert True in slices and False in slices  # learning and evaluation slices both ran
    for n in (2, 3, 6, 8):
        _assert_same_result(reference, _stop_and_resume(tmp_path, sc, n)[1].run())


# ============================================================ the last evaluation
def _count_evaluations(runner: Runner) -> list[tuple[str, int]]:
    """Record ``(phase, epoch)`` of each evaluation ``runner`` makes from now on."""
    calls = []
    evaluate = runner.evaluate

    def spy(phase: str) -> dict:
        calls.append((phase, runner.epoch))
        return evaluate(phase)

    runner.evaluate = spy
    return calls


def test_the_last_epochs_evaluation_is_the_final_one_also_after_a_resume(tmp_path):
    """evaluate.every = 4 divides the 12 epochs: after epoch 12 comes one evaluation (the
    final one), not the periodic one and then the final one. A run resumed from the
    checkpoint after epoch 12 makes just that one too, also from a state that still has
    the periodic evaluation due (a stop during it, saved before this rule)."""
    sc = load_scenario(_write(tmp_path))
    runner = Runner(sc)
    runner.checkpoints = _InMemory()
    calls = _count_evaluations(runner)
    reference = runner.run()
    assert calls == [("train", 4), ("train", 8), ("final", 12)]
    scored = {(r["phase"], r["epoch"]) for r in reference.metrics
              if r["metric"] == "accuracy/test"}
    assert scored == {("train", 4), ("train", 8), ("final", 12)}
    assert reference.ticks == runner.total_ticks()
    assert [p["name"] for p in reference.phases] == ["warmup", "train", "evaluate"]
    path = checkpoint.save(tmp_path / "last.npz", runner.checkpoints.states[-1])
    position = checkpoint.load(path)["runner"]["position"]
    assert position["epoch_in_phase"] == 12 and not position["evaluate"]
    for evaluate in (False, True):
        state = checkpoint.load(path)
        state["runner"]["position"]["evaluate"] = evaluate
        resumed = Runner(sc)
        checkpoint.restore(resumed, state)
        calls = _count_evaluations(resumed)
        _assert_same_result(reference, resumed.run())
        assert calls == [("final", 12)]


# ============================================================ divergence
def test_divergence_stops_the_run_and_keeps_the_checkpoint_before_it(tmp_path):
    """The rate jumps beyond float32 at the third epoch (schedule {2: 1e39})."""
    scenario = _write(tmp_path, lr=", schedule: {2: 1.0e+39}")
    out = tmp_path / "run"
    with np.errstate(all="ignore"), pytest.raises(DivergenceError) as info:
        execute(load_scenario(scenario), out=out, quiet=True, plots=False)
    message = str(info.value)
    parts = message.split()
    assert parts[0] == "diverged:" and parts[1] in {"h1.u", "h1.z", "h1.W", "out.u", "out.z",
                                                    "out.W"}, message
    tick = int(parts[parts.index("tick") + 1])
    epoch_2_end = WARMUP + 2 * SAMPLES * SAMPLE_TICKS
    assert epoch_2_end < tick <= epoch_2_end + SAMPLES * SAMPLE_TICKS
    assert f"at tick {tick} (t = {tick} ms) in phase 'train' " in message

    meta = load_meta(out)
    assert meta["status"] == "diverged" and meta["error"] == message
    assert meta["ticks"] == tick and meta["backend"] == "numpy" and meta["device"] == "cpu"
    assert meta["end_time"] >= meta["start_time"] and meta["wall_time_s"] > 0
    assert meta["checkpoint"] == {"tick": epoch_2_end, "phase": "train", "epoch": 2}
    before = (out / checkpoint.CHECKPOINT_FILE).read_bytes()
    state = checkpoint.load(out / checkpoint.CHECKPOINT_FILE)
    assert state["simulator"]["tick"] == epoch_2_end
    for pop in state["simulator"]["populations"].values():
        for name, value in pop.items():
            if isinstance(value, np.ndarray):
                assert np.isfinite(value).all(), name
    rows = [row.split(",") for row in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert {epoch for phase, epoch, *_ in rows if phase == "train"} == {"1", "2"}

    with np.errstate(all="ignore"), pytest.raises(DivergenceError) as again:
        eventsim.resume(out, plots=False)
    assert str(again.value) == message  # the same divergence, from the same state
    assert (out / checkpoint.CHECKPOINT_FILE).read_bytes() == before


def test_a_non_finite_state_is_never_saved(tmp_path):
    sc = load_scenario(_write(tmp_path))
    runner = Runner(sc)
    runner.checkpoints = checkpoint.Checkpointer(
        RunDir.create(tmp_path, scenario_name=sc.name, resolved_config=sc.resolved()))
    runner.sim.set_feed(runner.train_feed("shuffled"))
    runner.sim.run(50)
    runner.checkpoints.save(checkpoint.capture(runner))
    path = runner.checkpoints.directory / checkpoint.CHECKPOINT_FILE
    before = path.read_bytes()
    runner.sim.populations["out"].W[1, 0, 0] = np.inf
    with pytest.raises(DivergenceError, match=r"^diverged: out\.W is not finite at tick 50 "):
        runner.checkpoints.save(checkpoint.capture(runner))
    assert path.read_bytes() == before


# ============================================================ the file
def test_state_file_round_trips_every_kind_of_value(tmp_path):
    rng = np.random.Generator(np.random.PCG64(7))
    rng.random(3)
    state = {
        "format": checkpoint.FORMAT,
        "rng": rng.bit_generator.state,
        "in_flight": {12: [(np.ones((2, 3), np.float32), None)],
                      15: [(np.zeros((2, 3), np.float32), np.array([1.0, 0.0], np.float32))]},
        "ints": np.arange(5, dtype=np.int64), "empty": np.zeros((0, 2)), "none": None,
        "flags": [True, False], "nan": math.nan, "text": "ξ → h1", "scalar": np.float32(0.5),
        "__items__": "a key the encoding uses", "nested": {"f64": np.array(1 / 3)},
    }
    loaded = checkpoint.load(checkpoint.save(tmp_path / "c.npz", checkpoint.freeze(state)))
    assert loaded["rng"] == rng.bit_generator.state
    restored = np.random.Generator(np.random.PCG64())
    restored.bit_generator.state = loaded["rng"]
    assert restored.random() == rng.random()
    assert sorted(loaded["in_flight"]) == [12, 15]
    (msg, mask), = loaded["in_flight"][15]
    np.testing.assert_array_equal(msg, np.zeros((2, 3)))
    assert msg.dtype == np.float32 and mask.tolist() == [1.0, 0.0]
    assert loaded["in_flight"][12][0][1] is None
    assert loaded["ints"].dtype == np.int64 and loaded["empty"].shape == (0, 2)
    assert loaded["none"] is None and loaded["flags"] == [True, False]
    assert math.isnan(loaded["nan"]) and loaded["text"] == "ξ → h1" and loaded["scalar"] == 0.5
    assert loaded["__items__"] == state["__items__"]
    assert loaded["nested"]["f64"] == 1 / 3


def test_freeze_copies_so_the_run_can_go_on():
    live = {"W": np.zeros(3)}
    frozen = checkpoint.freeze(live)
    live["W"][0] = 1.0
    assert frozen["W"][0] == 0.0


@pytest.mark.parametrize("content", [None, b"not a zip file", b""])
def test_unreadable_checkpoint_is_one_line(tmp_path, content):
    path = tmp_path / "checkpoint.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


def _stopped_copy(ref: Path, dest: Path) -> Path:
    """A copy of the finished run ``ref`` that looks stopped at its last checkpoint."""
    shutil.copytree(ref, dest)
    RunDir(dest).write_meta(status="interrupted", end_time=None)
    return dest


def test_an_edited_config_is_refused_on_resume(tmp_path, reference):
    _, ref = reference
    out = _stopped_copy(ref, tmp_path / "edited")
    config = out / CONFIG_FILE
    config.write_text(config.read_text().replace("gamma: 2", "gamma: 3"))
    with pytest.raises(CheckpointError, match="was it edited") as info:
        eventsim.resume(out, plots=False)
    assert str(info.value).startswith(str(config)) and "\n" not in str(info.value)


def test_a_run_started_before_a_field_existed_resumes_with_its_default(tmp_path, reference):
    """A field this version added since the run started (here ``evaluate.layers``)
    takes its default, goes into config.resolved.yaml and is named in meta.json."""
    _, ref = reference
    out = _stopped_copy(ref, tmp_path / "older")
    older = load_config(out)
    assert older["evaluate"].pop("layers") == []
    RunDir(out).write_config(older)
    state = checkpoint.load(out / checkpoint.CHECKPOINT_FILE)
    checkpoint.save(out / checkpoint.CHECKPOINT_FILE, {**state, "config_hash": config_hash(older)})

    eventsim.resume(out, plots=False)
    _assert_same_run(ref, out)
    assert load_config(out) == load_config(ref)
    assert load_meta(out)["resumed"][-1]["added_fields"] == ["evaluate.layers"]


# ============================================================ configuration, CLI
def test_resolved_config_loads_as_the_same_scenario(reference):
    scenario, ref = reference
    original = load_scenario(scenario)
    again = load_scenario(ref / "config.resolved.yaml")
    assert again.resolved() == original.resolved()
    assert isinstance(json.loads(json.dumps(again.resolved()))["network"], dict)


@pytest.mark.parametrize(("value", "every"), [("1 epoch", 1), ("5 epochs", 5), (2, 2), (0, 0)])
def test_checkpoint_every_accepts_epochs(tmp_path, value, every):
    sc = load_scenario(_write(tmp_path), {"checkpoint.every": value})
    assert sc.spec.checkpoint.every == every


@pytest.mark.parametrize("value", ["1 s", -1, 1.5, "epoch"])
def test_checkpoint_every_rejects_other_values(tmp_path, value):
    path = _write(tmp_path)
    path.write_text(path.read_text().replace("{every: 1 epoch}", f"{{every: {value}}}"))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}:14: checkpoint.every: expected a number of epochs")


def test_backprop_does_not_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint.every: the backprop baseline"):
        load_scenario(_write(tmp_path), {"rule.name": "backprop"})


@pytest.mark.parametrize("extra", [["SCENARIO"], ["--trials", "2"], ["--set", "seed=1"],
                                   ["--out", "x"]])
def test_resume_takes_only_the_run_directory(tmp_path, capsys, extra):
    args = [str(_write(tmp_path)) if a == "SCENARIO" else a for a in extra]
    assert main(["run", "--resume", str(tmp_path), *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eventsim: error: --resume continues a run")


def test_run_needs_a_scenario_or_resume(capsys):
    assert main(["run", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("eventsim: error: run needs a SCENARIO file")


def test_resume_refuses_finished_and_empty_directories(tmp_path, reference, capsys):
    _, ref = reference
    assert main(["run", "--resume", str(ref), "--quiet"]) == 2
    assert "the run has finished" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "--resume", str(empty), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint" in err


def test_resume_refuses_a_run_that_is_still_going(tmp_path, capsys):
    run = RunDir.create(tmp_path, scenario_name="busy", resolved_config={"name": "busy"})
    with run.lock():
        assert main(["run", "--resume", str(run.path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another process is running in this run directory" in err
    assert main(["run", "--resume", str(run.path), "--quiet"]) == 2  # free again: no checkpoint
    assert "no checkpoint" in capsys.readouterr().err
