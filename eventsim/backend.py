"""Array backend (NumPy, NumPy with compiled kernels, or CuPy), default dtype and seeded
random streams.

All population state comes from ``Backend.xp``. The ``numba`` backend keeps
NumPy arrays and runs the hottest per-tick steps as compiled loops
(:mod:`eventsim.compiled`); its results agree with ``numpy`` to rounding.

Random numbers are always drawn on the host with NumPy's PCG64, one independent
stream per (trial, name), in blocks that are copied to the device once per block.
This makes the random numbers identical on every backend, independent of how many
trials are batched together, and independent of which other populations exist.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BackendError

BACKENDS = ("numpy", "numba", "cupy")
DTYPES = ("float32", "float64")


def _cupy_or_error():
    try:
        import cupy  # noqa: PLC0415
    except ImportError as exc:
        raise BackendError(
            "backend 'cupy' was requested but CuPy is not installed "
            "(hint: pip install 'eventsim[gpu]', or use --backend numpy)"
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver errors have no common base class
        raise BackendError(
            f"backend 'cupy' was requested but no usable GPU was found ({exc}) "
            "(hint: use --backend numpy)"
        ) from exc
    if count < 1:
        raise BackendError(
            "backend 'cupy' was requested but no GPU is visible (hint: use --backend numpy)"
        )
    return cupy


def _numba_or_error():
    try:
        import numba  # noqa: PLC0415
    except ImportError as exc:
        raise BackendError(
            "backend 'numba' was requested but numba is not installed "
            "(hint: pip install 'eventsim[fast]', or use --backend numpy)"
        ) from exc
    return numba


@dataclass(frozen=True)
class Backend:
    """An array module plus the floating dtype used for all state."""

    name: str
    xp: Any
    dtype: np.dtype

    @property
    def kernels(self):
        """:mod:`eventsim.compiled` (the per-tick compiled loops) on ``numba``, else None."""
        if self.name != "numba":
            return None
        from . import compiled  # noqa: PLC0415 - imports numba, an optional extra

        return compiled

    def asarray(self, a, dtype=None):
        """Copy/convert ``a`` onto this backend's device with the state dtype."""
        return self.xp.asarray(a, dtype=self.dtype if dtype is None else dtype)

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=self.dtype if dtype is None else dtype)

    def to_host(self, a) -> np.ndarray:
        """Return a NumPy array (a device-to-host copy on CuPy)."""
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def device(self) -> str:
        """Human-readable description of the compute device."""
        if self.name == "cupy":
            props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
            name = props["name"]
            return name.decode() if isinstance(name, bytes) else str(name)
        return "cpu"


def get_backend(name: str | None = None, dtype: str | None = None) -> Backend:
    """Resolve a backend by name; ``None`` reads ``EVENTSIM_BACKEND`` (default numpy)."""
    name = (name or os.environ.get("EVENTSIM_BACKEND") or "numpy").lower()
    dtype = dtype or "float32"
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (hint: one of {', '.join(BACKENDS)})")
    if dtype not in DTYPES:
        raise BackendError(f"unknown dtype {dtype!r} (hint: one of {', '.join(DTYPES)})")
    if name == "numba":
        _numba_or_error()
    xp = _cupy_or_error() if name == "cupy" else np
    return Backend(name=name, xp=xp, dtype=np.dtype(dtype))


def available_backends() -> dict[str, str]:
    """Map each backend name to 'available' or the reason it is not."""
    out = {"numpy": f"available (numpy {np.__version__})"}
    try:
        out["numba"] = f"available (numba {_numba_or_error().__version__})"
    except BackendError as exc:
        out["numba"] = f"unavailable: {exc}"
    try:
        cp = _cupy_or_error()
        out["cupy"] = f"available (cupy {cp.__version__})"
    except BackendError as exc:
        out["cupy"] = f"unavailable: {exc}"
    return out


def stream_key(name: str) -> int:
    """A stable 32-bit key for a stream name (independent of Python's hash seed)."""
    return zlib.crc32(name.encode("utf-8"))


