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


def segfile_problem(text: str) -> str | None:
    """Why ``text`` is not a well-formed segmentation file, in one line, or None.  Malformed: a
    non-blank line that is neither the header (``SFrm ...``), a row nor the ``Total score``
    trailer; an end frame before its start frame; no rows at all.  (:func:`parse_segfile`
    skips such lines; this check is for readers that must not.)"""
    rows = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("SFrm", "Total score")):
            continue
        m = _ROW.match(line)
        if not m:
            return f"line {lineno}: not a segment row (start frame, end frame, score, label): {stripped[:60]!r}"
        if int(m.group(2)) < int(m.group(1)):
            return f"line {lineno}: end frame {m.group(2)} before start frame {m.group(1)}"
        rows += 1
    return None if rows else "no segment rows"
