"""The one HDF5 feature store: layout, atomic writes, lock, fingerprint, verification, reading.

Layout of a store (one file per encoder configuration; the ragged levels of
:mod:`mger.core.ragged_h5`, named by its :data:`~mger.core.ragged_h5.LEVELS`)::

    /utt_ids                 (N,)      str      utterance ids, in manifest order
    /<level>/data            (R, D)    float16  all rows of all utterances (R, L, D for a layer list)
    /<level>/offsets         (N+1,)    int64    rows of utterance i are data[offsets[i]:offsets[i+1]]
    /<level>/word            (R,)      int32    (text ``token`` level only) word index, -1 = special token
    attrs: fingerprint (JSON), fingerprint_sha256, model, revision, weights_sha256, layer,
           frame_stride, pooling, segments_sha256, mger_version, created, levels,
           level_sha256 (JSON: sha256 of each level's datasets and of utt_ids, see :func:`level_sha256`)

:func:`verify_store` (``mger cache verify``) checks the levels present against ``levels``, each
level against its sha256, offsets, NaN/inf rows (named by utterance) and duplicate ids; it reads
and hashes every byte (about 300 MB/s on 2 busy CPU cores).  Checksums rather than HDF5's
fletcher32 filter: that filter needs chunked datasets, which would stop levels being
memory-mapped.

Reading with plain h5py::

    import h5py
    with h5py.File("data/features/speech.h5") as f:
        ids = f["utt_ids"].asstr()[()]
        off = f["word/offsets"][()]
        first_utterance_words = f["word/data"][off[0]:off[1]]   # (n_words, 768) float16

One ragged dataset per level plus offsets reads about 2x faster than one dataset per
utterance; no compression (gzip costs ~10x write time for ~14% space).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TextIO

import h5py
import numpy as np
import torch

from mger.core.ragged_h5 import (
    STR,
    RaggedFormatError,
    atomic_h5,
    check_level,
    check_offsets,
    offsets_from_counts,
    offsets_problem,
    write_ragged,
)
from mger.features.pooling import range_indices


class CacheError(RuntimeError):
    """A store that cannot be used: corrupt, locked, or built from something else."""


def fingerprint_sha256(fingerprint: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def fingerprint_diff(old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """Human-readable differences, e.g. ``layer: 12 → 6``."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class StoreLock:
    """``flock`` on ``<path>.lock``, released by the OS even on SIGKILL.

    Exclusive for a run that changes the store or its parts folder (checks the fingerprint,
    clears parts of other settings, merges); shared for ``--shard`` runs, which only add parts
    of the settings in ``<path>.parts/fingerprint.json``: any number of them at once, never
    together with an exclusive holder.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = Path(f"{path}.lock")
        self._fh: TextIO | None = None
        self._wrote_pid = False

    def acquire(self, shared: bool = False) -> bool:
        """Take the lock without waiting; False if another run holds it (in a conflicting mode)."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.lock_path, "a+")
        try:
            fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        if not shared:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
        self._fh, self._wrote_pid = fh, not shared
        return True

    def release(self) -> None:
        """Unlock; an exclusive holder first empties the file, so a finished run leaves the same
        (empty) bytes whatever its pid: DVC, which tracks the store's folder, sees no change."""
        if self._fh is not None:
            if self._wrote_pid:
                self._fh.seek(0)
                self._fh.truncate()
                self._fh.flush()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def busy(self) -> CacheError:
        """The error for a store another run holds."""
        holder = self.lock_path.read_text().strip() if self.lock_path.exists() else ""
        return CacheError(f"{self.path} is being written by {holder or 'another process'}; wait for it to finish")


@contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """One writer at a time: :class:`StoreLock` held exclusively; raises :class:`CacheError`
    naming the holder's pid if another run holds it."""
    lock = StoreLock(path)
    if not lock.acquire():
        raise lock.busy()
    try:
        yield
    finally:
        lock.release()


def _set_attrs(f: h5py.File, attrs: Mapping[str, object]) -> None:
    """Store attributes; anything but str/int/float as JSON."""
    for key, value in attrs.items():
        f.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)