class RandomStreams:
    """One PCG64 generator per trial for a named stream.

    Trial ``k`` with seed ``s_k`` uses ``SeedSequence(s_k, spawn_key=(crc32(name),))``,
    so a trial's numbers depend only on its own seed and the stream's name.
    """

    def __init__(self, seeds, name: str) -> None:
        self.name = name
        self.seeds = [int(s) for s in seeds]
        key = stream_key(name)
        self.generators = [
            np.random.Generator(np.random.PCG64(np.random.SeedSequence(s, spawn_key=(key,))))
            for s in self.seeds
        ]

    @property
    def trials(self) -> int:
        return len(self.generators)

    def normal(self, shape, std=1.0, dtype=np.float64) -> np.ndarray:
        """Host array of shape (trials, *shape) with N(0, std²) entries."""
        return np.stack([g.normal(0.0, std, size=shape) for g in self.generators]).astype(dtype)

    def uniform(self, shape, low=-1.0, high=1.0, dtype=np.float64) -> np.ndarray:
        """Host array of shape (trials, *shape) with U(low, high) entries."""
        return np.stack([g.uniform(low, high, size=shape) for g in self.generators]).astype(dtype)

    def random(self, shape) -> np.ndarray:
        """Host float64 array of shape (trials, *shape), U[0, 1)."""
        return np.stack([g.random(size=shape) for g in self.generators])

    def permutation(self, n: int) -> np.ndarray:
        """Host int array (trials, n): one independent permutation per trial."""
        return np.stack([g.permutation(n) for g in self.generators])

    def get_state(self) -> list[dict]:
        return [g.bit_generator.state for g in self.generators]

    def set_state(self, states: list[dict]) -> None:
        for g, s in zip(self.generators, states, strict=True):
            g.bit_generator.state = s


class UniformNoise:
    """Per-tick U(−a, a) noise of shape (trials, *shape), drawn on the host in blocks.

    One block of ``block`` ticks is drawn per trial and copied to the device at
    once, so the step itself makes no host-device copy. The sequence a trial
    sees does not depend on ``block`` boundaries of other trials.
    """

    def __init__(self, streams: RandomStreams, shape, amplitude: float, backend: Backend,
                 block: int = 64) -> None:
        self.streams = streams
        self.shape = tuple(shape)
        self.amplitude = float(amplitude)
        self.backend = backend
        self.block = int(block)
        self._buf = None
        self._pos = self.block

    def _refill(self) -> None:
        """Draw the next block (each trial's stream continues where it stopped)."""
        a = self.amplitude
        host = self.streams.uniform((self.block, *self.shape), -a, a, dtype=self.backend.dtype)
        self._buf = self.backend.asarray(np.ascontiguousarray(np.swapaxes(host, 0, 1)))
        self._pos = 0

    def next(self):
        """The noise for one tick, shape (trials, *shape), on the backend device."""
        if self._pos >= self.block:
            self._refill()
        out = self._buf[self._pos]
        self._pos += 1
        return out

    def take(self, count: int):
        """The noise of the next ``count`` ticks, (count, trials, *shape): the arrays
        ``count`` calls of :meth:`next` return, stacked (a view when inside one block)."""
        parts = []
        while count > 0:
            if self._pos >= self.block:
                self._refill()
            n = min(count, self.block - self._pos)
            parts.append(self._buf[self._pos:self._pos + n])
            self._pos += n
            count -= n
        return parts[0] if len(parts) == 1 else self.backend.xp.concatenate(parts)

    def get_state(self) -> dict:
        """The current block, the position in it and the generators' states."""
        buf = None if self._buf is None else self.backend.to_host(self._buf)
        return {"buf": buf, "pos": self._pos, "rng": self.streams.get_state()}

    def set_state(self, state: dict) -> None:
        self._buf = None if state["buf"] is None else self.backend.asarray(state["buf"])
        self._pos = int(state["pos"])
        if "rng" in state:
            self.streams.set_state(state["rng"])


def array_module(a):
    """NumPy or CuPy, whichever owns array ``a``."""
    mod = type(a).__module__
    if mod.startswith("cupy"):
        import cupy  # noqa: PLC0415

        return cupy
    return np
