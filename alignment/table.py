"""The consolidated segment table (HDF5): every utterance's words, syllables and phones.

Later stages read this one file instead of thousands of TextGrids.  Layout (the ragged
levels of :mod:`mger.core.ragged_h5`)::

    /utt_ids                 (N,)   str     utterance ids, manifest order
    /duration                (N,)   float64 seconds
    /method                  (N,)   str     "aligned" or "uniform" (failure-policy fallback)
    /<group>/offsets         (N+1,) int64   rows of utterance i are [offsets[i], offsets[i+1])
    /<group>/start, /end     (M,)   float64 seconds
    /<group>/label           (M,)   str
    /<group>/word            (M,)   int32   owning word's index within the utterance (words: own index)

Code names the levels ``word``, ``syllable`` and ``phone`` (:data:`SEGMENT_LEVELS`); their
groups on disk are ``words``, ``syllables`` and ``phones``
(:func:`mger.core.ragged_h5.segment_group`).  Attributes hold the backend name.

The table is checked when written and when read (:func:`table_problem`): every duration
positive and finite; every time finite, ``0 <= start <= end <= duration`` (within
:data:`TOLERANCE_S`); each utterance's segments of a level in order of start; each syllable's
and phone's word one of its utterance's words.  A violation is one
:class:`SegmentTableError` naming the file, the utterance and the segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from mger.alignment.base import Alignment, Segment
from mger.core.ragged_h5 import (
    SEGMENT_LEVELS,
    STR,
    RaggedFormatError,
    atomic_h5,
    check_offsets,
    offsets_from_counts,
    segment_group,
    write_ragged,
)

TOLERANCE_S = 0.05  # how far past the audio's end (or before 0) a time may lie: frame rounding


class SegmentTableError(ValueError):
    """A segment table (or one alignment) whose times cannot be trusted."""


def _columns(alignments: Sequence[Alignment]) -> dict[str, dict[str, np.ndarray]]:
    """Each level's offsets and columns, as the table stores them."""
    out = {}
    for level in SEGMENT_LEVELS:
        rows = [getattr(a, segment_group(level)) for a in alignments]
        flat = [s for r in rows for s in r]
        own = [i if level == "word" else s.word for r in rows for i, s in enumerate(r)]
        out[level] = {
            "offsets": offsets_from_counts([len(r) for r in rows]),
            "start": np.array([s.start for s in flat], np.float64),
            "end": np.array([s.end for s in flat], np.float64),
            "label": np.array([s.label for s in flat], dtype=object),
            "word": np.array(own, np.int32),
        }
    return out


def table_problem(utt_ids: Sequence[str], duration: np.ndarray, levels: dict[str, dict[str, np.ndarray]]) -> str | None:
    """The first thing wrong with a table's times (None: sound), naming the utterance and segment:
    a duration that is not positive and finite; a time that is not finite, a start after its end,
    a segment outside ``[0, duration]`` (within :data:`TOLERANCE_S`), a segment starting before
    the one ahead of it, or a syllable or phone owned by a word the utterance does not have."""
    duration = np.asarray(duration, np.float64)
    bad = np.flatnonzero(~(np.isfinite(duration) & (duration > 0)))
    if len(bad):
        return f"{utt_ids[bad[0]]}: duration {float(duration[bad[0]])!r} s (not a positive finite number)"
    n_words = np.diff(levels["word"]["offsets"])
    for level in SEGMENT_LEVELS:
        lv = levels[level]
        start, end, off = lv["start"], lv["end"], lv["offsets"]
        owner = np.repeat(np.arange(len(off) - 1), np.diff(off))
        first = np.zeros(len(start), bool)
        first[off[:-1][np.diff(off) > 0]] = True  # each utterance's first segment
        prev_start = np.concatenate([[-np.inf], start[:-1]])
        checks = (
            (~(np.isfinite(start) & np.isfinite(end)), "a time that is not finite"),
            (start > end, "its start after its end"),
            (start < -TOLERANCE_S, "a start before 0"),
            (end > duration[owner] + TOLERANCE_S, "its end past the audio's duration"),
            (~first & (start < prev_start), "a start before the previous segment's start (not in order)"),
            (
                np.zeros(len(start), bool) if level == "word" else (lv["word"] < 0) | (lv["word"] >= n_words[owner]),
                "a word index out of range",
            ),
        )
        for mask, what in checks:
            hits = np.flatnonzero(mask)
            if len(hits):
                k = int(hits[0])
                i = int(owner[k])
                times = f"{float(start[k])!r}-{float(end[k])!r} s of {duration[i]:.3f} s"
                return f"{utt_ids[i]}: {level} {k - int(off[i])} ({lv['label'][k]!r}, {times}) has {what}"
    return None


