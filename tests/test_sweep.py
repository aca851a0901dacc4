"""Sweeps: the ``sweep:`` block (expansion, located errors), running the points serially,
on 2 local worker processes and on a local Dask cluster (same rows), failed points,
re-runs that skip finished points, and the CLI."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from eventsim.cli import main
from eventsim.config.scenario import parse_scenario
from eventsim.config.sweep import default_plots, panel_keys, points
from eventsim.errors import ConfigError
from eventsim.sweep import load_results, run_point, run_sweep

REPO = Path(__file__).resolve().parents[1]
NET = REPO / "networks" / "tanh_mlp.yaml"

BASE = f"""name: tiny sweep
network: {NET}
seed: 3
trials: 2
dataset: {{name: tanh_boundary, params: {{samples: 10, test_samples: 20}}}}
timing: {{dt: 1 ms, sample: 5 ms}}
rule: {{name: hsic, gamma: 2, memory: 4, lr: {{eta: 0.05}}}}
phases:
  - {{name: train, epochs: 2, learn: [layers]}}
"""


def _write(tmp_path, sweep: str, name="sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(BASE + sweep, encoding="utf-8")
    return path


GRID = """sweep:
  grid:
    modulator.all.delay: [0, 3 ms]
    rule.trace: [0, tick]
"""

# Deterministic columns: everything but the wall time.
def _stable(rows):
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


def _csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return _stable(list(csv.DictReader(fh)))


# ================================================================== schema
def test_grid_and_variants_expand_in_order():
    sc = parse_scenario(BASE + """sweep:
  grid: {rule.gamma: [1, 2], rule.trace: [0, 5 ms, tick]}
  variants:
    - {name: a}
    - {name: b, rule.memory: 3}
""")
    pts = points(sc.spec.sweep)
    assert len(pts) == 12
    assert [p.index for p in pts] == list(range(12))
    assert pts[0].variant == "a" and pts[0].overrides == {"rule.gamma": 1, "rule.trace": 0}
    assert pts[1].overrides == {"rule.gamma": 1, "rule.trace": "5 ms"}  # last key fastest
    assert pts[3].overrides == {"rule.gamma": 2, "rule.trace": 0}
    assert pts[6].variant == "b"
    assert pts[6].overrides == {"rule.memory": 3, "rule.gamma": 1, "rule.trace": 0}


def test_zip_is_one_axis_outside_the_grid_and_inside_the_variants():
    sc = parse_scenario(BASE + """sweep:
  grid: {rule.gamma: [1, 2]}
  zip: {rule.memory: [2, 4, 6], rule.lr.eta: [0.1, 0.01, 0.01]}
  variants:
    - {name: a}
    - {name: b, rule.trace: tick}
""")
    pts = points(sc.spec.sweep)
    assert len(pts) == 2 * 3 * 2
    assert [p.index for p in pts] == list(range(12))
    # the zip's i-th values together; the overrides' order gives the table's columns
    assert pts[0].variant == "a"
    assert list(pts[0].overrides.items()) == [("rule.memory", 2), ("rule.lr.eta", 0.1),
                                              ("rule.gamma", 1)]
    assert pts[1].overrides == {"rule.memory": 2, "rule.lr.eta": 0.1, "rule.gamma": 2}
    assert pts[2].overrides == {"rule.memory": 4, "rule.lr.eta": 0.01, "rule.gamma": 1}
    assert pts[5].overrides == {"rule.memory": 6, "rule.lr.eta": 0.01, "rule.gamma": 2}
    assert pts[6].variant == "b"
    assert pts[6].overrides == {"rule.trace": "tick", "rule.memory": 2, "rule.lr.eta": 0.1,
                                "rule.gamma": 1}
    # default plot: the zip's first key against the first grid key
    (plot,) = default_plots(sc.spec.sweep)
    assert (plot.x, plot.lines) == ("rule.memory", "rule.gamma")


def test_zip_alone_and_its_plot_panels():
    sc = parse_scenario(BASE + """evaluate: {every: 1}
sweep:
  zip: {rule.memory: [2, 4], rule.lr.eta: [0.1, 0.01]}
  grid: {rule.gamma: [1, 2]}
  plots:
    - {kind: heatmap, x: rule.memory, y: epoch}
    - {kind: heatmap, x: rule.gamma, y: epoch}
    - {x: rule.lr.eta, lines: rule.gamma}