_BLOCK = 65536  # rows read (and hashed, checked) at a time


def _digest(
    h: "hashlib._Hash",
    name: str,
    array: np.ndarray | h5py.Dataset,
    on_block: Callable[[int, np.ndarray], None] | None = None,
) -> None:
    """Feed one dataset to ``h`` (its name, dtype, shape, then its bytes, ``_BLOCK`` rows at a
    time: the same digest from an array in memory and from the dataset written from it)."""
    h.update(f"{name}:{np.dtype(array.dtype).str}:{tuple(array.shape)}".encode())
    for s in range(0, array.shape[0], _BLOCK):
        block = np.ascontiguousarray(array[s : s + _BLOCK])
        if on_block is not None:
            on_block(s, block)
        h.update(memoryview(block).cast("B"))


def level_sha256(arrays: Mapping[str, np.ndarray | h5py.Dataset]) -> str:
    """The checksum of one level: sha256 over its datasets (offsets, data, word), by name."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        _digest(h, name, arrays[name])
    return h.hexdigest()


def ids_sha256(utt_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(utt_ids).encode("utf-8")).hexdigest()


def _write_levels(f: h5py.File, utt_ids: Sequence[str], levels: Iterable[tuple[str, Mapping[str, np.ndarray]]]) -> dict:
    """Write ids and levels' datasets (``levels`` may build each level's arrays as it goes);
    return their checksums (the ``level_sha256`` attribute)."""
    f.create_dataset("utt_ids", data=list(utt_ids), dtype=STR)
    sums = {"utt_ids": ids_sha256(utt_ids)}
    for level, arrays in levels:
        write_ragged(
            f.create_group(check_level(level)),
            arrays["offsets"],
            {name: array for name, array in arrays.items() if name != "offsets"},
        )
        sums[level] = level_sha256(arrays)
    return sums


def write_store(
    path: str | Path,
    utt_ids: Sequence[str],
    levels: Mapping[str, Sequence[np.ndarray]],
    attrs: Mapping[str, object],
    extra: Mapping[str, Mapping[str, Sequence[np.ndarray]]] | None = None,
) -> None:
    """Write a complete store atomically (:func:`mger.core.ragged_h5.atomic_h5`), with a
    sha256 per level in the ``level_sha256`` attribute.

    ``levels[level][i]`` is utterance i's rows; ``extra[level][name][i]`` a per-row array.
    """
    arrays = (
        (
            level,
            {
                "offsets": offsets_from_counts([len(r) for r in rows]),
                "data": np.concatenate(rows).astype(np.float16, copy=False),
            }
            | {name: np.concatenate(a).astype(np.int32) for name, a in (extra or {}).get(level, {}).items()},
        )
        for level, rows in levels.items()
    )
    with atomic_h5(path) as f:
        _set_attrs(f, dict(attrs) | {"level_sha256": _write_levels(f, utt_ids, arrays)})


def merge_stores(parts: Sequence[str | Path], path: str | Path, attrs: Mapping[str, object]) -> None:
    """Concatenate part stores (in order) into one store, copying the data one level at a time;
    atomic, with fresh level checksums."""
    handles = [h5py.File(p, "r") for p in parts]
    try:
        ids = [u for h in handles for u in h["utt_ids"].asstr()[()]]
        with atomic_h5(path) as out:
            sums = _write_levels(
                out, ids, ((level, _merged_level(handles, level)) for level in handles[0] if level != "utt_ids")
            )
            _set_attrs(out, dict(attrs) | {"level_sha256": sums})
    finally:
        for h in handles:
            h.close()


def _merged_level(handles: Sequence[h5py.File], level: str) -> dict[str, np.ndarray]:
    """One level of all parts, concatenated; each part's level is checked against its stored
    checksum first (a part damaged on disk since it was written is refused, not merged)."""
    parts = [{name: h[level][name][()] for name in h[level]} for h in handles]
    for h, arrays in zip(handles, parts):
        stored = _stored_json(h, "level_sha256")
        if isinstance(stored, dict) and stored.get(level) != level_sha256(arrays):
            raise CacheError(
                f"{h.filename}: level {level!r} does not match its checksum (damaged since it was "
                "written); delete that part file and rerun `mger extract` to recompute it"
            )
    counts = np.concatenate([np.diff(a["offsets"]) for a in parts])
    return {"offsets": offsets_from_counts(counts)} | {
        name: np.concatenate([a[name] for a in parts]) for name in parts[0] if name != "offsets"
    }


def read_fingerprint(path: str | Path) -> dict | None:
    """The fingerprint of a store, or None if it has none or cannot be opened."""
    try:
        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["fingerprint"])
    except (OSError, KeyError, ValueError):
        return None


def compare_stores(test: str | Path, ref: str | Path) -> dict[str, tuple[float, float]]:
    """How far ``test``'s rows are from ``ref``'s, per level both hold: (worst row cosine
    similarity, mean relative deviation sum|test - ref| / sum|ref|).  The stores must hold the
    same utterances with the same rows (e.g. one model extracted on GPU and on CPU)."""
    with h5py.File(test, "r") as a, h5py.File(ref, "r") as b:
        if not np.array_equal(a["utt_ids"][()], b["utt_ids"][()]):
            raise CacheError(f"{test}: not the utterances of {ref}")
        out = {}
        for level in (lv for lv in b if lv != "utt_ids" and lv in a):
            if not np.array_equal(a[level]["offsets"][()], b[level]["offsets"][()]):
                raise CacheError(f"{test}: level {level} has other rows than in {ref}")
            shapes = a[level]["data"].shape[1:], b[level]["data"].shape[1:]
            if shapes[0] != shapes[1]:
                raise CacheError(
                    f"{test}: level {level} rows are {shapes[0]}, {ref}'s are {shapes[1]}: "
                    "compare stores of the same model and layers"
                )
            x, y = (torch.from_numpy(f[level]["data"][()].astype(np.float32)).flatten(1) for f in (a, b))
            cos = torch.nn.functional.cosine_similarity(x, y, dim=-1)
            out[level] = (float(cos.min()), float((x - y).abs().sum() / y.abs().sum()))
    return out


_CHECKED: set[tuple[str, int, int, str]] = set()  # (store, mtime_ns, size, level) whose checksum held here


def check_level_checksum(path: str | Path, level: str) -> None:
    """Refuse (:class:`CacheError`, one line naming the store and level) a level whose bytes no
    longer match the ``level_sha256`` written with it; reading a level for training checks this
    once per process and version of the file, so a store damaged on disk never trains a model."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, level)
    if key in _CHECKED:
        return
    with h5py.File(path, "r") as f:
        sums = _stored_json(f, "level_sha256")
        if isinstance(sums, dict) and level in sums and level in f:
            if level_sha256({name: f[level][name] for name in f[level]}) != sums[level]:
                raise CacheError(
                    f"{path}: level {level!r} does not match its checksum (changed on disk since it was "
                    f"written); `mger cache verify {path}` lists the damage, `mger extract` rebuilds it"
                )
    _CHECKED.add(key)


