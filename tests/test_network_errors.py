"""Malformed network and scenario files: one line on stderr naming the file, the
line and the field, exit status 2, never a traceback (``eventsim validate``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eventsim.cli import main

REPO = Path(__file__).resolve().parents[1]
NETWORKS = sorted((REPO / "networks").glob("*.yaml"))

HEAD = """name: t
populations:
  x: {kind: input, size: 2}
"""

# (id, text, line, field or None, substrings the message must contain)
NETWORK_CASES = [
    ("unknown-kind", HEAD + """  h: {kind: layr, size: 2}
projections:
  - {from: x, to: h}
""", 4, "populations.h.kind", ["unknown kind 'layr'", "did you mean 'layer'?"]),
    ("unknown-projection-kind", HEAD + """  h: {kind: layer, size: 2}
projections:
  - {from: x, to: h, kind: feedfoward}
""", 6, "projections[0].kind", ["unknown kind 'feedfoward'", "did you mean 'feedforward'?"]),
    ("unknown-field-flow", HEAD + """  h: {kind: layer, size: 2, tua: 5 ms}
projections:
  - {from: x, to: h}
""", 4, "populations.h.tua", ["unknown field 'tua'", "did you mean 'tau'?"]),
    ("unknown-field-block", HEAD + """  h:
    kind: layer
    size: 2
    noize: 0.1
projections:
  - {from: x, to: h}
""", 7, "populations.h.noize", ["unknown field 'noize'", "did you mean 'noise'?"]),
    ("unknown-top-level-field", HEAD + """  h: {kind: layer, size: 2}
projection:
  - {from: x, to: h}
""", 5, "projection", ["unknown field 'projection'", "did you mean 'projections'?"]),
    ("missing-name", """populations:
  x: {kind: input, size: 2}
  h: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
""", 1, "name", ["required field 'name' is missing"]),
    ("missing-size", HEAD + """  h: {kind: layer, tau: 5 ms}
projections:
  - {from: x, to: h}
""", 4, "populations.h.size", ["required field 'size' is missing"]),
    ("missing-kind", HEAD + """  h: {size: 2}
projections:
  - {from: x, to: h}
""", 4, "populations.h.kind", ["required field 'kind' is missing"]),
    ("missing-to", HEAD + """  h: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
  - {from: x}
""", 7, "projections[1].to", ["required field 'to' is missing"]),
    ("duplicate-population", HEAD + """  h: {kind: layer, size: 2}
  h: {kind: layer, size: 3}
projections:
  - {from: x, to: h}
""", 5, "populations.h", ["duplicate key 'h'"]),
    ("duplicate-field", HEAD + """  h: {kind: layer, size: 2, size: 3}
projections:
  - {from: x, to: h}
""", 4, "populations.h.size", ["duplicate key 'size'"]),
    ("reserved-name", HEAD + """  labels: {kind: layer, size: 2}
projections:
  - {from: x, to: labels}
""", 4, "populations.labels", ["reserved name"]),
    ("edge-to-unknown", HEAD + """  h: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
  - {from: h, to: hh}
""", 7, "projections[1].to", ["unknown population 'hh'", "did you mean 'h'?"]),
    ("edge-from-unknown", HEAD + """  h: {kind: layer, size: 2}
projections:
  - {from: xx, to: h}
""", 6, "projections[0].from", ["unknown population 'xx'", "did you mean 'x'?"]),
    ("duplicate-projection", HEAD + """  h: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
  - {from: x, to: h, init: {std: 2}}
""", 7, "projections[1]", ["duplicate projection x -> h"]),
    ("self-projection", HEAD + """  h: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
  - {from: h, to: h}
""", 7, "projections[1]", ["projection from 'h' to itself"]),
    ("readout-size-mismatch", HEAD + """  h: {kind: layer, size: 2}
  m: {kind: reservoir, size: 10, readout: 3}
projections:
  - {from: x, to: h}
  - {from: m, to: h, kind: modulatory}
""", 8, "projections[1].to", ["size mismatch", "readout 3", "size 2"]),
    ("feedforward-cycle", HEAD + """  a: {kind: layer, size: 2}
  b: {kind: layer, size: 2}
projections:
  - {from: a, to: b}
  - {from: b, to: a}
""", 8, "projections[1]", ["cycle in the feed-forward path: a -> b -> a"]),
    ("feedforward-into-reservoir", HEAD + """  h: {kind: layer, size: 2}
  m: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h}
  - {from: x, to: m}
  - {from: m, to: h, kind: modulatory}