""")
    sweep = sc.spec.sweep
    assert [p.overrides for p in points(sweep)][:2] == [
        {"rule.memory": 2, "rule.lr.eta": 0.1, "rule.gamma": 1},
        {"rule.memory": 2, "rule.lr.eta": 0.1, "rule.gamma": 2}]
    # a zip key on an axis carries its partners: they make no panels
    assert [panel_keys(sweep, p) for p in sweep.plots] == [
        ["rule.gamma"], ["rule.memory", "rule.lr.eta"], []]


PLOTS = "sweep:\n  grid: {rule.gamma: [1, 2]}\n  plots:\n"
ZIP = "sweep:\n  zip:\n    rule.memory: [2, 4, 6]\n"


@pytest.mark.parametrize("sweep, line, field, words", [
    ("sweep: {grid: {rule.gamma: []}}", 10, "sweep.grid", "at least one value"),
    ("sweep: {grid: {rule.gamma: [{a: 1}]}}", 10, "sweep.grid", "scalars"),
    ("sweep: {grid: {rule.gamma: [1, 1]}}", 10, "sweep.grid", "listed twice"),
    ("sweep: {grid: {'rule..gamma': [1]}}", 10, "sweep.grid", "dotted path"),
    ("sweep: {}", 10, "sweep", "a grid, a zip or variants"),
    ("sweep: {grid: {rule.gamma: [1]}, variants: [{rule.gamma: 2}]}", 10, "sweep",
     "both the grid and a variant"),
    ("sweep: {variants: [{name: a}, {name: a}]}", 10, "sweep.variants", "same name"),
    ("sweep: {grid: {rule.gamma: [1]}, plots: [{x: rule.memory}]}", 10, "sweep.plots[0].x",
     "not a grid key"),
    # plots: kinds and their fields, axes against the grid and the scenario
    (PLOTS + "    - {kind: heat, x: rule.gamma}\n", 13, "sweep.plots[0].kind",
     "invalid value 'heat'"),
    (PLOTS + "    - {x: rule.gamma}\n    - {kind: heatmap, x: rule.gamma}\n", 14,
     "sweep.plots[1]", "a heatmap needs a y axis"),
    (PLOTS + "    - {kind: heatmap, x: rule.gamma, y: rule.gamma}\n", 13, "sweep.plots[0]",
     "two different axes"),
    (PLOTS + "    - {kind: heatmap, x: rule.gamma, y: epoch, lines: rule.gamma}\n", 13,
     "sweep.plots[0]", "has no lines"),
    (PLOTS + "    - {x: rule.gamma, normalise: max}\n", 13, "sweep.plots[0]",
     "heatmaps only"),
    (PLOTS + "    - {kind: heatmap, x: rule.gamma, y: epoch, normalise: best}\n", 13,
     "sweep.plots[0].normalise", "invalid value 'best'"),
    (PLOTS + "    - {kind: heatmap, x: rule.gamma, y: rule.memory}\n", 13, "sweep.plots[0].y",
     "'rule.memory' is not a grid key, a zip key or 'epoch'"),
    (PLOTS + "    - {kind: heatmap, x: rule.gamma, y: epoch}\n", 13, "sweep.plots[0].y",
     "the epoch axis needs evaluations during training"),
    ("evaluate: {every: 1}\n" + PLOTS + "    - {x: epoch, metric: weight_ratio}\n", 14,
     "sweep.plots[0].metric", "'weight_ratio' is not recorded per epoch"),
    ("sweep: {grids: {}}", 10, "sweep.grids", "unknown field"),
    # zip: equal lengths, at least two keys, a key in one place only, at sweep.zip.<key>
    (ZIP + "    rule.lr.eta: [0.1, 0.01]\n", 13, "sweep.zip.rule.lr.eta",
     "2 values, but rule.memory has 3"),
    (ZIP, 12, "sweep.zip.rule.memory", "a zip needs at least two keys"),
    (ZIP + "    rule.lr.eta: [0.1, 0.01, 0.01]\n  grid:\n    rule.lr.eta: [1, 2]\n", 13,
     "sweep.zip.rule.lr.eta", "rule.lr.eta is also a grid key"),
    (ZIP + "    rule.gamma: [1, 2, 3]\n  variants:\n    - {rule.gamma: 5}\n", 13,
     "sweep.zip.rule.gamma", "rule.gamma is also set by a variant"),
    (ZIP + "    rule.gamma: []\n", 13, "sweep.zip.rule.gamma", "give at least one value"),
    (ZIP + "    rule.gamma: [1, [2], 3]\n", 13, "sweep.zip.rule.gamma[1]", "scalars"),
    (ZIP + "    rule.gamma: 5\n", 13, "sweep.zip.rule.gamma", "expected a list, got 5"),
    (ZIP + "    'rule..gamma': [1, 2, 3]\n", 13, "sweep.zip.rule..gamma", "dotted path"),
    (ZIP + "    sweep.grid: [1, 2, 3]\n", 13, "sweep.zip.sweep.grid", "cannot change the sweep"),
    ("sweep:\n  zip:\n    rule.memory: [2, 4, 2]\n    rule.gamma: [1, 1, 1]\n", 12,
     "sweep.zip.rule.memory[2]", "settings 0 and 2 are the same"),
    # zip keys as plot axes: any one of them, not two together
    (ZIP + "    rule.gamma: [1, 2, 3]\n  plots:\n    - {kind: heatmap, x: rule.memory, "
     "y: rule.gamma}\n", 15, "sweep.plots[0].y",
     "rule.gamma varies together with rule.memory (the x axis)"),
    (ZIP + "    rule.gamma: [1, 2, 3]\n  plots:\n    - {x: rule.gamma, lines: rule.trace}\n",
     15, "sweep.plots[0].lines", "'rule.trace' is not a grid key, a zip key or 'epoch'"),
])
def test_bad_sweep_blocks_are_located(sweep, line, field, words):
    with pytest.raises(ConfigError) as info:
        parse_scenario(BASE + sweep, file="s.yaml")
    err = info.value
    assert (err.file, err.line, err.field) == ("s.yaml", line, field)
    assert words in err.message


@pytest.mark.parametrize("sweep, line, field, words", [
    # a value invalid on its own: at its place in the grid
    ("sweep:\n  grid:\n    rule.trace: [0, 5 parsecs]\n", 12, "sweep.grid.rule.trace[1]",
     "rule.trace = '5 parsecs' is not valid"),
    ("sweep:\n  grid:\n    rule.gama: [1, 2]\n", 12, "sweep.grid.rule.gama[0]",
     "unknown field 'gama'"),
    ("sweep:\n  grid:\n    modulator.all.phase: [0, 3]\n", 12,
     "sweep.grid.modulator.all.phase[1]", "not shorter than the period 1 ms"),
    # a zip setting: at the offending key and position
    ("sweep:\n  zip:\n    rule.gama: [1, 2]\n    rule.memory: [2, 4]\n", 12,
     "sweep.zip.rule.gama[0]", "unknown field 'gama'"),
    ("sweep:\n  zip:\n    rule.gamma: [1, 2]\n    rule.memory: [2, 0]\n", 13,
     "sweep.zip.rule.memory[1]", "rule.memory = 0 is not valid"),
    # a variant: at the offending key
    ("sweep:\n  variants:\n    - {name: x, rule.memory: 0}\n", 12,
     "sweep.variants[0].rule.memory", "positive integer"),
    # a bad combination: at the sweep key, naming the point
    ("sweep:\n  grid:\n    modulator.all.broadcast: [tick, sample]\n"
     "    modulator.all.period: [2 ms]\n", 10, "sweep", "point 1"),
])
def test_invalid_points_are_located_before_anything_runs(tmp_path, sweep, line, field, words):
    path = _write(tmp_path, sweep)
    with pytest.raises(ConfigError) as info:
        run_sweep(path, out=tmp_path / "out", log=lambda _: None)
    err = info.value
    assert (Path(err.file).name, err.line, err.field) == ("sweep.yaml", line, field)
    assert words in str(err)
    assert not (tmp_path / "out").exists()


def test_scenario_without_sweep_is_a_one_line_cli_error(tmp_path, capsys):
    path = tmp_path / "plain.yaml"
    path.write_text(BASE, encoding="utf-8")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has no sweep: block" in err and str(path) in err


# ================================================================ running
def test_serial_sweep_writes_one_row_per_point_and_trial(tmp_path):
    path = _write(tmp_path, GRID)
    res = run_sweep(path, out=tmp_path / "s", log=lambda _: None)
    rows = load_results(res.directory)
    assert res.finished == 4 and res.failed == 0 and res.skipped == 0
    assert len(rows) == 4 * 2
    assert [(r["point"], r["trial"], r["seed"]) for r in rows[:4]] == [
        ("0", "0", "3"), ("0", "1", "4"), ("1", "0", "3"), ("1", "1", "4")]
    assert [(r["modulator.all.delay"], r["rule.trace"]) for r in rows[::2]] == [
        ("0", "0"), ("0", "tick"), ("3 ms", "0"), ("3 ms", "tick")]
    assert all(r["status"] == "finished" and r["error"] == "" for r in rows)
    assert all(0.0 <= float(r["test_accuracy"]) <= 1.0 for r in rows)
    # each point is a run directory whose summary the row repeats
    for r in rows:
        meta = json.loads((res.directory / r["run_dir"] / "meta.json").read_text())
        assert meta["status"] == "finished"
        assert float(r["test_accuracy"]) == meta["summary"]["test_accuracy"][int(r["trial"])]
    # delay 0: the tick window is the instant rule, bit for bit; with a delay it differs
    acc = {(r["point"], r["trial"]): r["test_accuracy"] for r in rows}
    assert acc[("0", "0")] == acc[("1", "0")] and acc[("0", "1")] == acc[("1", "1")]
    assert res.plots and res.plots[0].name == "test_accuracy_vs_delay_by_trace.png"
    assert res.plots[0].stat().st_size > 1000


def test_two_local_workers_give_the_same_rows_as_serial(tmp_path):
    path = _write(tmp_path, GRID)
    serial = run_sweep(path, out=tmp_path / "serial", log=lambda _: None, plots=False)
    pool = run_sweep(path, out=tmp_path / "pool", workers=2, log=lambda _: None, plots=False)
    assert pool.finished == 4
    assert _stable(pool.rows) == _stable(serial.rows)
    assert _csv(pool.table) == _csv(serial.table)


def test_a_dask_local_cluster_gives_the_same_rows(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = _write(tmp_path, GRID)
    serial = run_sweep(path, out=tmp_path / "serial", log=lambda _: None, plots=False)
    # two single-thread workers in this process, reached through the scheduler's address
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        dask = run_sweep(path, out=tmp_path / "dask", scheduler=cluster.scheduler_address,
                         log=lambda _: None, plots=False)
    assert dask.finished == 4
    assert _csv(dask.table) == _csv(serial.table)


FAILING = """sweep:
  grid:
    rule.lr.eta: [0.05, 1.0e+39, 0.02]