def verify_store(path: str | Path, expected_ids: Sequence[str] | None = None) -> list[str]:
    """Problems with a store (empty list = sound): the levels present against the attributes,
    each level's sha256 against the ``level_sha256`` attribute, offsets, shapes, NaN/inf rows
    (with their utterances), duplicate ids, and coverage of ``expected_ids``."""
    if not Path(path).is_file():
        return ["a folder, not a store file" if Path(path).is_dir() else "no such file"]
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        return [f"cannot open as HDF5: {err}"]
    with f:
        if "utt_ids" not in f:
            return ["no /utt_ids dataset"]
        try:
            ids = list(f["utt_ids"].asstr()[()])
        except Exception as err:  # a damaged dataset raises from the HDF5 library
            return [f"/utt_ids unreadable: {err}"]
        problems = _verify_attrs(f, ids)
        sums = _stored_json(f, "level_sha256")
        for level in (k for k in f if k != "utt_ids"):
            problems += [f"{level}: {p}" for p in _verify_level(f[level], ids, sums)]
        if expected_ids is not None:
            missing = sorted(set(expected_ids) - set(ids))
            if missing:
                problems.append(f"{len(missing)} manifest utterances missing (e.g. {missing[0]})")
    return problems


def _stored_json(f: h5py.File, key: str) -> dict | list | None:
    try:
        return json.loads(f.attrs[key])
    except (KeyError, TypeError, ValueError):
        return None