""", 8, "projections[1].to", ["must target a layer", "'m' is of kind reservoir"]),
    ("modulatory-to-input", HEAD + """  h: {kind: layer, size: 2}
  m: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h}
  - {from: m, to: x, kind: modulatory}
""", 8, "projections[1].to", ["a modulatory edge must target a layer", "'x' is of kind input"]),
    ("modulatory-from-layer", HEAD + """  a: {kind: layer, size: 2}
  h: {kind: layer, size: 2}
projections:
  - {from: x, to: a}
  - {from: x, to: h}
  - {from: a, to: h, kind: modulatory}
""", 9, "projections[2].from", ["must come from a reservoir", "'a' is of kind layer"]),
    ("reservoir-modulates-nothing", HEAD + """  h: {kind: layer, size: 2}
  m: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h}
""", 5, "populations.m", ["reservoir 'm' modulates 0 layers"]),
    ("bad-unit", HEAD + """  h: {kind: layer, size: 2, tau: 5 parsecs}
projections:
  - {from: x, to: h}
""", 4, "populations.h.tau", ["unknown time unit 'parsecs'"]),
    ("bad-unit-on-edge", HEAD + """  h: {kind: layer, size: 2}
  m: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h}
  - {from: m, to: h, kind: modulatory,
     delay: 5 fortnights}
""", 9, "projections[1].delay", ["unknown time unit 'fortnights'"]),
    ("negative-number", HEAD + """  h: {kind: layer, size: 2, noise: -0.1}
projections:
  - {from: x, to: h}
""", 4, "populations.h.noise", ["-0.1 is negative"]),
    ("negative-duration", HEAD + """  h: {kind: layer, size: 2}
  m: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h}
  - {from: m, to: h, kind: modulatory, delay: -5 ms}
""", 8, "projections[1].delay", ["negative"]),
    ("non-finite-inf", HEAD + """  h: {kind: layer, size: 2, noise: .inf}
projections:
  - {from: x, to: h}
""", 4, "populations.h.noise", ["inf is not finite"]),
    ("non-finite-nan", HEAD + """  h: {kind: layer, size: 2}
  m: {kind: reservoir, size: 10, chaos: .nan}
projections:
  - {from: x, to: h}
  - {from: m, to: h, kind: modulatory}
""", 5, "populations.m.chaos", ["nan is not finite"]),
    ("probability-above-one", HEAD + """  h: {kind: layer, size: 2}
  m: {kind: reservoir, size: 10}
projections:
  - {from: x, to: h}
  - {from: m, to: h, kind: modulatory, loss: 1.5}
""", 8, "projections[1].loss", ["1.5 is not a probability"]),
    ("density-above-one", HEAD + """  h: {kind: layer, size: 2}
  m: {kind: reservoir, size: 10, density: 2}
projections:
  - {from: x, to: h}
  - {from: m, to: h, kind: modulatory}
""", 5, "populations.m.density", ["not a probability"]),
    ("zero-size", """name: t
populations:
  x: {kind: input, size: 0}
  h: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
""", 3, "populations.x.size", ["expected a positive integer, got 0"]),
    ("string-for-integer", HEAD + """  h: {kind: layer, size: two}
projections:
  - {from: x, to: h}
""", 4, "populations.h.size", ["expected a positive integer, got 'two'"]),
    ("string-for-number", HEAD + """  h: {kind: layer, size: 2, noise: lots}
projections:
  - {from: x, to: h}
""", 4, "populations.h.noise", ["expected a number, got 'lots'"]),
    ("list-for-duration", HEAD + """  h: {kind: layer, size: 2, tau: [5]}
projections:
  - {from: x, to: h}
""", 4, "populations.h.tau", ["expected a duration"]),
    ("population-not-a-mapping", HEAD + """  h: 5
projections:
  - {from: x, to: h}
""", 4, "populations.h", ["expected a mapping of fields, got int"]),
    ("layer-without-input", HEAD + """  h: {kind: layer, size: 2}
  g: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
""", 5, "populations.g", ["layer 'g' has 0 feed-forward inputs, needs exactly 1"]),
    ("layer-with-two-inputs", HEAD + """  h: {kind: layer, size: 2}
  g: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
  - {from: x, to: g}
  - {from: h, to: g}
""", 5, "populations.g", ["layer 'g' has 2 feed-forward inputs"]),
    ("tap-into-layer", HEAD + """  h: {kind: layer, size: 2}
  g: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
  - {from: h, to: g}
  - {from: x, to: g, kind: tap}