"""


def test_a_failing_point_is_recorded_and_the_others_finish(tmp_path, capsys):
    path = _write(tmp_path, FAILING)
    out = tmp_path / "f"
    code = main(["sweep", str(path), "--out", str(out), "--workers", "2", "--no-plots"])
    assert code == 1
    text = capsys.readouterr().out
    assert "1 failed" in text and "2 point(s) finished" in text
    rows = load_results(out)
    status = {r["point"]: r["status"] for r in rows}
    assert status == {"0": "finished", "1": "failed", "2": "finished"}
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2  # one row per trial
    assert all(r["error"].startswith("diverged:") and r["test_accuracy"] == "" for r in failed)
    assert all(float(r["test_accuracy"]) > 0 for r in rows if r["status"] == "finished")
    record = json.loads(next((out / "points").glob("*/point.json")).read_text())
    assert set(record) >= {"status", "error", "overrides", "results", "hash"}


def test_rerun_skips_finished_points_and_retries_failed_ones(tmp_path):
    path = _write(tmp_path, FAILING)
    out = tmp_path / "r"
    first = run_sweep(path, out=out, log=lambda _: None, plots=False)
    assert (first.finished, first.failed, first.skipped) == (2, 1, 0)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("points/*/run/metrics.csv")
              if json.loads((p.parent / "meta.json").read_text())["status"] == "finished"}
    assert len(stamps) == 2
    lines = []
    again = run_sweep(path, out=out, log=lines.append, plots=False)
    assert (again.finished, again.failed, again.skipped) == (2, 1, 2)
    assert "2 already finished, 1 to run" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # finished runs untouched
    assert _stable(again.rows) == _stable(first.rows)
    # a changed configuration is a new point: everything runs again
    path.write_text(path.read_text().replace("epochs: 2", "epochs: 1"), encoding="utf-8")
    changed = run_sweep(path, out=out, log=lambda _: None, plots=False)
    assert (changed.skipped, changed.finished + changed.failed) == (0, 3)


def dying_runner(scenario_path, overrides, run_dir, backend=None):
    """A point runner whose worker process dies (no Python exception) at gamma = 3."""
    if overrides.get("rule.gamma") == 3:
        os._exit(3)
    return run_point(scenario_path, overrides, run_dir, backend)


def test_a_worker_process_that_dies_fails_only_its_point(tmp_path):
    path = _write(tmp_path, "sweep:\n  grid:\n    rule.gamma: [1, 3, 2, 4]\n")
    res = run_sweep(path, out=tmp_path / "d", workers=2, log=lambda _: None, plots=False,
                    runner=dying_runner)
    status = {r["point"]: (r["status"], r["error"]) for r in res.rows}
    assert {p: s for p, (s, _) in status.items()} == {0: "finished", 1: "failed",
                                                      2: "finished", 3: "finished"}
    assert "worker process died" in status[1][1]


def test_cli_sweep_prints_a_summary_and_writes_table_and_plot(tmp_path, capsys):
    path = _write(tmp_path, GRID)
    out = tmp_path / "cli"
    assert main(["sweep", str(path), "--out", str(out), "--set", "trials=1"]) == 0
    text = capsys.readouterr().out
    summary = [line for line in text.splitlines() if line.startswith("point ")]
    assert len(summary) == 4  # one line per point
    assert "point   3 modulator.all.delay=3 ms, rule.trace=tick: test_accuracy" in text
    assert f"results: {out / 'results.csv'} (4 rows; 4 point(s) finished" in text
    assert (out / "plots" / "test_accuracy_vs_delay_by_trace.png").is_file()
    assert {r["trial"] for r in load_results(out)} == {"0"}  # --set reached every point


def test_validate_checks_every_point(tmp_path, capsys):
    assert main(["validate", str(_write(tmp_path, GRID))]) == 0
    assert "sweep: 4 point(s), each valid" in capsys.readouterr().out
    bad = _write(tmp_path, "sweep:\n  grid:\n    rule.memory: [2, -1]\n", name="bad.yaml")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:12: sweep.grid.rule.memory[1]: rule.memory = -1 is not valid" in err


# ================================================================ heat map
HEAT = f"""name: tiny heat map
network: {REPO / "networks" / "perceptron.yaml"}
seed: 3
trials: 2
dataset: {{name: linear, params: {{samples: 20, test_samples: 50}}}}
timing: {{dt: 1 ms, sample: 5 ms}}
rule: {{name: hsic, gamma: 5, memory: 4, lr: {{eta: 0.05}}}}
phases:
  - {{name: train, epochs: 2, learn: [layers]}}
