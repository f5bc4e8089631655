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


def write_table(path: str | Path, alignments: Sequence[Alignment], backend: str) -> None:
    """Write all alignments (in the given order) atomically."""
    with atomic_h5(path) as f:
        f.attrs["backend"] = backend
        f.create_dataset("utt_ids", data=[a.utt_id for a in alignments], dtype=STR)
        f.create_dataset("duration", data=np.array([a.duration for a in alignments], np.float64))
        f.create_dataset("method", data=[a.method for a in alignments], dtype=STR)
        for level in SEGMENT_LEVELS:
            rows = [getattr(a, segment_group(level)) for a in alignments]
            flat = [s for r in rows for s in r]
            own = [i if level == "word" else s.word for r in rows for i, s in enumerate(r)]
            write_ragged(
                f.create_group(segment_group(level)),
                offsets_from_counts([len(r) for r in rows]),
                {
                    "start": np.array([s.start for s in flat], np.float64),
                    "end": np.array([s.end for s in flat], np.float64),
                    "label": [s.label for s in flat],
                    "word": np.array(own, np.int32),
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
        :class:`mger.core.ragged_h5.RaggedFormatError` naming the file and level."""
        with _open(path) as f:
            utt_ids = list(f["utt_ids"].asstr()[()])
            levels = {level: _read_level(f[segment_group(level)]) for level in SEGMENT_LEVELS}
            for level, lv in levels.items():
                check_offsets(path, level, lv["offsets"], len(utt_ids), len(lv["start"]))
            return cls(utt_ids, f["duration"][()], list(f["method"].asstr()[()]), levels, str(f.attrs["backend"]))

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
