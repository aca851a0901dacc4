"""Run directories: atomic files, resolved config, metadata, metrics and traces.

A run directory holds everything needed to inspect or re-plot a run::

    runs/<scenario-slug>/<YYYYmmdd-HHMMSS>-<hash8>/
        config.resolved.yaml   the fully resolved scenario (network inlined)
        meta.json              versions, git commit, backend, seeds, timing
        metrics.csv            tidy rows: phase, epoch, tick, trial, metric, value
        traces.h5              probed signals and modulatory channel records
        weights.npz            the learned weights at the end (<layer>.W, <reservoir>.W_o)
        checkpoint.npz         the latest checkpoint (see :mod:`eventsim.checkpoint`)
        plots/                 PNGs written by :mod:`eventsim.plots`

``hash8`` is the first 8 hex digits of the SHA-256 of the canonical (sorted-key
JSON) resolved config, so runs of the same configuration share a suffix.

Every file is written atomically: the bytes go to a hidden temporary file in
the same directory (``.<name>.<random>.tmp``), which is flushed, fsynced and
then renamed over the target with :func:`os.replace`. A reader, or a run killed
at any instant, therefore sees either the previous complete file or the new
complete one, never a torn one. A killed writer may leave its hidden ``.tmp``
file behind; it is never mistaken for a result.

Traces are stored as HDF5 through h5py rather than NetCDF/xarray. HDF5 is
self-describing (names, shapes, dtypes and attributes such as units and dt
travel with the data), supports chunked, compressed datasets and partial reads
(one signal, or a slice of one, without loading the file), and h5py is a single
dependency over NumPy. NetCDF-4 is HDF5 underneath, but reading it comfortably
means netCDF4 or xarray plus pandas, a much heavier stack for little gain here.

Layout of ``traces.h5`` (attribute ``format = "eventsim-traces/2"``)::

    /signals/<pop>.<var>   data, shape (time, trial, ...); attrs units, dt, dt_units
    /ticks/<pop>.<var>     int64 (time,): the tick of each sample
    /time/<pop>.<var>      float64 (time,): the same in ms (a dimension scale)
    /channels/<name>/      the channel record of :mod:`eventsim.records`: dataset
                           sent_runs (R, 3) (send ticks as runs first, step, count);
                           dataset deliver_tick (M, trial) (-1: dropped) only for a
                           channel with jitter or loss; attributes trials, delay
                           (ticks from send to delivery when there is no
                           deliver_tick) and sample_runs (the sample starts as runs)

A long run keeps its channel records small this way: a channel that sends every
tick stores one run per stretch of training instead of one tick per message and
trial. :func:`load_channels` returns the records;
:func:`eventsim.records.expand_channel` gives their plain ticks. Files of format
``eventsim-traces/1`` (plain datasets sent_tick (M,), deliver_tick (M,) or
(M, trial), dropped, and attribute sample_ticks) still load, as records with
deliver_tick filled in and delay None.

The file uses the HDF5 1.8 object-header format so that attributes larger than
64 KiB (many sample runs, should sample starts ever be irregular) are allowed.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import re
import secrets
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np
import yaml

from . import __version__
from .errors import EventsimError
from .records import RUN_COLUMNS, message_count, runs_of

CONFIG_FILE = "config.resolved.yaml"
META_FILE = "meta.json"
METRICS_FILE = "metrics.csv"
TRACES_FILE = "traces.h5"
WEIGHTS_FILE = "weights.npz"
LOCK_FILE = ".lock"
PLOTS_DIR = "plots"

METRIC_COLUMNS = ("phase", "epoch", "tick", "trial", "metric", "value")
#: Keys the caller of :meth:`RunDir.write_meta` supplies; absent ones are stored as null.
META_FIELDS = (
    "backend", "device", "dtype", "seeds", "start_time", "end_time", "wall_time_s", "ticks",
)
#: Keys :func:`environment_facts` always provides (a value may be null).
ENVIRONMENT_FIELDS = ("eventsim_version", "git_commit", "git_dirty", "python", "platform",
                      "packages")
#: Distribution name of each package whose version goes into meta.json.
PACKAGE_DISTRIBUTIONS = {
    "numpy": "numpy", "simpy": "simpy", "networkx": "networkx", "pyyaml": "PyYAML",
    "pydantic": "pydantic", "matplotlib": "matplotlib", "h5py": "h5py", "tqdm": "tqdm",
}
TRACES_FORMAT = "eventsim-traces/2"
#: The format before channel records were compact; :func:`load_channels` reads it.
TRACES_FORMAT_PLAIN = "eventsim-traces/1"


# ---------------------------------------------------------------------------
# Atomic writes


@contextlib.contextmanager
def _atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success move it over ``path``.

    The caller writes and closes the temporary file; this then fsyncs it,
    renames it onto ``path`` and fsyncs the directory. On an exception the
    temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            # 0o666 through the umask: the same permissions a plain open() would give.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO]:
    """Open ``path`` for writing so that it appears only complete, or not at all.

    ``mode`` is ``"w"``/``"wt"`` (text) or ``"wb"`` (binary). The file object
    writes to a temporary file in the same directory; leaving the ``with``
    block normally flushes, fsyncs and renames it over ``path``. An exception
    removes the temporary file and leaves ``path`` as it was.
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open supports modes 'w', 'wt' and 'wb', not {mode!r}")
    with _atomic_target(path) as tmp:
        if "b" in mode:
            handle = open(tmp, "wb")
        else:
            handle = open(tmp, "w", encoding=encoding, newline=newline)
        with handle:
            yield handle


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically; return the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