evaluate: {{every: 1}}
sweep:
  grid: {{rule.memory: [2, 6]}}
  plots:
    - {{kind: heatmap, x: rule.memory, y: epoch, normalise: max}}
"""


def _last_evaluations(run_dir: Path) -> dict[tuple[int, int], float]:
    """(epoch, trial) -> accuracy/test of the last evaluation after that epoch, read from
    the run's metrics.csv."""
    out = {}
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["metric"] == "accuracy/test" and row["epoch"] != "":
                out[(int(row["epoch"]), int(row["trial"]))] = float(row["value"])
    return out


def test_heatmap_over_epochs_writes_normalised_table_and_plot(tmp_path):
    path = tmp_path / "heat.yaml"
    path.write_text(HEAT, encoding="utf-8")
    res = run_sweep(path, out=tmp_path / "h", log=lambda _: None)
    assert res.finished == 2
    # epochs.csv: one row per point, evaluation epoch and trial, as each run logged it
    with open(res.directory / "epochs.csv", newline="", encoding="utf-8") as fh:
        epochs = list(csv.DictReader(fh))
    assert [(r["rule.memory"], r["epoch"], r["trial"]) for r in epochs] == [
        (n, e, t) for n in ("2", "6") for e in ("1", "2") for t in ("0", "1")]
    for r in epochs:
        logged = _last_evaluations(res.directory / r["run_dir"])
        assert float(r["test_accuracy"]) == logged[(int(r["epoch"]), int(r["trial"]))]
    # after the last epoch: the final evaluation, the value results.csv holds
    final = {(r["rule.memory"], r["trial"]): r["test_accuracy"]
             for r in load_results(res.directory)}
    assert all(r["test_accuracy"] == final[(r["rule.memory"], r["trial"])]
               for r in epochs if r["epoch"] == "2")
    # the heat map's table: N, epoch, trial, accuracy, accuracy / best cell mean
    png, table = res.plots
    assert png.name == "test_accuracy_heatmap_epoch_vs_memory.png"
    assert png.stat().st_size > 1000 and table == png.with_suffix(".csv")
    with open(table, newline="", encoding="utf-8") as fh:
        cells = list(csv.DictReader(fh))
    assert list(cells[0]) == ["rule.memory", "epoch", "trial", "test_accuracy",
                              "test_accuracy_normalised"]
    key = ("rule.memory", "epoch", "trial", "test_accuracy")
    assert [tuple(c[k] for k in key) for c in cells] == [tuple(r[k] for k in key)
                                                         for r in epochs]
    means: dict = {}
    for c in cells:
        means.setdefault((c["rule.memory"], c["epoch"]), []).append(float(c["test_accuracy"]))
    best = max(sum(v) / len(v) for v in means.values())
    normalised = [float(c["test_accuracy_normalised"]) for c in cells]
    assert normalised == pytest.approx([float(c["test_accuracy"]) / best for c in cells])
    assert len(set(normalised)) > 1