def _verify_attrs(f: h5py.File, ids: list[str]) -> list[str]:
    """Store-wide checks: attributes, ids, the levels present against the levels listed."""
    problems = [f"attribute {key!r} missing" for key in ("fingerprint", "model", "created") if key not in f.attrs]
    if len(set(ids)) != len(ids):
        problems.append("duplicate utterance ids")
    sums = _stored_json(f, "level_sha256")
    if not isinstance(sums, dict):
        problems.append(
            "no level checksums (attribute 'level_sha256'): written by an older mger or another "
            "tool; rebuild it with `mger extract`"
        )
    elif sums.get("utt_ids") != ids_sha256(ids):
        problems.append("utt_ids: checksum mismatch (the ids were changed after writing)")
    listed = _stored_json(f, "levels")
    present = [k for k in f if k != "utt_ids"]
    if not isinstance(listed, list):
        problems.append("attribute 'levels' missing or unreadable")
        listed = present
    problems += [f"{lv}: level listed in the attributes is missing from the file" for lv in listed if lv not in present]
    problems += [f"{lv}: level present but not listed in the attributes" for lv in present if lv not in listed]
    if not present:
        problems.append("no feature levels")
    return problems


def _verify_level(g: h5py.Group, ids: list[str], sums: dict | None) -> list[str]:
    """One level: its datasets, offsets, non-finite rows and checksum (read once, block by block)."""
    if not isinstance(g, h5py.Group):
        return ["not a level group (a stray dataset)"]
    if "offsets" not in g or "data" not in g:
        return ["offsets or data missing"]
    try:
        off = g["offsets"][()]
        problem = offsets_problem(off, len(ids), g["data"].shape[0])
        bad_rows: list[np.ndarray] = []
        h = hashlib.sha256()
        for name in sorted(g):
            check = (lambda s, block: bad_rows.append(s + _nonfinite_rows(block))) if name == "data" else None
            _digest(h, name, g[name], check)
    except Exception as err:  # HDF5 raises OSError/RuntimeError on damaged chunks
        return [f"unreadable: {err}"]
    out = [problem] if problem else []
    rows = np.concatenate(bad_rows) if bad_rows else np.zeros(0, np.int64)
    if len(rows):
        out.append(_nonfinite_message(rows, off if problem is None else None, ids))
    if isinstance(sums, dict):
        if g.name.strip("/") not in sums:
            out.append("no checksum stored for this level")
        elif sums[g.name.strip("/")] != h.hexdigest():
            out.append("checksum mismatch: the level's bytes changed after writing (damaged or edited)")
    return out


def _nonfinite_rows(block: np.ndarray) -> np.ndarray:
    """Indices (within ``block``) of rows holding a NaN or inf."""
    return np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))


def _nonfinite_message(rows: np.ndarray, off: np.ndarray | None, ids: list[str]) -> str:
    if off is None:
        return f"NaN or inf in {len(rows)} rows (first: row {rows[0]})"
    utts = np.searchsorted(off, rows, side="right") - 1
    first = int(utts[0])
    return (
        f"NaN or inf in {len(rows)} rows of {len(np.unique(utts))} utterances "
        f"(first: {ids[first]}, its row {int(rows[0] - off[first])})"
    )