def alignment_problem(alignment: Alignment) -> str | None:
    """What is wrong with one alignment's times (None: sound; see :func:`table_problem`)."""
    return table_problem([alignment.utt_id], np.array([alignment.duration]), _columns([alignment]))


def write_table(path: str | Path, alignments: Sequence[Alignment], backend: str) -> None:
    """Write all alignments (in the given order) atomically; times that fail
    :func:`table_problem` raise :class:`SegmentTableError` naming the file and utterance, and
    nothing is written."""
    levels = _columns(alignments)
    duration = np.array([a.duration for a in alignments], np.float64)
    problem = table_problem([a.utt_id for a in alignments], duration, levels)
    if problem:
        raise SegmentTableError(f"{path}: not written: {problem}")
    with atomic_h5(path) as f:
        f.attrs["backend"] = backend
        f.create_dataset("utt_ids", data=[a.utt_id for a in alignments], dtype=STR)
        f.create_dataset("duration", data=duration)
        f.create_dataset("method", data=[a.method for a in alignments], dtype=STR)
        for level in SEGMENT_LEVELS:
            lv = levels[level]
            write_ragged(
                f.create_group(segment_group(level)),
                lv["offsets"],
                {
                    "start": lv["start"],
                    "end": lv["end"],
                    "label": list(lv["label"]),
                    "word": lv["word"],
                },
            )


@dataclass
class SegmentTable:
    """The whole table in memory (small: a few MB for IEMOCAP); ``levels`` is keyed by level
    (``word``, ``syllable``, ``phone``)."""

    utt_ids: list[str]
    duration: np.ndarray
    method: list[str]
    levels: dict[str, dict[str, np.ndarray]]
    backend: str

    @classmethod
    def read(cls, path: str | Path) -> "SegmentTable":
        """Read a table; offsets that do not cut a level's rows into the utterances raise
        :class:`mger.core.ragged_h5.RaggedFormatError` naming the file and level, times that
        fail :func:`table_problem` :class:`SegmentTableError` naming the file and utterance."""
        with _open(path) as f:
            try:
                utt_ids = list(f["utt_ids"].asstr()[()])
                levels = {level: _read_level(f[segment_group(level)]) for level in SEGMENT_LEVELS}
                table = cls(utt_ids, f["duration"][()], list(f["method"].asstr()[()]), levels, str(f.attrs["backend"]))
            except KeyError as err:  # a group, dataset or attribute deleted or never written
                reason = str(err).strip('"')
                raise RaggedFormatError(
                    f"{path}: not a whole segment table ({reason}); rerun `mger align` to write it again"
                ) from None
            for level, lv in levels.items():
                check_offsets(path, level, lv["offsets"], len(utt_ids), len(lv["start"]))
        problem = table_problem(table.utt_ids, table.duration, table.levels)
        if problem:
            raise SegmentTableError(f"{path}: {problem}; re-run `mger align` (or `dvc repro`)")
        return table

    def index(self, utt_id: str) -> int:
        if not hasattr(self, "_index"):
            self._index = {u: i for i, u in enumerate(self.utt_ids)}
        return self._index[utt_id]

    def segments(self, level: str, utt_id: str) -> list[Segment]:
        """One utterance's segments of ``level`` (``word``, ``syllable`` or ``phone``)."""
        lv = self.levels[level]
        i = self.index(utt_id)
        a, b = lv["offsets"][i], lv["offsets"][i + 1]
        return [
            Segment(float(lv["start"][k]), float(lv["end"][k]), str(lv["label"][k]), int(lv["word"][k]))
            for k in range(a, b)
        ]


def _open(path: str | Path) -> h5py.File:
    """``path`` opened for reading; a file that is not whole HDF5 (truncated, overwritten) is a
    :class:`RaggedFormatError` naming it, a missing one a ``FileNotFoundError`` naming it."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise FileNotFoundError(2, "No such file or directory", str(path)) from None
    except OSError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RaggedFormatError(
            f"{path}: not a whole HDF5 segment table ({reason}); rerun `mger align` to write it again"
        ) from None


def _read_level(g: h5py.Group) -> dict[str, np.ndarray]:
    return {k: g[k][()] for k in ("offsets", "start", "end", "word")} | {
        "label": np.array(g["label"].asstr()[()], dtype=object)
    }