def test_zipped_keys_are_columns_and_one_of_them_a_heatmap_axis(tmp_path):
    path = tmp_path / "zip.yaml"
    path.write_text(HEAT.replace("  grid: {rule.memory: [2, 6]}\n",
                                 "  zip: {rule.memory: [2, 6], rule.lr.eta: [0.05, 0.01]}\n"),
                    encoding="utf-8")
    res = run_sweep(path, out=tmp_path / "z", log=lambda _: None)
    assert res.finished == 2
    rows = load_results(res.directory)
    assert list(rows[0])[:4] == ["point", "rule.memory", "rule.lr.eta", "trial"]
    assert [(r["rule.memory"], r["rule.lr.eta"]) for r in rows] == [
        ("2", "0.05"), ("2", "0.05"), ("6", "0.01"), ("6", "0.01")]
    with open(res.directory / "epochs.csv", newline="", encoding="utf-8") as fh:
        epochs = list(csv.DictReader(fh))
    assert [(r["rule.memory"], r["rule.lr.eta"], r["epoch"], r["trial"]) for r in epochs] == [
        (n, eta, e, t) for n, eta in (("2", "0.05"), ("6", "0.01")) for e in ("1", "2")
        for t in ("0", "1")]
    # one heat map: the rate goes with N, it makes no panels of its own
    png, table = res.plots
    assert png.name == "test_accuracy_heatmap_epoch_vs_memory.png"
    with open(table, newline="", encoding="utf-8") as fh:
        cells = list(csv.DictReader(fh))
    assert list(cells[0])[:3] == ["rule.memory", "epoch", "trial"] and len(cells) == 8


