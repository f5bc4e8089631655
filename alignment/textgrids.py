"""Praat TextGrids with tiers ``words``, ``syllables``, ``phones`` (silences as empty intervals)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import textgrid

from mger.alignment.base import Alignment, Segment
from mger.core.ragged_h5 import SEGMENT_LEVELS, segment_group
from mger.core.reporting import atomic_path

TIERS = tuple(segment_group(level) for level in SEGMENT_LEVELS)


def _tier(name: str, segments: Sequence[Segment], duration: float) -> textgrid.IntervalTier:
    tier = textgrid.IntervalTier(name=name, minTime=0.0, maxTime=duration)
    last = 0.0
    for s in sorted(segments, key=lambda s: s.start):
        start, end = max(s.start, last), min(s.end, duration)
        if end - start > 1e-6:
            tier.add(round(start, 6), round(end, 6), s.label)
            last = end
    return tier


def write_textgrid(path: str | Path, alignment: Alignment) -> None:
    """Write one utterance's TextGrid (gaps between segments become empty intervals)."""
    duration = max([alignment.duration] + [s.end for s in alignment.words])
    tg = textgrid.TextGrid(name=alignment.utt_id, minTime=0.0, maxTime=duration)
    for name in TIERS:
        tg.append(_tier(name, getattr(alignment, name), duration))
    with atomic_path(path) as tmp:  # whole or absent: a killed run leaves no half TextGrid
        tg.write(str(tmp))