# ---------------------------------------------------------------------------
# Environment facts


def csv_columns(rows: Iterable[Mapping[str, Any]], last: Sequence[str] = ()) -> list[str]:
    """The keys of ``rows`` in order of first appearance, those in ``last`` moved to the end."""
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    return [c for c in columns if c not in last] + [c for c in last if c in columns]


def csv_cell(value):
    """A CSV cell: floats as ``repr`` (round-trips exactly), everything else as it is."""
    return repr(value) if isinstance(value, float) else value


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
              last: Sequence[str] = ()) -> Path:
    """Write tidy ``rows`` (dicts) atomically as CSV: columns from :func:`csv_columns`,
    a missing or ``None`` value as an empty cell."""
    columns = csv_columns(rows, last)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else csv_cell(row[c]) for c in columns])
    return atomic_write(path, buffer.getvalue())


def _package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cupy_version() -> str | None:
    if importlib.util.find_spec("cupy") is None:
        return None
    try:
        import cupy  # noqa: PLC0415
    except Exception:  # a broken CUDA install raises more than ImportError
        return None
    return str(cupy.__version__)


def _git(source_root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(source_root), *args],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def environment_facts() -> dict[str, Any]:
    """Versions and provenance of the software running this process.

    Returns the eventsim version, the git commit of the source tree (and
    whether it has uncommitted changes) when eventsim is imported from a git
    checkout, else null; the Python version, the platform, and the versions of
    the scientific dependencies (null when not installed; cupy only when
    importable).
    """
    source_root = Path(__file__).resolve().parent.parent
    commit = dirty = None
    if (source_root / ".git").exists():
        commit = _git(source_root, "rev-parse", "HEAD") or None
        if commit is not None:
            status = _git(source_root, "status", "--porcelain", "--untracked-files=no")
            dirty = None if status is None else bool(status)
    packages = {name: _package_version(dist) for name, dist in PACKAGE_DISTRIBUTIONS.items()}
    packages["cupy"] = _cupy_version()
    return {
        "eventsim_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
    }


# ---------------------------------------------------------------------------
# Helpers


