"""Run directories: atomic writes, config/meta/metrics/traces round trips."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import eventsim
from eventsim import rundir
from eventsim.errors import EventsimError
from eventsim.plots import plot_modulator_timing
from eventsim.records import expand_channel, runs_of
from eventsim.rundir import (
    ENVIRONMENT_FIELDS,
    META_FIELDS,
    RunDir,
    added_keys,
    atomic_open,
    atomic_write,
    config_hash,
    load_channels,
    load_config,
    load_meta,
    load_metrics,
    load_traces,
    metrics_frame,
    trace_names,
)

REPO_ROOT = Path(eventsim.__file__).resolve().parent.parent
CHUNK = 1 << 16

SLOW_WRITER = textwrap.dedent(f"""
    import sys, time
    from eventsim.rundir import atomic_open

    with atomic_open(sys.argv[1], "wb") as fh:
        for i in range(100_000):
            fh.write(b"%d" % (i % 10) * {CHUNK})
            fh.flush()
            if i == 3:
                print("writing", flush=True)
            time.sleep(0.002)
""")


def _temp_files(directory: Path, target: str) -> list[Path]:
    """The hidden temporary files atomic writes of ``target`` use: ``.<target>.<8 hex>.tmp``."""
    pattern = re.compile(rf"\.{re.escape(target)}\.[0-9a-f]{{8}}\.tmp")
    return [p for p in directory.iterdir() if pattern.fullmatch(p.name)]


# ---------------------------------------------------------------------------
# atomic writes


@pytest.mark.parametrize("previous", [None, b"previous complete content\n"])
def test_sigkill_mid_write_leaves_no_partial_file(tmp_path, previous):
    target = tmp_path / "big.bin"
    if previous is not None:
        atomic_write(target, previous)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)],
                            stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline() == b"writing\n"
        deadline = time.monotonic() + 10
        while True:  # wait until the temporary file really holds several chunks
            temps = _temp_files(tmp_path, target.name)
            if temps and temps[0].stat().st_size >= 4 * CHUNK:
                break
            assert time.monotonic() < deadline, "the writer never got going"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    if previous is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == previous
    # Anything else left behind is the killed writer's hidden temporary file.
    leftovers = {p.name for p in tmp_path.iterdir()} - {target.name}
    assert leftovers == {p.name for p in _temp_files(tmp_path, target.name)}
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers)


def test_exception_removes_temp_and_keeps_target(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as fh:
        fh.write("new and partial")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_text_bytes_and_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = atomic_write(tmp_path / "t.txt", "héllo")
    assert path.read_bytes() == "héllo".encode()
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="modes"):
        with atomic_open(path, "a"):
            pass


# ---------------------------------------------------------------------------
# creating and opening run directories


CONFIG = {"name": "Tanh MLP, reservoir", "timing": {"dt": "1 ms"},
          "network": {"populations": {"x": {"kind": "input", "size": 2}}, "projections": []},
          "zeta": 1, "alpha": (1, 2), "eta": np.float32(0.5)}


def test_create_names_directory_and_writes_config_in_order(tmp_path):
    run = RunDir.create(tmp_path, scenario_name=CONFIG["name"], resolved_config=CONFIG)
    assert run.path.parent == tmp_path / "tanh-mlp-reservoir"
    stamp, digest = run.path.name.rsplit("-", 1)
    datetime.strptime(stamp, "%Y%m%d-%H%M%S")
    assert re.fullmatch(r"[0-9a-f]{8}", digest) and digest == config_hash(CONFIG)
    text = (run.path / "config.resolved.yaml").read_text()
    top_level = [line.split(":")[0] for line in text.splitlines() if line[0] not in " -"]
    assert top_level == ["name", "timing", "network", "zeta", "alpha", "eta"]
    assert load_config(run) == {**CONFIG, "alpha": [1, 2], "eta": 0.5}
    assert yaml.safe_load(text)["eta"] == 0.5


def test_hash_depends_on_content_not_key_order():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1, "b": 2}) != config_hash({"a": 1, "b": 3})


def test_same_second_same_config_gets_a_suffix(tmp_path, monkeypatch):
    class FrozenClock:
        @staticmethod
        def now():
            return datetime(2024, 1, 2, 3, 4, 5)

    monkeypatch.setattr(rundir, "datetime", FrozenClock)
    first = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    second = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    assert first.path.name == f"20240102-030405-{config_hash({'a': 1})}"
    assert second.path.name == first.path.name + "-2"


def test_out_is_used_exactly_but_never_reused(tmp_path):
    out = tmp_path / "exact" / "place"
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1}, out=out)
    assert run.path == out and (out / "config.resolved.yaml").is_file()
    with pytest.raises(EventsimError, match="not empty"):
        RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1}, out=out)


def test_open_rejects_non_run_directories(tmp_path):
    with pytest.raises(EventsimError, match="no such run directory"):
        RunDir.open(tmp_path / "missing")
    with pytest.raises(EventsimError, match="not a run directory"):
        RunDir.open(tmp_path)
    with pytest.raises(EventsimError, match="no such file"):
        load_metrics(tmp_path)


# ---------------------------------------------------------------------------
# meta.json


def test_meta_has_every_required_key(tmp_path):
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    run.write_meta(backend="numpy", device="cpu", dtype="float32", seeds=np.array([1, 2]),
                   start_time="2024-01-02T03:04:05")
    run.write_meta(end_time="2024-01-02T03:05:05", wall_time_s=60.0, ticks=np.int64(1000))
    meta = json.loads((run.path / "meta.json").read_text())
    assert set(META_FIELDS) | set(ENVIRONMENT_FIELDS) <= set(meta)
    assert meta["seeds"] == [1, 2] and meta["ticks"] == 1000 and meta["backend"] == "numpy"
    assert meta["start_time"] == "2024-01-02T03:04:05"  # kept from the first call
    assert meta["eventsim_version"] == eventsim.__version__
    assert meta["python"].count(".") == 2 and meta["platform"]
    packages = meta["packages"]
    for name in ("numpy", "simpy", "networkx", "pyyaml", "pydantic", "matplotlib", "h5py",
                 "tqdm", "cupy"):
        assert name in packages
    assert packages["numpy"] == np.__version__ and packages["h5py"] == h5py.__version__
    assert meta["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", meta["git_commit"])
    assert load_meta(run) == meta


def test_meta_keys_present_before_caller_supplies_them(tmp_path):
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    run.write_meta()
    meta = load_meta(run)
    assert all(meta[key] is None for key in META_FIELDS)


def test_meta_keeps_the_environment_of_the_process_that_started_the_run(tmp_path, monkeypatch):
    """A commit made to the checkout during a long run must not relabel the run."""
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    run.write_meta(status="running")
    started = load_meta(run)
    later = dict(started, git_commit="f" * 40, git_dirty=not started["git_dirty"])
    monkeypatch.setattr(rundir, "environment_facts", lambda: later)
    run.write_meta(status="finished")
    RunDir.open(run.path).write_meta(end_time="then")  # a resuming process
    meta = load_meta(run)
    assert meta["status"] == "finished" and meta["end_time"] == "then"
    assert {key: meta[key] for key in ENVIRONMENT_FIELDS} == {
        key: started[key] for key in ENVIRONMENT_FIELDS}
    assert meta["git_commit"] != "f" * 40


def test_environment_facts_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "")
    facts = rundir.environment_facts()
    assert facts["git_commit"] is None and facts["git_dirty"] is None
    assert set(facts) == set(ENVIRONMENT_FIELDS)


# ---------------------------------------------------------------------------
# metrics.csv


ROWS = [
    dict(phase="pretrain", epoch=None, tick=50, trial=0, metric="xi_corr/h1", value=1 / 3),
    dict(phase="train", epoch=np.int64(2), tick=np.int64(1200), trial=1,
         metric="objective_dl/h1", value=np.float32(-0.125)),
    dict(phase="test", epoch=None, tick=3000, trial=2, metric="accuracy/test", value=0.94),
    dict(phase="train", epoch=3, tick=1300, trial=0, metric="loss/h2", value=math.nan),
]


def _same_rows(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k != "value"} == \
               {k: v for k, v in y.items() if k != "value"}
        assert x["value"] == y["value"] or (math.isnan(x["value"]) and math.isnan(y["value"]))


def test_metrics_round_trip_and_reopen(tmp_path):
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    run.add_metrics(ROWS[:2])
    run.flush_metrics()
    header = (run.path / "metrics.csv").read_text().splitlines()[0]
    assert header == "phase,epoch,tick,trial,metric,value"
    expected = [{**r, "epoch": None if r["epoch"] is None else int(r["epoch"]),
                 "tick": int(r["tick"]), "value": float(r["value"])} for r in ROWS]
    _same_rows(load_metrics(run), expected[:2])
    reopened = RunDir.open(run.path)
    reopened.add_metrics(ROWS[2:])
    reopened.flush_metrics()
    loaded = load_metrics(run.path)
    _same_rows(loaded, expected)
    assert type(loaded[1]["epoch"]) is int and type(loaded[1]["value"]) is float


def test_metric_rows_must_have_exact_keys(tmp_path):
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    with pytest.raises(ValueError, match="exactly the keys"):
        run.add_metrics([dict(phase="train", tick=1, trial=0, metric="m", value=1.0)])


def test_metrics_frame_needs_pandas(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    run.add_metrics(ROWS)
    run.flush_metrics()
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(EventsimError, match="pip install pandas"):
        metrics_frame(run)


def test_metrics_frame_with_pandas(tmp_path):
    pytest.importorskip("pandas")
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    run.add_metrics(ROWS)
    run.flush_metrics()
    frame = metrics_frame(run)
    assert list(frame.columns) == ["phase", "epoch", "tick", "trial", "metric", "value"]
    assert len(frame) == len(ROWS) and frame["epoch"].isna().sum() == 2


# ---------------------------------------------------------------------------
# traces.h5


def _trace_inputs():
    rng = np.random.default_rng(3)
    ticks = np.arange(0, 400, 2)
    traces = {
        "h1.z": dict(data=rng.standard_normal((ticks.size, 3, 4)).astype(np.float32),
                     ticks=ticks, units="rate"),
        "mem_h1.readout": dict(data=rng.standard_normal((ticks.size, 3, 4)), ticks=ticks,
                               units="a.u."),
        "out.label": dict(data=rng.integers(0, 10, size=(5, 3)), ticks=np.arange(5) * 50,
                          units="class"),
    }
    sent = np.arange(0, 30_000, 3)
    deliver = sent + 5
    deliver[::7] = -1
    # The plain ticks each channel record below stands for (checked after loading).
    plain = {"mem_h1->h1": dict(sent_tick=sent, deliver_tick=deliver[:, None],
                                sample_ticks=np.arange(20_000) * 50),
             "mem_h2->h2": dict(sent_tick=np.zeros(0, int), deliver_tick=np.zeros((0, 2), int),
                                sample_ticks=np.array([0, 50])),
             "every_tick": dict(sent_tick=np.r_[0:500, 900:1000],
                                deliver_tick=np.repeat(np.r_[0:500, 900:1000][:, None] + 2, 3,
                                                       axis=1),
                                sample_ticks=np.arange(0, 1000, 10)),
             # The engine records one delivery tick per trial: (M, trial).
             "per_trial": dict(sent_tick=np.array([0, 10, 20]),
                               deliver_tick=np.array([[3, -1], [12, 13], [-1, -1]]),
                               sample_ticks=np.array([0]))}
    channels = {
        "mem_h1->h1": dict(sent_runs=runs_of(sent), trials=1, delay=5,
                           deliver_tick=deliver[:, None],
                           sample_runs=runs_of(np.arange(20_000) * 50)),
        "mem_h2->h2": dict(sent_runs=np.zeros((0, 3), int), trials=2, delay=1, deliver_tick=None,
                           sample_runs=[[0, 50, 2]]),
        # deterministic: no delivery ticks stored, two runs of sends
        "every_tick": dict(sent_runs=[[0, 1, 500], [900, 1, 100]], trials=3, delay=2,
                           deliver_tick=None, sample_runs=[[0, 10, 100]]),
        "per_trial": dict(sent_runs=[[0, 10, 3]], trials=2, delay=3,
                          deliver_tick=plain["per_trial"]["deliver_tick"], sample_runs=[[0, 0, 1]]),
    }
    return traces, channels, plain
def test_traces_round_trip(tmp_path):
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    traces, channels, _ = _trace_inputs()
    run.write_traces(traces, channels, dt_ms=0.5)
    assert sorted(trace_names(run)) == sorted(traces)
    loaded = load_traces(run)
    assert set(loaded) == set(traces)
    for name, entry in traces.items():
        got = loaded[name]
        np.testing.assert_array_equal(got["data"], entry["data"])
        assert got["data"].dtype == np.asarray(entry["data"]).dtype
        np.testing.assert_array_equal(got["ticks"], entry["ticks"])
        np.testing.assert_allclose(got["time_ms"], np.asarray(entry["ticks"]) * 0.5)
        assert got["units"] == entry["units"] and got["dt_ms"] == 0.5
    only = load_traces(run, names=["h1.z"])
    assert list(only) == ["h1.z"]
    with h5py.File(run.path / "traces.h5", "r") as f:
        ds = f["signals/h1.z"]
        assert ds.attrs["units"] == "rate" and ds.attrs["dt"] == 0.5
        assert ds.dims[0].label == "time" and ds.dims[0][0].attrs["units"] == "ms"
    assert not _temp_files(run.path, "traces.h5")


def _assert_plain(loaded: dict, plain: dict) -> None:
    """Channel records expand to the ``plain`` ticks, sample starts and dropped flags."""
    assert set(loaded) == set(plain)
    for name, entry in plain.items():
        got = expand_channel(loaded[name])
        for key in ("sent_tick", "deliver_tick", "sample_ticks"):
            np.testing.assert_array_equal(got[key], entry[key], err_msg=f"{name} {key}")
        np.testing.assert_array_equal(got["dropped"], entry["deliver_tick"] < 0)


def test_channels_round_trip(tmp_path):
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    traces, channels, plain = _trace_inputs()
    run.write_traces(traces, channels, dt_ms=1.0)
    loaded = load_channels(run)
    _assert_plain(loaded, plain)
    for name, entry in channels.items():
        got = loaded[name]
        np.testing.assert_array_equal(got["sent_runs"], np.reshape(entry["sent_runs"], (-1, 3)))
        assert (got["trials"], got["delay"]) == (entry["trials"], entry["delay"])
        assert (got["deliver_tick"] is None) == (entry["deliver_tick"] is None)
    assert expand_channel(loaded["mem_h1->h1"])["dropped"].sum() == len(range(0, 10_000, 7))
    assert expand_channel(loaded["per_trial"])["dropped"].tolist() == [[False, True],
                                                                      [False, False],
                                                                      [True, True]]
    window = expand_channel(loaded["every_tick"], 495, 905)
    np.testing.assert_array_equal(window["sent_tick"], np.r_[495:500, 900:905])
    np.testing.assert_array_equal(window["sample_ticks"], np.arange(500, 905, 10))
    window = expand_channel(loaded["per_trial"], 5, 20)
    np.testing.assert_array_equal(window["deliver_tick"], [[12, 13]])
    assert plot_modulator_timing(loaded, tmp_path / "plots").is_file()


def test_channel_records_stay_compact_in_the_file(tmp_path):
    """A channel that sends every tick of a long run is stored as runs: the file does
    not grow with the number of messages (the plain form held M x K ticks)."""
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    ticks = 50_000_000
    channels = {name: dict(sent_runs=[[0, 1, ticks // 2], [ticks // 2 + 100, 1, ticks // 4]],
                           trials=4, delay=3, deliver_tick=None,
                           sample_runs=[[0, 20, ticks // 20]])
                for name in ("h1", "h2", "out")}
    run.write_traces({}, channels, dt_ms=1.0)
    assert (run.path / "traces.h5").stat().st_size < 64 * 1024
    loaded = load_channels(run)
    window = expand_channel(loaded["h2"], ticks // 2 - 2, ticks // 2 + 102)
    np.testing.assert_array_equal(window["sent_tick"],
                                  [ticks // 2 - 2, ticks // 2 - 1, ticks // 2 + 100,
                                   ticks // 2 + 101])
    assert window["deliver_tick"].shape == (4, 4)


def test_traces_of_the_plain_format_still_load(tmp_path):
    """A traces.h5 written before channel records were compact (format
    eventsim-traces/1: plain tick datasets) loads as records that expand to its ticks."""
    _, _, plain = _trace_inputs()
    path = tmp_path / "traces.h5"
    with h5py.File(path, "w", libver=("v108", "latest")) as f:
        f.attrs["format"] = "eventsim-traces/1"
        f.attrs["dt_ms"] = 1.0
        for group in ("signals", "ticks", "time"):
            f.create_group(group)
        for name, entry in plain.items():
            g = f.create_group(f"channels/{name}")
            deliver = entry["deliver_tick"]
            # the old writer also took (M,) delivery ticks
            g["deliver_tick"] = deliver[:, 0] if name == "mem_h1->h1" else deliver
            g["sent_tick"] = entry["sent_tick"]
            g["dropped"] = g["deliver_tick"][()] < 0
            g.attrs["sample_ticks"] = entry["sample_ticks"]
    loaded = load_channels(tmp_path)
    _assert_plain(loaded, plain)
    assert loaded["every_tick"]["sent_runs"].tolist() == [[0, 1, 500], [900, 1, 100]]
    assert all(rec["delay"] is None for rec in loaded.values())
    assert plot_modulator_timing(loaded, tmp_path / "plots").is_file()


def test_traces_reject_bad_shapes_and_keep_old_file(tmp_path):
    run = RunDir.create(tmp_path, scenario_name="s", resolved_config={"a": 1})
    traces, channels, _ = _trace_inputs()
    run.write_traces(traces, channels, dt_ms=1.0)
    before = (run.path / "traces.h5").read_bytes()
    bad = {"h1.z": dict(data=np.zeros((3, 2)), ticks=np.arange(4), units="rate")}
    with pytest.raises(ValueError, match=r"\(time, trial"):
        run.write_traces(bad, {}, dt_ms=1.0)
    no_delay = {"c": dict(sent_runs=[[1, 1, 2]], trials=1, delay=None, deliver_tick=None,
                          sample_runs=[[0, 0, 1]])}
    with pytest.raises(ValueError, match="needs its delay"):
        run.write_traces({}, no_delay, dt_ms=1.0)
    wrong_len = {"c": dict(sent_runs=[[1, 1, 2]], trials=2, delay=1, deliver_tick=[[3, 4]],
                           sample_runs=[[0, 0, 1]])}
    with pytest.raises(ValueError, match=r"\(M, trial\) = \(2, 2\)"):
        run.write_traces({}, wrong_len, dt_ms=1.0)
    not_runs = {"c": dict(sent_runs=[1, 2, 3, 4], trials=1, delay=1, deliver_tick=None,
                          sample_runs=[[0, 0, 1]])}
    with pytest.raises(ValueError, match=r"\(R, 3\)"):
        run.write_traces({}, not_runs, dt_ms=1.0)
    assert (run.path / "traces.h5").read_bytes() == before
    assert not _temp_files(run.path, "traces.h5")


def test_added_keys_names_new_keys_at_any_depth():
    old = {"a": 1, "b": {"c": 2}, "d": [1]}
    new = {"a": 1, "b": {"c": 2, "e": {"f": 3}}, "d": [1, 2], "g": None}
    assert added_keys(old, new) == ["b.e", "g"]
    assert added_keys(new, new) == []