@dataclass
class Batch:
    """Padded features: ``data`` (B, T, ...), ``lengths`` (B,)."""

    data: torch.Tensor
    lengths: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) True where a row is real, False where padded."""
        return torch.arange(self.data.shape[1])[None, :] < self.lengths[:, None]


@dataclass
class Ragged:
    """Variable-length items laid end to end: item b is ``data[starts[b]:starts[b] + lengths[b]]``.

    ``data`` (R, ...) keeps the store's dtype (float16); :meth:`pad` makes float32 batches.
    A fold held this way costs its rows, not B x T_max of them (frame level: one long
    utterance would otherwise pad every other one to its length).
    """

    data: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor

    def __post_init__(self) -> None:
        if self.starts.shape != self.lengths.shape or self.starts.ndim != 1:
            raise ValueError(f"starts {tuple(self.starts.shape)} and lengths {tuple(self.lengths.shape)} must be (B,)")
        if len(self.lengths) and int((self.starts + self.lengths).max()) > self.data.shape[0]:
            raise ValueError(f"items end past the {self.data.shape[0]} rows of data")

    @classmethod
    def from_padded(cls, batch: Batch) -> "Ragged":
        """The real rows of a padded batch (copied, in its dtype)."""
        rows = batch.data[batch.mask]
        return cls(rows, torch.cumsum(batch.lengths, 0) - batch.lengths, batch.lengths.clone())

    def __len__(self) -> int:
        return len(self.lengths)

    def subset(self, idx: torch.Tensor | np.ndarray) -> "Ragged":
        """Items ``idx``, sharing this one's rows (no copy)."""
        i = torch.as_tensor(idx, dtype=torch.long)
        return Ragged(self.data, self.starts[i], self.lengths[i])

    def compact(self) -> "Ragged":
        """A copy holding only these items' rows, contiguous and in item order."""
        rows, starts = range_indices(self.starts, self.lengths)
        return Ragged(self.data.index_select(0, rows), starts, self.lengths.clone())

    def item(self, i: int) -> torch.Tensor:
        """Item i's rows, float32 (T_i, ...)."""
        start = int(self.starts[i])
        return self.data[start : start + int(self.lengths[i])].float()

    def pad(self, idx: torch.Tensor | np.ndarray | None = None) -> Batch:
        """Items ``idx`` (default: all) padded with zeros to the longest of them (at least 1
        row): float32 (B, T, ...)."""
        r = self if idx is None else self.subset(idx)
        width = max(1, int(r.lengths.max())) if len(r) else 1
        pad = _pad_by_blocks if len(r) and r.lengths.float().mean() >= _BLOCK_ROWS else _pad_by_gather
        return Batch(pad(r.data, r.starts, r.lengths, width), r.lengths)


class LeakageError(CacheError):
    """Features from encoders fine-tuned for one fold requested for another fold."""


