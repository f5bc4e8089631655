"""Word onsets corrected against the signal: stop closures and releases, sound onsets, pauses.

The aligner's 10 ms frames and its optional silences place some onsets badly, at a gap (a
stretch labelled silence) before a word or after a word-final stop:

* **stop closures**: the silent closure of a word-initial stop (P T K B D G CH JH) belongs
  to the word, but the decoder often labels it as an inter-word silence and starts the word
  at the burst.  On the demo corpus, stop-initial words after a gap of 40-70 ms came out
  +42 ms late (signed median; 71% within 50 ms).  A gap of at most :data:`MAX_CLOSURE`
  before such a word is given back to it (its onset moves to the previous word's end);
  longer gaps are real pauses (the energy check cuts those from 80 ms up);
* **onsets after silence** (the first word, or any word after a gap): the decoder starts
  them 15-30 ms early (vowels, approximants, nasals) because its window hears the word
  before the word fills it.  The onset moves to the first 5 ms frame, within
  :data:`SNAP_RANGE`, whose 10 ms energy is :data:`SNAP_DB` above the utterance's floor
  (never before the previous word's end, never past the first phone);
* **closures and releases of word-final stops**: with no gap between a word ending in a stop
  and the next word ("at the", "about three", "is this"), the decoder
  gives the stop's silent closure, and often its release (the burst and aspiration), to the
  next word (its DH / TH / vowel model fits them better than the stop's) and starts that
  word 50-90 ms early.  Where the next word's first phone holds [closure] release, then a
  dip to within ``pauses.QUIET_DB`` of the floor, the word starts at the dip (eSpeak's "at
  the": 40 ms closure, 60 ms aspiration, 5-10 ms dip, DH; before a stop-initial word the
  dip is that word's own closure, "scored twice").  The same holds after a gap of at most
  :data:`MAX_CLOSURE` (the closure labelled silence, the release given to the word; after the
  rules above placed its onset).  Otherwise, for a word that does not
  start with a stop, where its start is quiet (not :data:`CLOSURE_DB` above the floor),
  its onset moves forward to the first fine frame that is, within :data:`SNAP_RANGE` (never
  past its first phone), and the previous word's end moves with the onset.  That threshold
  was picked on the demo corpus (20/22.5/25/27.5/30 dB: 61/59/55/60/67 of its 4,199 onsets
  over 50 ms, 71 without the rule; docs/alignment.md has the later figures).

Before all three, **pauses inside phones** are taken out: where the decoder joined two words
(no gap) but the phones on either side of the boundary (the last of one word, the first of the
next) hold a quiet run (fine frames within ``pauses.QUIET_DB`` of the floor) as long as the
energy check's pauses (``pauses.MIN_PAUSE_FRAMES`` 10 ms frames), strictly inside them, that run
becomes a gap between the words: a phone does not fall silent for 80 ms and resume.  This
happens where a short pause was not cut and the alignment without optional silences had to
give it to a word ("Uh, could", "FBI and"), and the rules above then place the onset after it.

Other words inside continuous speech are left alone: there, per-context offsets learned
on the demo corpus lowered the median but cost within-50 ms on the demo corpus (tried).
Every threshold here was chosen on the demo corpus and judged on the held-out set with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mger.alignment import pauses
from mger.alignment.base import Segment
from mger.core.audio import SAMPLE_RATE

STOPS = frozenset({"P", "T", "K", "B", "D", "G", "CH", "JH"})
MAX_CLOSURE = 0.075  # s: a gap this short before a stop-initial word is its closure, not a pause
SNAP_HOP = 80  # samples (5 ms at 16 kHz) between fine energy frames
SNAP_WINDOW = 160  # samples (10 ms) per fine energy frame
SNAP_DB = 20.0  # a fine frame this far above the floor (5th percentile) is sound
SNAP_RANGE = 0.03  # s: onsets move at most this far
CLOSURE_DB = 25.0  # after a word-final stop, a fine frame not this far above the floor is still its closure
_EPS = 1e-9


def fine_db(audio: np.ndarray, hop: int = SNAP_HOP, window: int = SNAP_WINDOW) -> np.ndarray:
    """Energy (dB) of ``window``-sample frames every ``hop`` samples."""
    n = len(audio) // hop
    padded = np.concatenate([np.asarray(audio, np.float64).reshape(-1), np.zeros(window)])
    frames = padded[np.arange(n)[:, None] * hop + np.arange(window)[None, :]]
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def _quiet_run(quiet: np.ndarray, lo: int, hi: int, min_len: int) -> tuple[int, int] | None:
    """The longest run of ``quiet`` frames strictly inside ``[lo, hi)`` (touching neither end), at least ``min_len``."""
    best = None
    f = lo
    while f < hi:
        if not quiet[f]:
            f += 1
            continue
        g = f
        while g < hi and quiet[g]:
            g += 1
        if f > lo and g < hi and g - f >= min_len and (best is None or g - f > best[1] - best[0]):
            best = (f, g)
        f = g
    return best


def _release_end(quiet: np.ndarray, f0: int, last: int) -> int | None:
    """From ``f0``: quiet frames (a closure) if any, then sound (the release), then the first quiet frame
    (the dip before the next word) at or before ``last``; None without such a dip."""
    f = f0
    while f <= last and quiet[f]:
        f += 1
    g = f
    while g <= last and not quiet[g]:
        g += 1
    return g if f < g <= last else None


def split_pauses(
    words: list[Segment], phones: list[Segment], db: np.ndarray, floor: float, hop_s: float
) -> tuple[list[Segment], list[Segment]]:
    """A pause held inside the phones at a boundary without a gap becomes the gap (see the module docstring)."""
    quiet = db <= floor + pauses.QUIET_DB
    min_len = int(round(pauses.MIN_PAUSE_FRAMES * pauses.HOP / SAMPLE_RATE / hop_s))
    first_phone: dict[int, int] = {}
    last_phone: dict[int, int] = {}
    for k, p in enumerate(phones):
        first_phone.setdefault(p.word, k)
        last_phone[p.word] = k
    for i in range(1, len(words)):
        if i not in first_phone or i - 1 not in last_phone or abs(words[i].start - words[i - 1].end) > _EPS:
            continue
        j, k = last_phone[i - 1], first_phone[i]
        lo, hi = int(round(phones[j].start / hop_s)), min(int(round(phones[k].end / hop_s)), len(db))
        run = _quiet_run(quiet, lo, hi, min_len)
        if run is None:
            continue
        start, end = run[0] * hop_s, run[1] * hop_s
        if start <= phones[j].start + _EPS or end >= phones[k].end - _EPS:
            continue
        words[i - 1] = dataclasses.replace(words[i - 1], end=start)
        phones[j] = dataclasses.replace(phones[j], end=start)
        words[i] = dataclasses.replace(words[i], start=end)
        phones[k] = dataclasses.replace(phones[k], start=end)
    return words, phones


def refine_onsets(
    words: Sequence[Segment], phones: Sequence[Segment], audio: np.ndarray, sample_rate: int = 16000
) -> tuple[list[Segment], list[Segment]]:
    """Words and phones with the onsets after gaps corrected (see the module docstring).

    Only a word's start and its first phone's start move (and, for a word-final stop's closure, the
    previous word's end and its last phone's end); a word without phones is left alone.
    """
    words, phones = list(words), list(phones)
    db = fine_db(audio)
    floor = float(np.percentile(db, 5)) if len(db) else 0.0
    hop_s = SNAP_HOP / sample_rate
    words, phones = split_pauses(words, phones, db, floor, hop_s)
    first_phone: dict[int, int] = {}
    last_phone: dict[int, int] = {}
    for k, p in enumerate(phones):
        first_phone.setdefault(p.word, k)
        last_phone[p.word] = k
    for i, w in enumerate(words):
        if i not in first_phone:
            continue
        k = first_phone[i]
        prev_end = words[i - 1].end if i > 0 else None
        gap = w.start - prev_end if prev_end is not None else None
        new = w.start
        if phones[k].label in STOPS and gap is not None and _EPS < gap <= MAX_CLOSURE + _EPS:
            new = prev_end
        elif gap is None or gap > _EPS:
            lo = max(w.start - SNAP_RANGE, prev_end if prev_end is not None else 0.0)
            hi = min(w.start + SNAP_RANGE, phones[k].end - 0.01)
            loud = [
                f
                for f in range(max(int(np.ceil(lo / hop_s)), 0), min(int(np.floor(hi / hop_s)), len(db) - 1) + 1)
                if db[f] > floor + SNAP_DB
            ]
            if loud:
                new = max(loud[0] * hop_s, lo)
        elif (
            i - 1 in last_phone
            and phones[last_phone[i - 1]].label in STOPS
            and 0 <= (f0 := int(round(w.start / hop_s))) < len(db)
        ):
            # no gap, after a word-final stop: its closure and release belong to it (module docstring)
            last = min(int((phones[k].end - 0.01) / hop_s + _EPS), len(db) - 1)
            f = _release_end(db <= floor + pauses.QUIET_DB, f0, last)
            if f is None and phones[k].label not in STOPS and db[f0] <= floor + CLOSURE_DB:
                hi = min(int((w.start + SNAP_RANGE) / hop_s + _EPS), last)
                f = next((f for f in range(f0 + 1, hi + 1) if db[f] > floor + CLOSURE_DB), None)
            if f is not None:
                new = f * hop_s
                j = last_phone[i - 1]
                words[i - 1] = dataclasses.replace(words[i - 1], end=new)
                phones[j] = dataclasses.replace(phones[j], end=new)
        if (
            gap is not None
            and _EPS < gap <= MAX_CLOSURE + _EPS
            and i - 1 in last_phone
            and phones[last_phone[i - 1]].label in STOPS
        ):
            # a short gap after a word-final stop (its closure): the release that follows is the stop's too
            last = min(int((phones[k].end - 0.01) / hop_s + _EPS), len(db) - 1)
            f = _release_end(db <= floor + pauses.QUIET_DB, int(round(new / hop_s)), last)
            if f is not None and f * hop_s > new:
                new = f * hop_s
                j = last_phone[i - 1]
                words[i - 1] = dataclasses.replace(words[i - 1], end=new)
                phones[j] = dataclasses.replace(phones[j], end=new)
        if new != w.start:
            words[i] = dataclasses.replace(w, start=new)
            phones[k] = dataclasses.replace(phones[k], start=new)
    return words, phones