""", 9, "projections[2].to", ["a tap must target a reservoir", "'g' is of kind layer"]),
    ("yaml-unclosed-brace", HEAD + """  h: {kind: layer, size: 2
  g: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
""", 5, None, ["YAML syntax error"]),
    ("yaml-bad-indent", HEAD + """   h: {kind: layer, size: 2}
projections:
  - {from: x, to: h}
""", 4, None, ["YAML syntax error"]),
    ("yaml-tab", "name: t\npopulations:\n\tx: {kind: input, size: 2}\n", 3, None,
     ["YAML syntax error", "'\\t'"]),
    ("empty-file", "", 1, None, ["the file is empty"]),
    ("comment-only-file", "# nothing here\n", 1, None, ["the file is empty"]),
    ("top-level-list", "- a\n- b\n", 1, None, ["expected a mapping of fields, got list"]),
]


def _one_error_line(capsys, args) -> str:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def _prefix(path, line, field) -> str:
    where = f"eventsim: error: {path}:{line}: "
    return where + (f"{field}: " if field else "")


@pytest.mark.parametrize(("text", "line", "field", "needles"),
                         [c[1:] for c in NETWORK_CASES], ids=[c[0] for c in NETWORK_CASES])
def test_malformed_network(tmp_path, capsys, text, line, field, needles):
    path = tmp_path / "net.yaml"
    path.write_text(text, encoding="utf-8")
    err = _one_error_line(capsys, ["validate", str(path)])
    assert err.startswith(_prefix(path, line, field)), err
    for needle in needles:
        assert needle in err, err


def test_at_least_fifteen_network_cases():
    assert len(NETWORK_CASES) >= 15


@pytest.mark.parametrize("case", ["unknown-kind", "feedforward-cycle", "yaml-unclosed-brace"])
def test_malformed_network_in_a_real_process(tmp_path, case):
    _, text, line, field, needles = next(c for c in NETWORK_CASES if c[0] == case)
    path = tmp_path / "net.yaml"
    path.write_text(text, encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "eventsim.cli", "validate", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(_prefix(path, line, field))


def test_missing_network_file(tmp_path, capsys):
    err = _one_error_line(capsys, ["validate", str(tmp_path / "nope.yaml")])
    assert "file not found" in err and "nope.yaml" in err


@pytest.mark.parametrize("path", NETWORKS, ids=[p.name for p in NETWORKS])
def test_shipped_networks_validate(path, capsys):
    assert main(["validate", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    out = captured.out
    assert out.startswith("network '")
    assert f"({path})" in out.splitlines()[0]
    assert "populations (" in out and "projections (" in out
    assert " input " in out and " layer " in out


def test_shipped_networks_exist():
    assert {p.name for p in NETWORKS} >= {"tanh_mlp.yaml", "perceptron.yaml"}


# ================================================================= scenarios
TANH = REPO / "networks" / "tanh_mlp.yaml"
SCENARIO = f"""name: s
network: {TANH}
dataset: {{name: tanh_boundary, params: {{samples: 10, test_samples: 10}}}}
timing: {{dt: 1 ms, sample: 5 ms}}
rule:
  name: hsic
  gamma: 2
  memory: 4
phases:
  - {{name: train, epochs: 1, learn: [layers]}}
"""

SCENARIO_CASES = [
    ("unknown-rule", ("name: hsic", "name: hsci"), 6, "rule.name",
     ["invalid value 'hsci'", "did you mean 'hsic'?"]),
    ("bad-timing-unit", ("sample: 5 ms", "sample: 5 mss"), 4, "timing.sample",
     ["unknown time unit 'mss'"]),
    ("sample-not-whole-ticks", ("sample: 5 ms", "sample: 2.5 ms"), 4, "timing.sample",
     ["2.5 ticks", "not a whole number"]),
    ("sample-not-multiple-of-dt", ("dt: 1 ms", "dt: 2 ms"), 4, "timing.sample",
     ["2.5 ticks of dt = 2 ms"]),
    ("sample-zero", ("sample: 5 ms", "sample: 0 ms"), 4, "timing.sample",
     ["shorter than one tick"]),
    ("dt-zero", ("dt: 1 ms", "dt: 0 ms"), 4, "timing.dt", ["dt must be positive"]),
    ("duration-not-whole-ticks", ("epochs: 1", "duration: 12.5 ms"), 10, "phases[0].duration",
     ["12.5 ticks"]),
    ("gamma-unknown-layer", ("gamma: 2", "gamma: {h1: 2, out: 3, h9: 1}"), 7, "rule.gamma.h9",
     ["unknown layer 'h9'"]),
    ("gamma-missing-layer", ("gamma: 2", "gamma: {h1: 2}"), 7, "rule.gamma",
     ["no gamma for layer(s) out"]),
    ("missing-network-file", (str(TANH), "no/such/net.yaml"), 2, "network",
     ["network file not found"]),
    ("phase-epochs-and-duration", ("epochs: 1", "epochs: 1, duration: 1 s"), 10, "phases[0]",
     ["give exactly one of 'epochs' and 'duration'"]),
    ("learn-typo", ("learn: [layers]", "learn: [layer]"), 10, "phases[0].learn[0]",
     ["did you mean 'layers'?"]),
    ("unknown-scenario-field", ("memory: 4", "memory: 4\n  gama: 3"), 9, "rule.gama",
     ["did you mean 'gamma'?"]),
    ("negative-memory", ("memory: 4", "memory: -4"), 8, "rule.memory",
     ["expected a positive integer"]),
]


@pytest.mark.parametrize(("edit", "line", "field", "needles"),
                         [c[1:] for c in SCENARIO_CASES], ids=[c[0] for c in SCENARIO_CASES])
def test_malformed_scenario(tmp_path, capsys, edit, line, field, needles):
    old, new = edit
    assert old in SCENARIO
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace(old, new), encoding="utf-8")
    err = _one_error_line(capsys, ["validate", str(path)])
    assert err.startswith(_prefix(path, line, field)), err
    for needle in needles:
        assert needle in err, err


def test_channel_override_not_whole_ticks_points_at_the_scenario(tmp_path, capsys):
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO + "modulator:\n  channels:\n    out: {delay: 1.5 ms}\n",
                    encoding="utf-8")
    err = _one_error_line(capsys, ["validate", str(path)])
    assert err.startswith(_prefix(path, 13, "modulator.channels.out.delay")), err
    assert "1.5 ticks" in err


def test_network_delay_not_whole_ticks_points_at_the_network(tmp_path, capsys):
    net = tmp_path / "net.yaml"
    net.write_text(TANH.read_text(encoding="utf-8").replace(
        "{from: mem_out, to: out, kind: modulatory}",
        "{from: mem_out, to: out, kind: modulatory, jitter: 0.5 ms}"), encoding="utf-8")
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace(str(TANH), "net.yaml"), encoding="utf-8")
    err = _one_error_line(capsys, ["validate", str(path)])
    line = 1 + net.read_text(encoding="utf-8").splitlines().index(
        "  - {from: mem_out, to: out, kind: modulatory, jitter: 0.5 ms}")
    assert err.startswith(_prefix(net, line, "projections[3].jitter")), err


def test_inline_network_error_is_located_in_the_scenario(tmp_path, capsys):
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace(f"network: {TANH}\n", """network:
  name: inline
  populations:
    x: {kind: inptu, size: 2}
    h: {kind: layer, size: 1}
  projections:
    - {from: x, to: h}
"""), encoding="utf-8")
    err = _one_error_line(capsys, ["validate", str(path)])
    assert err.startswith(_prefix(path, 5, "network.populations.x.kind")), err
    assert "did you mean 'input'?" in err


@pytest.mark.parametrize(
    ("edit", "line", "field", "needles"),
    [(("tanh_boundary, params: {samples: 10, test_samples: 10}",
       "linear, params: {samples: 10, test_samples: 10, dim: 3}"), 3, "dataset.name",
      ["size mismatch", "3 inputs", "size 2"]),
     (("tanh_boundary", "tanh_boundry"), 3, "dataset", ["unknown dataset 'tanh_boundry'"])],
    ids=["dataset-size-mismatch", "unknown-dataset"])
def test_dataset_errors_at_run_time(tmp_path, capsys, edit, line, field, needles):
    """The dataset is only built by ``run``; its errors are still one located line."""
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.replace(*edit), encoding="utf-8")
    err = _one_error_line(capsys, ["run", str(path), "--out", str(tmp_path / "run"),
                                   "--quiet", "--no-plots"])
    assert err.startswith(_prefix(path, line, field)), err
    for needle in needles:
        assert needle in err, err


def test_valid_scenario_validates(tmp_path, capsys):
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"scenario 's' ({path}): rule hsic, 1 trial(s), dataset tanh_boundary")
    assert "network 'tanh-mlp'" in out
