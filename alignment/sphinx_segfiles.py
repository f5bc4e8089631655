"""Sphinx segmentation files as IEMOCAP ships them (``.wdseg`` words, ``.phseg`` phones).

Format: a header line (``SFrm  EFrm    SegAScr Word`` or ``... Phone``), one row per segment
(start frame, end frame inclusive, acoustic score, label, optional extra columns such as
a phone's word-position flag), in 10 ms frames, and a trailer (``Total score: ...``).
Labels ``<s>``, ``</s>``, ``<sil>``, ``SIL`` and fillers such as ``++NOISE++`` are
non-speech (so are pocketsphinx's ``[NOISE]``-style fillers); variants such as ``WORD(2)`` are the word.
"""

from __future__ import annotations

import re
from pathlib import Path

from mger.alignment.base import Segment

FRAME = 0.01
_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(-?\d+)\s+(\S+)")
_VARIANT = re.compile(r"\(\d+\)$")


def is_non_speech(label: str) -> bool:
    """True for sentence marks, silences and fillers."""
    return label.startswith(("<", "++", "[")) or label.upper() in ("SIL", "SP", "NSN", "SPN", "")


def strip_variant(word: str) -> str:
    """``READ(2)`` → ``READ``."""
    return _VARIANT.sub("", word)


def parse_segfile(text: str) -> list[Segment]:
    """Speech rows of a ``.wdseg``/``.phseg`` file, times in seconds (end = (EFrm + 1) frames)."""
    rows = []
    for line in text.splitlines():
        m = _ROW.match(line)
        if not m:
            continue  # header, trailer, blank
        label = strip_variant(m.group(4))
        if is_non_speech(label):
            continue
        rows.append(Segment(round(int(m.group(1)) * FRAME, 4), round((int(m.group(2)) + 1) * FRAME, 4), label))
    return rows


def read_segfile(path: Path) -> list[Segment]:
    return parse_segfile(path.read_text(encoding="utf-8", errors="replace"))