def test_a_bad_plot_spec_is_a_one_line_cli_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(HEAT.replace("evaluate: {every: 1}\n", ""), encoding="utf-8")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"eventsim: error: {path}:13: sweep.plots[0].y: the epoch axis needs "
                   "evaluations during training (hint: set evaluate: {every: N} (epochs))")
    assert not (tmp_path / "o").exists()


# ================================================================ parquet
def test_typed_columns_keep_numbers_numeric_and_mixed_values_as_csv_text():
    from eventsim.sweep import typed_columns

    rows = [{"point": 0, "modulator.all.delay": 0, "rule.trace": 0, "trial": 0,
             "status": "finished", "test_accuracy": 0.5, "wall_time_s": 1, "error": "",
             "run_dir": "points/a/run"},
            {"point": 1, "modulator.all.delay": 20, "rule.trace": "tick", "trial": 0,
             "status": "failed", "test_accuracy": None, "wall_time_s": 2.5, "error": "boom",
             "run_dir": "points/b/run"}]
    cols = typed_columns(rows)
    assert list(cols) == ["point", "modulator.all.delay", "rule.trace", "trial", "status",
                          "test_accuracy", "wall_time_s", "error", "run_dir"]
    assert cols["modulator.all.delay"] == ("int64", [0, 20])
    assert cols["rule.trace"] == ("string", ["0", "tick"])
    assert cols["test_accuracy"] == ("float64", [0.5, None])
    assert cols["wall_time_s"] == ("float64", [1.0, 2.5])


