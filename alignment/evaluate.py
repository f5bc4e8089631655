"""Word-boundary accuracy against the synthetic corpus's ground truth.

Truth entries are eSpeak WORD events, some of which cover several transcript words ("in
the").  Each entry's tokens are normalised like the aligner's transcript; the entry's onset
is compared with the aligned onset of its first word and its offset with the aligned offset
of its last word.  Aligned and truth word sequences are matched with difflib, so a word the
two disagree on costs only itself.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from alignment.base import Segment
from alignment.normalize import normalize_token


def read_truth(path: str | Path) -> dict[str, list[dict]]:
    """utt id → truth word entries ({word, start, end})."""
    with Path(path).open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return {r["utt_id"]: r["words"] for r in rows}


def boundary_errors(truth: Sequence[dict], words: Sequence[Segment]) -> tuple[list[float], list[float]]:
    """Absolute onset and offset errors (seconds) of one utterance's matched truth entries."""
    flat: list[str] = []
    entry_span: list[tuple[int, int]] = []  # each entry's [first, last] index into flat
    for entry in truth:
        norm = [w for tok in entry["word"].split() for w in normalize_token(tok)]
        entry_span.append((len(flat), len(flat) + len(norm) - 1))
        flat += norm
    aligned = [w.label for w in words]
    matcher = difflib.SequenceMatcher(a=flat, b=aligned, autojunk=False)
    to_aligned: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            to_aligned[block.a + k] = block.b + k
    onset, offset = [], []
    for entry, (first, last) in zip(truth, entry_span):
        if last < first:
            continue
        if first in to_aligned:
            onset.append(abs(words[to_aligned[first]].start - entry["start"]))
        if last in to_aligned:
            offset.append(abs(words[to_aligned[last]].end - entry["end"]))
    return onset, offset


def summarize(onset: Iterable[float], offset: Iterable[float], n_utterances: int, backend: str) -> dict:
    """The align-eval metrics (milliseconds; shares as fractions 0-1)."""
    on = np.asarray(list(onset), float) * 1000
    off = np.asarray(list(offset), float) * 1000

    def stat(x: np.ndarray, f) -> float | None:
        return round(float(f(x)), 3) if len(x) else None

    return {
        "backend": backend,
        "n_utterances": n_utterances,
        "n_words": int(len(on)),
        "onset_median_ms": stat(on, np.median),
        "onset_mean_ms": stat(on, np.mean),
        "onset_within_20ms": stat(on, lambda x: np.mean(x <= 20)),
        "onset_within_50ms": stat(on, lambda x: np.mean(x <= 50)),
        "offset_median_ms": stat(off, np.median),
        "offset_mean_ms": stat(off, np.mean),
        "offset_within_20ms": stat(off, lambda x: np.mean(x <= 20)),
        "offset_within_50ms": stat(off, lambda x: np.mean(x <= 50)),
    }


def evaluate(truth: Mapping[str, Sequence[dict]], aligned: Mapping[str, Sequence[Segment]], backend: str) -> dict:
    """Metrics over the utterances present in both ``truth`` and ``aligned``."""
    onset: list[float] = []
    offset: list[float] = []
    common = [u for u in aligned if u in truth]
    for uid in common:
        on, off = boundary_errors(truth[uid], aligned[uid])
        onset += on
        offset += off
    return summarize(onset, offset, len(common), backend)