class FeatureStore:
    """Read-only access to a store; raises :class:`CacheError` on a structurally broken file
    (on opening) or level (on the level's first use).

    ``fold``: the cross-validation fold the features are for.  A store extracted with encoders
    fine-tuned for fold j (``mger extract --fold j``) opens only with ``fold=j``; any other
    fold raises :class:`LeakageError`, since those encoders were trained on fold k's test
    session.  Frozen-encoder stores serve every fold.
    """

    def __init__(self, path: str | Path, fold: int | None = None) -> None:
        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as f:
                self.utt_ids: list[str] = list(f["utt_ids"].asstr()[()])
                self.levels = [k for k in f if k != "utt_ids"]
        except (OSError, KeyError) as err:
            raise CacheError(f"{self.path}: not a readable feature store ({err})") from None
        self._index = {u: i for i, u in enumerate(self.utt_ids)}
        self._levels: dict[str, tuple[np.ndarray, int | None, tuple[int, ...]]] = {}
        self._data: dict[str, np.ndarray] = {}
        if fold is not None:
            self.check_fold(fold)

    @cached_property
    def attrs(self) -> dict:
        """The store's attributes (model, revision, fingerprint, ...), read on first use."""
        with h5py.File(self.path, "r") as f:
            return dict(f.attrs)

    @property
    def fold(self) -> int | None:
        """The fold whose fine-tuned encoders made this store (None: frozen encoders)."""
        return self.fingerprint.get("fold") if "fingerprint" in self.attrs else None

    def check_fold(self, fold: int) -> None:
        own = self.fold
        if own is None:
            return
        trained = self.fingerprint.get("finetune_train_folds", [])
        if own != fold or fold in trained:
            raise LeakageError(
                f"{self.path}: features from encoders fine-tuned for fold {own} (on folds "
                f"{trained}) cannot be used for fold {fold}: its test fold was in their training"
            )

    def _level(self, level: str) -> tuple[np.ndarray, int | None, tuple[int, ...]]:
        """A level's offsets and data layout (see :func:`_data_layout`), read and checked on
        its first use: opening a store costs its ids, not every level's index."""
        if level not in self.levels:
            listed = "fingerprint" in self.attrs and level in self.fingerprint.get("levels", [])
            fix = (
                "its settings list it but the file lacks it (damaged or edited): `mger extract` rebuilds it"
                if listed
                else "add it to the store's levels (features.speech.levels) and rerun `mger extract`, or use another"
            )
            raise KeyError(f"{self.path}: no level {level!r} (levels: {', '.join(self.levels)}); {fix}")
        if level not in self._levels:
            try:
                with h5py.File(self.path, "r") as f:
                    off, (start, shape) = f[level]["offsets"][()], _data_layout(f[level]["data"])
            except (OSError, KeyError) as err:
                raise CacheError(f"{self.path}: level {level!r} is not readable ({err})") from None
            try:
                check_offsets(self.path, level, off, len(self.utt_ids), shape[0])
            except RaggedFormatError as err:
                raise CacheError(f"{err}; run `mger cache verify`") from None
            self._levels[level] = off, start, shape
        return self._levels[level]

    def _offsets(self, level: str) -> np.ndarray:
        return self._level(level)[0]

    def n_rows(self, level: str) -> int:
        return int(self._offsets(level)[-1])

    def level_shape(self, level: str) -> tuple[int, ...]:
        """The level's data shape: (rows, dim), or (rows, layers, dim) for a store of several layers."""
        return tuple(self._level(level)[2])

    def size_line(self) -> str:
        """The stored rows' size per level, and per layer where the store holds several
        (float16: 2 bytes a value; offsets and attributes not counted), e.g.
        ``5 layers x 128 dims per row; word 5.29 MiB (1.06 per layer), ...``."""
        shapes = {lv: self.level_shape(lv) for lv in self.levels}
        first = next(iter(shapes.values()), (0, 0))
        layers = first[1] if len(first) == 3 else 1
        mib = {lv: 2 * int(np.prod(shape)) / 2**20 for lv, shape in shapes.items()}
        per = (lambda lv: f" ({mib[lv] / layers:.2f} per layer)") if layers > 1 else (lambda lv: "")
        cells = ", ".join(f"{lv} {mib[lv]:.2f} MiB{per(lv)}" for lv in shapes)
        what = f"{layers} layers x {first[-1]} dims per row; " if layers > 1 else ""
        return f"{what}{cells}; {sum(mib.values()):.2f} MiB of rows in all"

    @property
    def fingerprint(self) -> dict:
        return json.loads(self.attrs["fingerprint"])

    def _level_data(self, level: str) -> np.ndarray:
        """All rows of ``level`` (float16): memory-mapped when HDF5 stores them as one plain
        contiguous block (as :func:`write_store` does), else read whole."""
        if level not in self._data:
            _, start, shape = self._level(level)
            if start is None:
                with h5py.File(self.path, "r") as f:
                    self._data[level] = f[level]["data"][()]
            else:  # copy-on-write: a writable view for torch; nothing is ever written back
                self._data[level] = np.memmap(self.path, np.float16, "c", start, shape)
        return self._data[level]

    def rows(self, level: str, utt_id: str) -> np.ndarray:
        """One utterance's rows (float16 as stored)."""
        i = self._index[utt_id]
        off = self._offsets(level)
        return self._level_data(level)[off[i] : off[i + 1]]

    def extra(self, level: str, name: str, utt_id: str) -> np.ndarray:
        i = self._index[utt_id]
        off = self._offsets(level)
        with h5py.File(self.path, "r") as f:
            return f[level][name][off[i] : off[i + 1]]

    def ragged(self, level: str, utt_ids: Sequence[str] | None = None, layer: int | None = None) -> Ragged:
        """The rows of ``utt_ids`` (default: all), in that order, read into memory as stored
        (float16, R x ...): how a training fold is held; :meth:`Ragged.pad` makes batches."""
        return self._view(level, utt_ids, layer).compact()

    def load(self, level: str, utt_ids: Sequence[str] | None = None, layer: int | None = None) -> Batch:
        """Padded float32 tensor (B, T_max, D) and lengths (B,) for ``utt_ids`` (default: all)."""
        return self._view(level, utt_ids, layer).pad()

    def _view(self, level: str, utt_ids: Sequence[str] | None, layer: int | None) -> Ragged:
        """``utt_ids``' items over the level's stored rows, not yet copied."""
        ids = self.utt_ids if utt_ids is None else list(utt_ids)
        missing = [u for u in ids if u not in self._index]
        if missing:
            raise KeyError(f"{self.path}: {len(missing)} utterances not in the store (e.g. {missing[0]})")
        data = torch.from_numpy(self._level_data(level))
        if layer is not None:
            data = data[:, layer]
        off = self._offsets(level)
        idx = np.array([self._index[u] for u in ids], dtype=np.int64)
        return Ragged(data, torch.from_numpy(off[idx]), torch.from_numpy(off[idx + 1] - off[idx]))

    def dataset(self, level: str, utt_ids: Sequence[str], labels: Sequence[int]) -> "torch.utils.data.Dataset":
        """A map-style torch Dataset of (features (T, D) float32, label) for one level."""
        return _RaggedDataset(self.ragged(level, utt_ids), torch.as_tensor(list(labels)))


