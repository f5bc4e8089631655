"""Ragged HDF5: items of variable length laid end to end, with offsets; the level vocabulary.

Both HDF5 files of the pipeline hold per-utterance rows this way: the alignment's segment
table (``segments.h5``, :mod:`mger.alignment.table`) and the feature stores
(:mod:`mger.features.cache`).  One level ``g`` of either is a group::

    /<g>/offsets   (N+1,)  int64   rows of item i are [offsets[i], offsets[i+1])
    /<g>/<column>  (R, ...)        one row per segment, frame, token ... of all items

Why one module: the offsets, their check and the atomic write are the same for both files,
and both speak of the same levels (a word of the segment table is the word the feature store
pools); one vocabulary keeps them from drifting apart.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np

from mger.core.reporting import atomic_path

#: Every level of the pipeline, finest first: speech rows (frames, pooled segments, the whole
#: utterance, openSMILE's functionals) and text rows (sub-word tokens, words).
LEVELS = ("frame", "phone", "syllable", "word", "utterance", "functionals", "token")
#: The levels a speech feature store can hold (``features.speech.levels``), in store order.
SPEECH_LEVELS = ("frame", "phone", "syllable", "word", "utterance", "functionals")
#: Speech levels computed from the audio alone, apart from the encoder's frames: they need no
#: alignment and no transcript, so they live in a store of their own (``features.audio_out``,
#: the ``extract_audio`` stage) that switching the transcript or re-aligning leaves alone.  Frame
#: and utterance rows come from the same forward pass as the pooled levels and stay with them (a
#: second pass would double extraction's cost).
AUDIO_LEVELS = ("functionals",)
#: The levels of a text feature store, in store order.
TEXT_LEVELS = ("token", "word")
#: The levels of the alignment (segment table, TextGrids), in table order.
SEGMENT_LEVELS = ("word", "syllable", "phone")

# The segment table names its groups in the plural, as the TextGrid tiers and the fields of an
# alignment are named: on disk they stay so (existing tables keep reading); code says the level.
_SEGMENT_GROUPS = {"word": "words", "syllable": "syllables", "phone": "phones"}

STR = h5py.string_dtype("utf-8")


class RaggedFormatError(ValueError):
    """A ragged level whose offsets do not cut its rows into its items."""


def segment_group(level: str) -> str:
    """The segment table's group (and TextGrid tier, :class:`Alignment` field) of ``level``."""
    if level not in _SEGMENT_GROUPS:
        raise ValueError(f"{level!r} is not an alignment level (one of {', '.join(SEGMENT_LEVELS)})")
    return _SEGMENT_GROUPS[level]


def check_level(level: str) -> str:
    """``level`` itself if it is one of :data:`LEVELS`, else a ValueError naming them."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r} (levels: {', '.join(LEVELS)})")
    return level


def offsets_from_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """(N+1,) int64 offsets of items of ``counts`` rows each, laid end to end."""
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def offsets_problem(offsets: np.ndarray, n_items: int, n_rows: int) -> str | None:
    """What is wrong with a level's offsets (None: they cut ``n_rows`` rows into ``n_items``
    consecutive items: start at 0, never decrease, end at ``n_rows``)."""
    if offsets.shape != (n_items + 1,):
        return f"offsets shape {offsets.shape}, expected ({n_items + 1},)"
    if offsets[0] != 0 or (np.diff(offsets) < 0).any() or offsets[-1] != n_rows:
        return f"offsets inconsistent with {n_rows} data rows"
    return None


def check_offsets(path: str | Path, level: str, offsets: np.ndarray, n_items: int, n_rows: int) -> None:
    """Raise :class:`RaggedFormatError` naming the file and level if the offsets are unsound."""
    problem = offsets_problem(offsets, n_items, n_rows)
    if problem:
        raise RaggedFormatError(f"{path}: level {level!r} has inconsistent offsets ({problem})")


def write_ragged(group: h5py.Group, offsets: np.ndarray, columns: Mapping[str, np.ndarray | Sequence[str]]) -> None:
    """Write one level: ``offsets`` then each column, in the given order; a column given as a
    list of str is stored as UTF-8 strings, an array as it is."""
    group.create_dataset("offsets", data=offsets)
    for name, column in columns.items():
        if isinstance(column, np.ndarray):
            group.create_dataset(name, data=column)
        else:
            group.create_dataset(name, data=list(column), dtype=STR)


@contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """A new HDF5 file that appears at ``path`` whole or not at all (written to a temp file and
    renamed when the block ends without an error: :func:`mger.core.reporting.atomic_path`).

    Under a file-size limit (``ulimit -f``) the file is built in memory and written in one
    write: HDF5 crashes the process (a segmentation fault, no message) when the limit refuses
    one of its own writes, while a plain write fails with an ``OSError`` naming ``path``."""
    with atomic_path(path) as tmp:
        if not _file_size_limited():
            with h5py.File(tmp, "w") as f:
                yield f
            return
        with h5py.File(tmp, "w", driver="core", backing_store=False) as f:
            yield f
            f.flush()
            image = f.id.get_file_image()
        tmp.write_bytes(image)


def _file_size_limited() -> bool:
    """Whether this process has a finite file-size limit (``ulimit -f``; never on Windows)."""
    try:
        import resource
    except ImportError:
        return False
    return resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY
