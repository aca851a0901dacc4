"""Backend selection, dtypes and the seeded random streams (eventsim.backend)."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from eventsim.backend import (
    Backend,
    RandomStreams,
    UniformNoise,
    available_backends,
    get_backend,
    stream_key,
)
from eventsim.cli import main
from eventsim.config.network import parse_network
from eventsim.engine.simulator import Simulator
from eventsim.errors import BackendError, EventsimError


def _gpu_available() -> bool:
    try:
        import cupy  # noqa: PLC0415

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


HAS_GPU = _gpu_available()
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason="CuPy and a GPU are present here")


def _generator(seed: int, name: str) -> np.random.Generator:
    """The documented derivation of trial ``seed``'s stream ``name``."""
    ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode("utf-8")),))
    return np.random.Generator(np.random.PCG64(ss))


# ----------------------------------------------------------------- selection
def test_default_is_numpy_float32(monkeypatch):
    monkeypatch.delenv("EVENTSIM_BACKEND", raising=False)
    be = get_backend()
    assert be.name == "numpy"
    assert be.xp is np
    assert be.dtype == np.float32
    assert be.zeros((2, 3)).dtype == np.float32
    assert be.asarray([1.0, 2.0]).dtype == np.float32
    assert be.device() == "cpu"


def test_float64_on_request(monkeypatch):
    monkeypatch.delenv("EVENTSIM_BACKEND", raising=False)
    be = get_backend(dtype="float64")
    assert be.dtype == np.float64
    assert be.zeros(3).dtype == np.float64
    x = be.asarray(np.arange(3, dtype=np.float32))
    assert x.dtype == np.float64
    host = be.to_host(x)
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, [0.0, 1.0, 2.0])


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv("EVENTSIM_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    monkeypatch.setenv("EVENTSIM_BACKEND", "NumPy")  # case-insensitive
    assert get_backend().name == "numpy"
    monkeypatch.setenv("EVENTSIM_BACKEND", "tpu")
    with pytest.raises(BackendError, match="'tpu'"):
        get_backend()
    # an explicit name wins over the environment
    assert get_backend("numpy").name == "numpy"


@no_gpu_only
def test_env_var_cupy_is_respected(monkeypatch):
    monkeypatch.setenv("EVENTSIM_BACKEND", "cupy")
    with pytest.raises(BackendError, match="cupy"):
        get_backend()
    assert get_backend("numpy").name == "numpy"


def test_unknown_backend_and_dtype():
    with pytest.raises(BackendError, match="unknown backend 'jax'"):
        get_backend("jax")
    with pytest.raises(BackendError, match="unknown dtype 'float16'"):
        get_backend("numpy", "float16")
    assert issubclass(BackendError, EventsimError)


@no_gpu_only
def test_cupy_without_gpu_is_a_one_line_backend_error():
    with pytest.raises(BackendError) as info:
        get_backend("cupy")
    message = str(info.value)
    assert "\n" not in message
    assert "cupy" in message and "hint" in message
    assert available_backends()["cupy"].startswith("unavailable: ")
    assert available_backends()["numpy"].startswith("available")


@no_gpu_only
def test_cli_info_cupy_exits_2_with_one_line(capsys):
    assert main(["info", "--backend", "cupy"]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("eventsim: error: backend 'cupy'")


@no_gpu_only
def test_cli_info_cupy_subprocess_no_traceback():
    env = {k: v for k, v in os.environ.items() if k != "EVENTSIM_BACKEND"}
    r = subprocess.run([sys.executable, "-m", "eventsim.cli", "info", "--backend", "cupy"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert "cupy" in r.stderr
    # the environment variable is honoured by the CLI too
    env["EVENTSIM_BACKEND"] = "cupy"
    r = subprocess.run([sys.executable, "-m", "eventsim.cli", "info"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_cli_info_numpy(capsys, monkeypatch):
    monkeypatch.delenv("EVENTSIM_BACKEND", raising=False)
    assert main(["info", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert "selected backend numpy, device cpu, dtype float64" in out


@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a GPU")
def test_cupy_backend_when_available():
    be = get_backend("cupy")
    x = be.asarray(np.arange(4.0))
    assert be.to_host(x).dtype == np.float32
    np.testing.assert_array_equal(be.to_host(x), np.arange(4.0))


# ------------------------------------------------------------ random streams
def test_stream_key_is_crc32():
    assert stream_key("h1/noise") == zlib.crc32(b"h1/noise")
    assert stream_key("a") != stream_key("b")


def test_stream_follows_the_documented_derivation():
    seeds = [11, 12, 13]
    streams = RandomStreams(seeds, "layer/noise")
    got = streams.normal((4, 5), std=2.0)
    assert got.shape == (3, 4, 5)
    for k, s in enumerate(seeds):
        np.testing.assert_array_equal(got[k], _generator(s, "layer/noise").normal(0.0, 2.0, (4, 5)))


def test_trial_stream_depends_only_on_its_seed_and_name():
    batched = RandomStreams([7, 3, 100], "x")
    draws = [batched.uniform((6,)), batched.random((2, 3)), batched.permutation(9),
             batched.normal((5,))]
    for k, s in enumerate([7, 3, 100]):
        single = RandomStreams([s], "x")
        for d, ref in zip(draws, [single.uniform((6,)), single.random((2, 3)),
                                  single.permutation(9), single.normal((5,))], strict=True):
            np.testing.assert_array_equal(d[k], ref[0])
    # another seed or another name is another stream
    assert not np.array_equal(RandomStreams([7], "x").random(8), RandomStreams([8], "x").random(8))
    assert not np.array_equal(RandomStreams([7], "x").random(8), RandomStreams([7], "y").random(8))


def test_other_streams_do_not_disturb_a_stream():
    a1 = RandomStreams([5], "a")
    first = a1.normal((10,))
    second = a1.normal((10,))
    a2 = RandomStreams([5], "a")
    b = RandomStreams([5], "b")
    b.normal((1000,))  # heavy use of another stream in between
    np.testing.assert_array_equal(a2.normal((10,)), first)
    b.uniform((77,))
    np.testing.assert_array_equal(a2.normal((10,)), second)


def test_stream_state_roundtrip():
    s = RandomStreams([1, 2], "state")
    s.random(5)
    state = s.get_state()
    ahead = s.random((3, 4))
    s.set_state(state)
    np.testing.assert_array_equal(s.random((3, 4)), ahead)


NET_ONE = """
name: one
populations:
  x: {kind: input, size: 3}
  h: {kind: layer, size: 4, noise: 0.05}
projections:
  - {from: x, to: h}
"""

NET_TWO = """
name: two
populations:
  x: {kind: input, size: 3}
  a: {kind: layer, size: 6, noise: 0.3}
  h: {kind: layer, size: 4, noise: 0.05}
  g: {kind: layer, size: 2, noise: 0.1}
projections:
  - {from: x, to: a}
  - {from: x, to: h}
  - {from: h, to: g}
"""


def test_adding_populations_does_not_change_a_population_stream():
    """h's initial weights and noise do not depend on which other populations exist."""
    be = get_backend("numpy", "float64")
    sims = [Simulator(parse_network(text), seeds=[4, 9], backend=be) for text in (NET_ONE,
                                                                                   NET_TWO)]
    h1, h2 = (s.populations["h"] for s in sims)
    np.testing.assert_array_equal(h1.W, h2.W)
    draws1 = [h1.noise.next().copy() for _ in range(70)]
    for _ in range(30):
        sims[1].populations["a"].noise.next()
    draws2 = [h2.noise.next().copy() for _ in range(70)]
    np.testing.assert_array_equal(np.array(draws1), np.array(draws2))
    # and the other layers' streams really are different streams
    assert not np.array_equal(sims[1].populations["a"].W[:, :4], h2.W)


# ------------------------------------------------------------- uniform noise
def _noise(seeds, shape=(3,), amplitude=0.5, block=7, dtype="float32"):
    be = get_backend("numpy", dtype)
    return UniformNoise(RandomStreams(seeds, "noise/test"), shape, amplitude, be, block=block)


def test_uniform_noise_batched_equals_separate_single_trials():
    seeds = [20, 21, 22, 23]
    ticks = 30  # crosses several blocks of 7
    batched = np.array([n.copy() for n in _iter(_noise(seeds), ticks)])
    assert batched.shape == (ticks, 4, 3)
    for k, s in enumerate(seeds):
        single = np.array([n.copy() for n in _iter(_noise([s]), ticks)])
        np.testing.assert_array_equal(batched[:, k], single[:, 0])


def _iter(noise, ticks):
    for _ in range(ticks):
        yield noise.next()


def test_uniform_noise_matches_an_explicit_stream_and_ignores_block_size():
    seeds = [3, 4]
    a = 0.25
    for block in (1, 5, 64):
        got = np.array([n.copy() for n in _iter(_noise(seeds, (2, 3), a, block, "float64"), 40)])
        for k, s in enumerate(seeds):
            g = _generator(s, "noise/test")
            ref = g.uniform(-a, a, size=(40, 2, 3))
            np.testing.assert_array_equal(got[:, k], ref)


def test_taking_several_ticks_of_noise_equals_as_many_single_ticks():
    """``take`` (slices of a sample's ticks) inside one block, across one and across two."""
    ticked = np.array([n.copy() for n in _iter(_noise([5, 6], block=4), 19)])
    n = _noise([5, 6], block=4)
    parts = [n.take(3), n.next()[None], n.take(2), n.take(9), n.take(4)]
    assert [p.shape[0] for p in parts] == [3, 1, 2, 9, 4]
    np.testing.assert_array_equal(np.concatenate(parts), ticked)


def test_uniform_noise_range_dtype_and_moments():
    a = 0.05
    n = _noise([1, 2, 3], (50,), a, 64)
    draws = np.array([x.copy() for x in _iter(n, 200)])  # 30000 values
    assert draws.dtype == np.float32
    assert draws.min() >= -a and draws.max() <= a
    m = draws.size
    var = a * a / 3.0
    assert abs(draws.mean()) < 5 * np.sqrt(var / m)
    # variance of the sample variance of U(-a, a): (mu4 - var^2)/m with mu4 = a^4/5
    assert abs(draws.var() - var) < 5 * np.sqrt((a**4 / 5 - var**2) / m)


def test_uniform_noise_state_roundtrip():
    n = _noise([8, 9], block=4)
    for _ in range(6):
        n.next()
    state = n.get_state()
    ahead = np.array([x.copy() for x in _iter(n, 9)])
    n2 = _noise([8, 9], block=4)
    n2.set_state(state)
    np.testing.assert_array_equal(np.array([x.copy() for x in _iter(n2, 9)]), ahead)


def test_backend_is_frozen_dataclass():
    be = get_backend("numpy")
    assert isinstance(be, Backend)
    with pytest.raises(AttributeError):
        be.name = "cupy"


def test_a_run_on_numpy_needs_no_numba(tmp_path):
    """numba is an optional extra: with it unimportable, a scenario still runs on numpy
    (the engine's compiled paths import it only through the numba backend)."""
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text("""name: tiny
network:
  name: tiny
  populations:
    x: {kind: input, size: 2}
    out: {kind: layer, size: 1}
    m: {kind: reservoir, size: 8}
  projections:
    - {from: x, to: out}
    - {from: m, to: out, kind: modulatory}
trials: 1
dataset: {name: linear, params: {samples: 10, test_samples: 20}}
timing: {dt: 1 ms, sample: 5 ms}
rule: {name: hsic, gamma: 2, memory: 3, lr: {eta: 0.01}}
modulator: {source: analytic}
phases: [{name: train, epochs: 1, learn: [layers]}]
""")
    code = ("import sys; sys.modules['numba'] = None\n"
            "from eventsim.cli import main\n"
            f"sys.exit(main(['run', {str(scenario)!r}, '--out', {str(tmp_path / 'run')!r},"
            " '--quiet']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "numba" not in r.stderr
    assert (tmp_path / "run" / "metrics.csv").exists()