def test_cli_sweep_parquet_table_matches_the_csv(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    path = _write(tmp_path, GRID)
    out = tmp_path / "pq"
    assert main(["sweep", str(path), "--out", str(out), "--set", "trials=1", "--no-plots",
                 "--format", "parquet"]) == 0
    text = capsys.readouterr().out
    assert f"results: {out / 'results.parquet'} (the same table, Parquet)" in text
    table = pq.read_table(out / "results.parquet").to_pylist()
    rows = load_results(out)
    assert len(table) == len(rows) == 4
    assert [r["rule.trace"] for r in table] == ["0", "tick", "0", "tick"]
    for typed, text in zip(table, rows, strict=True):
        assert list(typed) == list(text)
        assert typed["point"] == int(text["point"]) and typed["seed"] == int(text["seed"])
        assert typed["test_accuracy"] == float(text["test_accuracy"])


def test_parquet_without_pyarrow_is_a_one_line_error_before_any_point(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)  # import fails
    out = tmp_path / "none"
    assert main(["sweep", str(_write(tmp_path, GRID)), "--out", str(out),
                 "--format", "parquet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'eventsim[parquet]'" in err
    assert not out.exists()


# ======================================================== memory capacity
def test_memory_capacity_scenarios_zip_n_with_the_authors_and_the_equal_step_rates():
    """memory_capacity_authors_rates.yaml: the authors' per-N rates (memory_sweep.jl,
    ηs = 1e-4, 1e-3, 1e-3, 5e-3, 5e-3, 5e-2) divided by 100; memory_capacity_equal_step.yaml:
    η / (N − 1) the same for every N; both take memory_capacity.yaml's one rate at N = 32."""
    from eventsim.config.scenario import load_scenario

    def settings(name):
        sc = load_scenario(REPO / "scenarios" / f"memory_capacity{name}.yaml")
        return [(p.overrides["rule.memory"], float(p.overrides.get("rule.lr.eta",
                                                                   sc.spec.rule.lr.eta)))
                for p in points(sc.spec.sweep)]

    n = [2, 4, 6, 10, 16, 32]
    assert settings("") == [(m, 5e-4) for m in n]
    authors = settings("_authors_rates")
    assert [m for m, _ in authors] == n
    assert [eta for _, eta in authors] == pytest.approx(
        [eta / 100 for eta in (1e-4, 1e-3, 1e-3, 5e-3, 5e-3, 5e-2)])
    equal = settings("_equal_step")
    assert [m for m, _ in equal] == n and equal[-1] == (32, 5e-4)
    assert [eta / (m - 1) for m, eta in equal] == pytest.approx([5e-4 / 31] * 6, rel=5e-3)


def test_exponent_without_a_dot_is_a_float_in_points_and_tables():
    """``1e-6`` is a float (YAML 1.2), so the points, their hashes and the tables' columns
    carry the number, as the resolved config does (YAML 1.1 read a string)."""
    sc = parse_scenario(BASE + "sweep:\n  zip: {rule.memory: [2, 4], rule.lr.eta: [1e-6, 5E-4]}\n")
    assert [p.overrides["rule.lr.eta"] for p in points(sc.spec.sweep)] == [1e-6, 5e-4]
    assert sc.spec.sweep.zip["rule.lr.eta"] == [1e-6, 5e-4]