def _plain(value: Any) -> Any:
    """Convert NumPy scalars/arrays, tuples and paths into YAML/JSON-safe Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def config_hash(resolved_config: Mapping) -> str:
    """First 8 hex digits of the SHA-256 of the canonical JSON of ``resolved_config``."""
    canonical = json.dumps(_plain(resolved_config), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:8]


def added_keys(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """Dotted names of the keys of ``new`` (at any depth) that ``old`` lacks."""
    added = []
    for key, value in new.items():
        name = f"{prefix}{key}"
        if key not in old:
            added.append(name)
        elif isinstance(value, Mapping) and isinstance(old[key], Mapping):
            added += added_keys(old[key], value, f"{name}.")
    return added


def slugify(name: str) -> str:
    """Lower-case ``name`` with every run of non-alphanumerics turned into one ``-``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "run"


def _run_path(run_dir: str | os.PathLike, filename: str) -> Path:
    path = Path(run_dir) / filename
    if not path.is_file():
        raise EventsimError(
            f"{path}: no such file (hint: is {Path(run_dir)} a run directory, and has its "
            "run written this file yet?)"
        )
    return path


# ---------------------------------------------------------------------------
# The run directory


class RunDir:
    """One run's output directory. Build it with :meth:`create` or :meth:`open`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._metrics: list[dict[str, Any]] = []

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def plots_dir(self) -> Path:
        """The ``plots/`` folder (not created here)."""
        return self.path / PLOTS_DIR

    @classmethod
    def create(cls, root: str | os.PathLike = "runs", *, scenario_name: str,
               resolved_config: Mapping, out: str | os.PathLike | None = None) -> RunDir:
        """Make a new run directory and write ``config.resolved.yaml`` into it.

        Without ``out`` the directory is
        ``<root>/<slug(scenario_name)>/<YYYYmmdd-HHMMSS>-<hash8>`` (local time;
        ``-2``, ``-3``, ... is appended if that name is already taken). With
        ``out`` exactly that directory is used; it may exist only if empty, so
        that no file of an earlier run is mixed into this one.
        """
        if out is not None:
            path = Path(out)
            if path.exists():
                if not path.is_dir():
                    raise EventsimError(f"{path}: exists and is not a directory")
                if any(path.iterdir()):
                    raise EventsimError(
                        f"{path}: output directory is not empty "
                        "(hint: choose another --out or remove it)"
                    )
            path.mkdir(parents=True, exist_ok=True)
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            base = Path(root) / slugify(scenario_name) / f"{stamp}-{config_hash(resolved_config)}"
            base.parent.mkdir(parents=True, exist_ok=True)
            path, n = base, 1
            while True:
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    n += 1
                    path = base.with_name(f"{base.name}-{n}")
        run = cls(path)
        run.write_config(resolved_config)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """Open an existing run directory; metrics already saved are kept and extended."""
        path = Path(path)
        if not path.is_dir():
            raise EventsimError(f"{path}: no such run directory")
        if not (path / CONFIG_FILE).is_file() and not (path / META_FILE).is_file():
            raise EventsimError(
                f"{path}: not a run directory (no {CONFIG_FILE} or {META_FILE} in it)"
            )
        run = cls(path)
        if (path / METRICS_FILE).is_file():
            run._metrics = load_metrics(path)
        return run

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on ``.lock`` in the directory while a run writes there.

        A second process (say ``eventsim run --resume`` of a run that is still
        going) gets an :class:`EventsimError` at once. The lock is an ``flock``,
        so the system releases it when the holder dies, even by SIGKILL; where
        ``fcntl`` does not exist (not POSIX) nothing is locked.
        """
        try:
            import fcntl  # noqa: PLC0415
        except ImportError:
            yield
            return
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EventsimError(
                    f"{self.path}: another process is running in this run directory "
                    "(hint: wait for it to end, or stop it with Ctrl-C)") from None
            yield
        finally:
            os.close(fd)

    # -- writers ------------------------------------------------------------

    def write_config(self, resolved: Mapping) -> Path:
        """Write ``config.resolved.yaml`` (``yaml.safe_dump``, key order kept)."""
        text = yaml.safe_dump(_plain(resolved), sort_keys=False, allow_unicode=True,
                              default_flow_style=False)
        return atomic_write(self.path / CONFIG_FILE, text)

    def write_meta(self, **fields: Any) -> Path:
        """Write ``meta.json``: earlier contents, then ``fields``, then environment facts.

        May be called more than once (say at start and end of a run); later
        fields override earlier ones. Every key of :data:`META_FIELDS` is
        present in the file, null until supplied. :mod:`eventsim.plots` also
        reads the optional fields ``phases`` (a list of ``{name, start_tick,
        end_tick}``) and ``dt_ms``.

        The environment facts (:func:`environment_facts`) are those of the
        process that started the run, taken at its first write: commits made
        to the checkout while a long run goes on do not replace them. A
        resumed run keeps them too; :func:`eventsim.api.resume` records its
        own commit in the ``resumed`` entry.
        """
        meta: dict[str, Any] = dict.fromkeys(META_FIELDS)
        if (self.path / META_FILE).is_file():
            meta.update(load_meta(self.path))
        meta.update(_plain(fields))
        if meta.get("platform") is None:  # never null once the facts are in
            meta.update(environment_facts())
        text = json.dumps(meta, indent=2, allow_nan=True, default=str) + "\n"
        return atomic_write(self.path / META_FILE, text)

    def add_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Buffer metric rows (keys exactly :data:`METRIC_COLUMNS`); see :meth:`flush_metrics`."""
        for row in rows:
            if set(row) != set(METRIC_COLUMNS):
                raise ValueError(
                    f"a metric row needs exactly the keys {METRIC_COLUMNS}, got {sorted(row)}"
                )
            epoch = row["epoch"]
            self._metrics.append({
                "phase": str(row["phase"]),
                "epoch": None if epoch is None else int(epoch),
                "tick": int(row["tick"]),
                "trial": int(row["trial"]),
                "metric": str(row["metric"]),
                "value": float(row["value"]),
            })

    def set_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the buffered rows by ``rows`` (checked as in :meth:`add_metrics`)."""
        self._metrics = []
        self.add_metrics(rows)

    def flush_metrics(self) -> Path:
        """Rewrite ``metrics.csv`` atomically with every row added so far."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(METRIC_COLUMNS)
        for r in self._metrics:
            writer.writerow([r["phase"], "" if r["epoch"] is None else r["epoch"], r["tick"],
                             r["trial"], r["metric"], repr(r["value"])])
        return atomic_write(self.path / METRICS_FILE, buffer.getvalue())

    def write_weights(self, weights: Mapping[str, np.ndarray]) -> Path:
        """Write ``weights.npz`` atomically: one host array per ``'<population>.<name>'``
        (the learned weights at the end of the run, shape (trial, ...))."""
        with atomic_open(self.path / WEIGHTS_FILE, "wb") as handle:
            np.savez(handle, **{name: np.asarray(w) for name, w in weights.items()})
        return self.path / WEIGHTS_FILE

    def write_traces(self, traces: Mapping[str, Mapping[str, Any]],
                     channels: Mapping[str, Mapping[str, Any]], dt_ms: float) -> Path:
        """Write ``traces.h5`` atomically (layout in the module docstring).

        ``traces`` maps ``'<population>.<variable>'`` to ``dict(data=array of
        shape (time, trial, ...), ticks=int array (time,), units=str)``;
        ``channels`` maps a channel name to its compact record
        (:mod:`eventsim.records`: ``sent_runs``, ``trials``, ``delay``,
        ``deliver_tick`` and ``sample_runs``). Arrays must be on the host (NumPy).
        """
        with _atomic_target(self.path / TRACES_FILE) as tmp:
            with h5py.File(tmp, "w", libver=("v108", "latest")) as f:
                f.attrs["format"] = TRACES_FORMAT
                f.attrs["dt_ms"] = float(dt_ms)
                signals, ticks_group, time_group = (
                    f.create_group("signals"), f.create_group("ticks"), f.create_group("time"))
                for name, entry in traces.items():
                    _write_signal(signals, ticks_group, time_group, name, entry, float(dt_ms))
                chans = f.create_group("channels")
                for name, entry in channels.items():
                    _write_channel(chans, name, entry)
        return self.path / TRACES_FILE


def _dataset_options(array: np.ndarray) -> dict[str, Any]:
    """Chunked gzip compression for arrays large enough to benefit."""
    if array.size >= 4096:
        return {"chunks": True, "compression": "gzip", "compression_opts": 4, "shuffle": True}
    return {}


def _check_name(kind: str, name: str) -> None:
    if not name or "/" in name:
        raise ValueError(f"{kind} name {name!r} must be non-empty and may not contain '/'")


def _write_signal(signals, ticks_group, time_group, name: str, entry: Mapping[str, Any],
                  dt_ms: float) -> None:
    _check_name("trace", name)
    data = np.asarray(entry["data"])
    ticks = np.asarray(entry["ticks"], dtype=np.int64)
    if data.ndim < 2 or ticks.ndim != 1 or data.shape[0] != ticks.shape[0]:
        raise ValueError(
            f"trace {name!r}: data must be (time, trial, ...) and ticks (time,); "
            f"got data {data.shape} and ticks {ticks.shape}"
        )
    ds = signals.create_dataset(name, data=data, **_dataset_options(data))
    ds.attrs["units"] = str(entry.get("units", ""))
    ds.attrs["dt"] = dt_ms
    ds.attrs["dt_units"] = "ms"
    tick_ds = ticks_group.create_dataset(name, data=ticks)
    time_ds = time_group.create_dataset(name, data=ticks.astype(np.float64) * dt_ms)
    time_ds.attrs["units"] = "ms"
    time_ds.make_scale("time")
    ds.dims[0].attach_scale(time_ds)
    ds.dims[0].label = "time"
    ds.dims[1].label = "trial"
    tick_ds.attrs["units"] = "tick"


def _write_channel(group, name: str, entry: Mapping[str, Any]) -> None:
    _check_name("channel", name)
    runs = np.asarray(entry["sent_runs"], dtype=np.int64)
    trials, delay, deliver = int(entry["trials"]), entry["delay"], entry["deliver_tick"]
    if runs.ndim != 2 or runs.shape[1] != len(RUN_COLUMNS) or (runs[:, 2] < 1).any():
        raise ValueError(f"channel {name!r}: sent_runs must be (R, 3) rows (first, step, "
                         f"count) with count >= 1, got shape {runs.shape}")
    if deliver is None and delay is None:
        raise ValueError(f"channel {name!r}: a record without deliver_tick needs its delay")
    if deliver is not None:
        deliver = np.asarray(deliver, dtype=np.int64)
        if deliver.shape != (message_count(entry), trials):
            raise ValueError(f"channel {name!r}: deliver_tick must be (M, trial) = "
                             f"({message_count(entry)}, {trials}), got {deliver.shape}")
    g = group.create_group(name)
    ds = g.create_dataset("sent_runs", data=runs)
    ds.attrs["columns"] = ", ".join(RUN_COLUMNS)
    ds.attrs["units"] = "tick"
    if deliver is not None:
        g.create_dataset("deliver_tick", data=deliver, **_dataset_options(deliver))
        g["deliver_tick"].attrs["units"] = "tick"
    g.attrs["trials"] = trials
    if delay is not None:
        g.attrs["delay"] = int(delay)
    g.attrs["sample_runs"] = np.asarray(entry["sample_runs"], dtype=np.int64).reshape(-1, 3)


# ---------------------------------------------------------------------------
# Loaders


def load_config(run_dir: str | os.PathLike) -> dict:
    """The resolved configuration of a run."""
    with open(_run_path(run_dir, CONFIG_FILE), encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def load_meta(run_dir: str | os.PathLike) -> dict:
    """The contents of ``meta.json``."""
    with open(_run_path(run_dir, META_FILE), encoding="utf-8") as fh:
        return json.load(fh)


def load_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Metric rows as dicts with the types :meth:`RunDir.add_metrics` stores."""
    rows = []
    with open(_run_path(run_dir, METRICS_FILE), encoding="utf-8", newline="") as fh:
        for raw in csv.DictReader(fh):
            rows.append({
                "phase": raw["phase"],
                "epoch": None if raw["epoch"] == "" else int(raw["epoch"]),
                "tick": int(raw["tick"]),
                "trial": int(raw["trial"]),
                "metric": raw["metric"],
                "value": float(raw["value"]),
            })
    return rows