def _data_layout(ds: h5py.Dataset) -> tuple[int | None, tuple[int, ...]]:
    """Where a level's rows start in the file, if they lie there as one plain float16 block
    that can be memory-mapped (else None), and their shape."""
    plain = ds.chunks is None and ds.dtype == np.float16 and ds.size > 0
    start = ds.id.get_offset() if plain else None
    return (None if start is None else int(start)), ds.shape


_BLOCK_ROWS = 64  # mean rows per item from which block copies beat one gather (measured)
_ELEMENTS_PER_THREAD = 1 << 22  # padded outputs below 16 MB of float32 per thread are copied by one


def _numpy_backed(shape: tuple[int, ...]) -> torch.Tensor:
    """A zeroed float32 tensor in memory allocated by numpy, which advises large allocations
    into huge pages: they fault in ~2x faster than torch's own for a fold-sized padded tensor."""
    return torch.from_numpy(np.zeros(shape, dtype=np.float32))


def _pad_by_blocks(data: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width, ...) float32, item b = ``data[starts[b]:starts[b] + lengths[b]]``: one block
    copy (cast by torch, vectorised) per item, the items split among threads when the output
    is large (the copies release the GIL); for long items."""
    n = len(starts)
    out = _numpy_backed((n * width,) + tuple(data.shape[1:])).view((n, width) + tuple(data.shape[1:]))
    first, count = starts.tolist(), lengths.tolist()

    def copy(ks: range) -> None:
        for k in ks:
            out[k, : count[k]].copy_(data[first[k] : first[k] + count[k]])

    n_threads = max(1, min(8, torch.get_num_threads(), n, out.numel() // _ELEMENTS_PER_THREAD))
    if n_threads == 1:
        copy(range(n))
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(copy, [range(i * n // n_threads, (i + 1) * n // n_threads) for i in range(n_threads)]))
    return out


def _pad_by_gather(data: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """As :func:`_pad_by_blocks`, with one gather of all rows and one scatter into the padded
    tensor; for short items, where a copy per item costs more than its rows."""
    rows, _ = range_indices(starts, lengths)
    slots, _ = range_indices(torch.arange(len(starts)) * width, lengths)
    out = _numpy_backed((len(starts) * width,) + tuple(data.shape[1:]))
    out.index_copy_(0, slots, data.index_select(0, rows).float())
    return out.view((len(starts), width) + tuple(data.shape[1:]))


class _RaggedDataset(torch.utils.data.Dataset):
    def __init__(self, items: Ragged, labels: torch.Tensor) -> None:
        self.items, self.labels = items, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items.item(i), self.labels[i]
