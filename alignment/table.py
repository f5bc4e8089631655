"""The consolidated segment table (HDF5): every utterance's words, syllables and phones.

Later stages read this one file instead of thousands of TextGrids.  Layout::

    /utt_ids                 (N,)   str     utterance ids, manifest order
    /duration                (N,)   float64 seconds
    /method                  (N,)   str     "aligned" or "uniform" (failure-policy fallback)
    /<level>/offsets         (N+1,) int64   rows of utterance i are [offsets[i], offsets[i+1])
    /<level>/start, /end     (M,)   float64 seconds
    /<level>/label           (M,)   str
    /<level>/word            (M,)   int32   owning word's index within the utterance (words: own index)

``<level>`` is ``words``, ``syllables`` or ``phones``; attributes hold the backend name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from mger.alignment.base import Alignment, Segment

LEVELS = ("words", "syllables", "phones")
_STR = h5py.string_dtype("utf-8")


def write_table(path: str | Path, alignments: Sequence[Alignment], backend: str) -> None:
    """Write all alignments (in the given order) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["backend"] = backend
        f.create_dataset("utt_ids", data=[a.utt_id for a in alignments], dtype=_STR)
        f.create_dataset("duration", data=np.array([a.duration for a in alignments], np.float64))
        f.create_dataset("method", data=[a.method for a in alignments], dtype=_STR)
        for level in LEVELS:
            rows = [getattr(a, level) for a in alignments]
            g = f.create_group(level)
            g.create_dataset("offsets", data=np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64))
            flat = [s for r in rows for s in r]
            g.create_dataset("start", data=np.array([s.start for s in flat], np.float64))
            g.create_dataset("end", data=np.array([s.end for s in flat], np.float64))
            g.create_dataset("label", data=[s.label for s in flat], dtype=_STR)
            own = [i if level == "words" else s.word for r in rows for i, s in enumerate(r)]
            g.create_dataset("word", data=np.array(own, np.int32))
    tmp.replace(path)


@dataclass
class SegmentTable:
    """The whole table in memory (small: a few MB for IEMOCAP)."""

    utt_ids: list[str]
    duration: np.ndarray
    method: list[str]
    levels: dict[str, dict[str, np.ndarray]]
    backend: str

    @classmethod
    def read(cls, path: str | Path) -> "SegmentTable":
        with h5py.File(path, "r") as f:
            levels = {
                level: {k: f[level][k][()] for k in ("offsets", "start", "end", "word")}
                | {"label": np.array(f[level]["label"].asstr()[()], dtype=object)}
                for level in LEVELS
            }
            return cls(list(f["utt_ids"].asstr()[()]), f["duration"][()], list(f["method"].asstr()[()]), levels,
                       str(f.attrs["backend"]))

    def index(self, utt_id: str) -> int:
        if not hasattr(self, "_index"):
            self._index = {u: i for i, u in enumerate(self.utt_ids)}
        return self._index[utt_id]

    def segments(self, level: str, utt_id: str) -> list[Segment]:
        """One utterance's segments of ``level``."""
        lv = self.levels[level]
        i = self.index(utt_id)
        a, b = lv["offsets"][i], lv["offsets"][i + 1]
        return [Segment(float(lv["start"][k]), float(lv["end"][k]), str(lv["label"][k]), int(lv["word"][k]))
                for k in range(a, b)]
