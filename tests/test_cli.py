"""The command line: help, a tiny run into a run directory, --quiet, user errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eventsim import __version__
from eventsim.cli import main

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["info", "validate", "run", "plot", "show"]


def _scenario(tmp_path, *, trials=1, extra="") -> Path:
    """A tiny scenario: 1 trial, 2 epochs of 8 samples of 5 ticks, analytic ξ."""
    network = REPO / "networks" / "tanh_mlp.yaml"
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""name: tiny cli run
network: {network}
seed: 2
trials: {trials}
dataset: {{name: tanh_boundary, params: {{samples: 8, test_samples: 12}}}}
timing: {{dt: 1 ms, sample: 5 ms}}
rule: {{name: hsic, gamma: 2, memory: 4, lr: {{eta: 0.05}}}}
{extra}phases:
  - {{name: train, epochs: 2, learn: [layers]}}
""", encoding="utf-8")
    return path


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "eventsim.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


# ===================================================================== help
def test_help_in_a_real_process():
    r = _cli("--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: eventsim")
    for sub in SUBCOMMANDS:
        assert sub in r.stdout
    assert r.stderr == ""


def test_console_script_is_installed():
    exe = shutil.which("eventsim") or str(Path(sys.executable).parent / "eventsim")
    if not Path(exe).exists():
        pytest.skip("the eventsim console script is not on PATH")
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert r.stdout.strip() == f"eventsim {__version__}"


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_subcommand_help(sub, capsys):
    with pytest.raises(SystemExit) as info:
        main([sub, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: eventsim {sub}")


def test_run_help_lists_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for option in ("--backend", "--dtype", "--trials", "--seed", "--set", "--out", "--quiet",
                   "--no-plots"):
        assert option in out


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: eventsim" in capsys.readouterr().err


# ====================================================================== run
def test_run_tiny_scenario_writes_a_run_directory(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["run", str(_scenario(tmp_path)), "--out", str(out_dir), "--no-plots"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"run directory: {out_dir}"
    assert lines[1].startswith("test accuracy (held-out): mean ")
    assert "over 1 trial(s)" in lines[1]
    acc = float(lines[1].split("mean ")[1].split()[0])
    assert 0.0 <= acc <= 1.0
    assert "Traceback" not in captured.err
    assert captured.err.strip(), "progress lines are expected without --quiet"
    assert "[train]" in captured.err

    for name in ("config.resolved.yaml", "meta.json", "metrics.csv"):
        assert (out_dir / name).is_file(), name
    config = yaml.safe_load((out_dir / "config.resolved.yaml").read_text(encoding="utf-8"))
    assert config["name"] == "tiny cli run"
    assert config["trials"] == 1
    assert config["rule"]["gamma"] == 2
    assert set(config["network"]["populations"]) >= {"x", "h1", "out"}
    meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta["status"] == "finished"
    assert meta["seeds"] == [2]
    assert meta["backend"] == "numpy"
    assert meta["ticks"] == 2 * 8 * 5 + (8 + 12) * 5  # two epochs, then one evaluation
    with (out_dir / "metrics.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["phase", "epoch", "tick", "trial", "metric", "value"]
    tests = [r for r in rows if r["metric"] == "accuracy/test"]
    assert len(tests) == 1
    assert float(tests[0]["value"]) == pytest.approx(acc, abs=5e-5)
    epochs = {r["epoch"] for r in rows if r["metric"] == "objective_dl/out"}
    assert epochs == {"1", "2"}
    assert not (out_dir / "plots").exists()


def test_run_quiet_prints_no_progress(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code = main(["run", str(_scenario(tmp_path)), "--out", str(out_dir), "--no-plots",
                 "--quiet", "--trials", "2", "--seed", "7"])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "over 2 trial(s)" in captured.out
    meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta["seeds"] == [7, 8]


def test_run_is_reproducible_through_the_cli(tmp_path, capsys):
    scenario = _scenario(tmp_path)
    for name in ("a", "b"):
        assert main(["run", str(scenario), "--out", str(tmp_path / name), "--no-plots",
                     "--quiet"]) == 0
    capsys.readouterr()
    a = (tmp_path / "a" / "metrics.csv").read_text(encoding="utf-8")
    b = (tmp_path / "b" / "metrics.csv").read_text(encoding="utf-8")
    assert a == b


def test_run_set_override_is_validated(tmp_path, capsys):
    code = main(["run", str(_scenario(tmp_path)), "--out", str(tmp_path / "run"), "--quiet",
                 "--no-plots", "--set", "rule.gamma=-1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "rule.gamma" in err and "negative" in err


def test_run_user_error_exits_2_without_traceback(tmp_path):
    scenario = _scenario(tmp_path, extra="modulator: {source: reservoir, bogus: 1}\n")
    r = _cli("run", str(scenario), "--out", str(tmp_path / "run"), "--quiet", "--no-plots")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"eventsim: error: {scenario}:8: modulator.bogus: ")


def test_run_missing_scenario_exits_2(tmp_path):
    r = _cli("run", str(tmp_path / "missing.yaml"), "--quiet")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert "file not found" in r.stderr


def test_bad_set_syntax_exits_2(tmp_path, capsys):
    code = main(["run", str(_scenario(tmp_path)), "--set", "rule.gamma", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("eventsim: error: --set 'rule.gamma': expected KEY=VALUE")


def test_diverged_run_exits_1_with_one_line(tmp_path):
    scenario = _scenario(tmp_path)
    scenario.write_text(scenario.read_text(encoding="utf-8").replace("eta: 0.05", "eta: 1.0e+39"),
                        encoding="utf-8")
    out_dir = tmp_path / "run"
    r = _cli("run", str(scenario), "--out", str(out_dir), "--quiet", "--no-plots")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    # NumPy's RuntimeWarnings (overflow in cast) may precede the message; the
    # message itself is one line, the last one.
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("eventsim:")]
    assert len(lines) == 1, r.stderr
    assert r.stderr.splitlines()[-1] == lines[0]
    assert lines[0].startswith("eventsim: diverged: h1.")
    assert "in phase 'train'" in lines[0]
    meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta["status"] == "diverged"


def test_validate_prints_summary(capsys):
    path = REPO / "networks" / "tanh_mlp.yaml"
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"network 'tanh-mlp' ({path})")


def test_plain_progress_reports_share_done_and_eta_during_long_stretches():
    """Off a terminal, a long stretch without metrics still prints a line at most every
    ``every_s`` seconds of wall time, with the share done and the ETA."""
    import io

    from eventsim.progress import Progress

    now = [100.0]
    out = io.StringIO()
    progress = Progress(1000, 1.0, stream=out, every_s=60.0, clock=lambda: now[0])
    progress.set_phase("train")
    progress.advance(100)  # no time has passed: no line
    assert out.getvalue() == ""
    now[0] += 30.0
    progress.advance(200)  # 30 s: still none
    assert out.getvalue() == ""
    now[0] += 30.0
    progress.advance(300)  # 60 s: 300 ticks at 5 ticks/s, 700 left = 140 s
    line = out.getvalue().strip()
    assert line == "[train] t=300 ms (5 ticks/s) 30.0 % of 1,000 ticks, ETA 2.3 min"
    now[0] += 10.0
    progress.advance(400)  # the next line waits another 60 s
    assert out.getvalue().count("\n") == 1
    quiet = Progress(1000, 1.0, stream=out, quiet=True, every_s=0.0, clock=lambda: now[0])
    quiet.advance(500)
    assert out.getvalue().count("\n") == 1


def test_plain_progress_in_epochs_shows_position_and_eta_in_epochs():
    import io

    from eventsim.progress import Progress

    now = [0.0]
    out = io.StringIO()
    progress = Progress(10, None, stream=out, every_s=60.0, unit="epoch", clock=lambda: now[0])
    progress.set_phase("train")
    now[0] += 120.0
    progress.advance(2)  # 2 epochs in 120 s: 8 left = 8 min
    assert out.getvalue().strip() == \
        "[train] epoch 2/10 (60.0 s/epoch) 20.0 % of 10 epochs, ETA 8.0 min"


def test_set_values_are_read_as_scenario_files_are(tmp_path, capsys):
    """``--set`` reads ``1e-3`` as a float (as in a scenario file); a value that is not
    YAML is one line naming the option, not a traceback."""
    from eventsim.cli import _parse_set

    assert _parse_set(["rule.lr.eta=1e-3", "rule.memory=4", "rule.xi=paper"]) == {
        "rule.lr.eta": 1e-3, "rule.memory": 4, "rule.xi": "paper"}
    code = main(["run", str(_scenario(tmp_path)), "--set", "phases=[{name: a", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("eventsim: error: --set 'phases=[{name: a': the value is not valid YAML")


# ===================================================================== show
def test_show_prints_status_and_every_evaluation_as_mean_and_per_trial(tmp_path, capsys):
    out_dir = tmp_path / "run"
    scenario = _scenario(tmp_path, trials=2, extra="evaluate: {every: 1}\n")
    assert main(["run", str(scenario), "--out", str(out_dir), "--no-plots", "--quiet"]) == 0
    capsys.readouterr()
    with (out_dir / "metrics.csv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["metric"] == "accuracy/test"]
    by_epoch = {}
    for r in rows:
        by_epoch.setdefault((r["phase"], r["epoch"]), []).append(float(r["value"]))
    assert list(by_epoch) == [("train", "1"), ("final", "2")]

    assert main(["show", str(out_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{out_dir}: tiny cli run, 2 trial(s) (seeds 2, 3), numpy float32"
    assert lines[1] == "status: finished"
    assert lines[2].startswith("run time: ") and lines[2].endswith(" for 280 ticks")
    start = lines.index("accuracy/test: mean over trials [per trial]")
    for line, ((phase, epoch), values) in zip(lines[start + 1:start + 3], by_epoch.items(),
                                             strict=True):
        assert line.split() == [phase, "epoch", epoch, f"{sum(values) / 2:.4f}",
                                f"[{values[0]:.4f},", f"{values[1]:.4f}]"]

    assert main(["show", str(out_dir), "--metric", "objective_dl/out"]) == 0
    shown = capsys.readouterr().out
    assert "objective_dl/out: mean over trials" in shown and "accuracy/" not in shown


def test_show_says_how_to_resume_a_run_that_did_not_finish(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["run", str(_scenario(tmp_path)), "--out", str(out_dir), "--no-plots",
                 "--quiet"]) == 0
    capsys.readouterr()
    meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    # as a run's meta.json reads before its backend is known
    meta.update(status="running", checkpoint={"tick": 40, "phase": "train", "epoch": 1},
                backend=None, dtype=None)
    (out_dir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    assert main(["show", str(out_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{out_dir}: tiny cli run, 1 trial(s) (seeds 2)"
    assert lines[1] == (
        "status: running, or stopped without a clean exit; last checkpoint after epoch 1 of "
        f"phase 'train' (tick 40): eventsim run --resume {out_dir}")


def test_show_on_a_directory_that_is_not_a_run_exits_2_with_one_line(tmp_path):
    r = _cli("show", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "meta.json: no such file" in r.stderr