def metrics_frame(run_dir: str | os.PathLike):
    """The metrics as a pandas DataFrame (needs pandas, which eventsim does not require)."""
    try:
        import pandas as pd  # noqa: PLC0415
    except ImportError as exc:
        raise EventsimError(
            "metrics_frame needs pandas, which is not installed "
            "(hint: pip install pandas, or use load_metrics for a list of dicts)"
        ) from exc
    frame = pd.DataFrame(load_metrics(run_dir), columns=list(METRIC_COLUMNS))
    frame["epoch"] = frame["epoch"].astype("Int64")
    return frame


def load_weights(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The final weights saved in ``weights.npz``."""
    with np.load(_run_path(run_dir, WEIGHTS_FILE), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def trace_names(run_dir: str | os.PathLike) -> list[str]:
    """Names of the probed signals in ``traces.h5`` (no data is read)."""
    with h5py.File(_run_path(run_dir, TRACES_FILE), "r") as f:
        return list(f["signals"])


def load_traces(run_dir: str | os.PathLike,
                names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Probed signals: ``name -> dict(data, ticks, time_ms, units, dt_ms)``.

    ``names`` limits the read to those signals (the others are not loaded).
    """
    out = {}
    with h5py.File(_run_path(run_dir, TRACES_FILE), "r") as f:
        wanted = list(f["signals"]) if names is None else list(names)
        for name in wanted:
            if name not in f["signals"]:
                raise EventsimError(f"{run_dir}: no trace named {name!r} in {TRACES_FILE}")
            ds = f["signals"][name]
            out[name] = {
                "data": ds[()],
                "ticks": f["ticks"][name][()],
                "time_ms": f["time"][name][()],
                "units": str(ds.attrs["units"]),
                "dt_ms": float(ds.attrs["dt"]),
            }
    return out


def load_channels(run_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Channel records: ``name -> dict(sent_runs, trials, delay, deliver_tick, sample_runs)``
    (:mod:`eventsim.records`; :func:`~eventsim.records.expand_channel` gives the ticks)."""
    out = {}
    with h5py.File(_run_path(run_dir, TRACES_FILE), "r") as f:
        plain = f.attrs["format"] == TRACES_FORMAT_PLAIN
        for name, g in f["channels"].items():
            out[name] = _plain_channel(g) if plain else {
                "sent_runs": g["sent_runs"][()],
                "trials": int(g.attrs["trials"]),
                "delay": int(g.attrs["delay"]) if "delay" in g.attrs else None,
                "deliver_tick": g["deliver_tick"][()] if "deliver_tick" in g else None,
                "sample_runs": np.asarray(g.attrs["sample_runs"], dtype=np.int64).reshape(-1, 3),
            }
    return out


def _plain_channel(g) -> dict[str, Any]:
    """The record of a channel group written in format ``eventsim-traces/1``."""
    deliver = g["deliver_tick"][()]
    deliver = deliver[:, None] if deliver.ndim == 1 else deliver
    return {"sent_runs": runs_of(g["sent_tick"][()]), "trials": deliver.shape[1], "delay": None,
            "deliver_tick": deliver, "sample_runs": runs_of(g.attrs["sample_ticks"])}


def traces_dt_ms(run_dir: str | os.PathLike) -> float | None:
    """The tick length recorded in ``traces.h5``, or None when there is no such file."""
    path = Path(run_dir) / TRACES_FILE
    if not path.is_file():
        return None
    with h5py.File(path, "r") as f:
        return float(f.attrs["dt_ms"])
