"""Syllables from phones (maximal onset), labelled by pyphen; pyphen alone as the fallback.

From a word's ARPAbet phones: one syllable per vowel nucleus; the consonants between two
nuclei go to the next syllable's onset as far as they form a legal English onset
(:data:`LEGAL_ONSETS`), the rest close the previous syllable (maximal-onset principle).  A
syllable spans from its first phone's start to its last phone's end.

Labels: pyphen (``en_US``) splits the written word.  When it gives as many pieces as there
are phone syllables, piece *i* labels syllable *i*.  When the counts differ, the word's
letters are cut into as many chunks as there are syllables, in proportion to each
syllable's number of phones.  Words without phone detail (unknown words, fillers, word-only
alignments) are split into pyphen syllables whose spans divide the word's span in
proportion to letters.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from mger.alignment.base import Segment

VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())

LEGAL_ONSETS: frozenset[tuple[str, ...]] = frozenset(
    [(c,) for c in "P B T D K G F V TH DH S Z SH ZH HH CH JH M N L R W Y".split()]
    + [
        tuple(o.split())
        for o in (
            "P R",
            "P L",
            "B R",
            "B L",
            "T R",
            "D R",
            "K R",
            "K L",
            "G R",
            "G L",
            "F R",
            "F L",
            "TH R",
            "SH R",
            "T W",
            "D W",
            "K W",
            "G W",
            "S W",
            "TH W",
            "S P",
            "S T",
            "S K",
            "S M",
            "S N",
            "S L",
            "S F",
            "P Y",
            "B Y",
            "K Y",
            "G Y",
            "F Y",
            "V Y",
            "M Y",
            "HH Y",
            "N Y",
            "L Y",
            "S P R",
            "S P L",
            "S T R",
            "S K R",
            "S K W",
            "S K L",
            "S P Y",
            "S K Y",
            "S T Y",
        )
    ]
)


def _base(phone: str) -> str:
    return phone.rstrip("012")


def syllabify(phones: Sequence[str]) -> list[list[str]]:
    """Split one word's ARPAbet phones into syllables. A word without vowels is one syllable."""
    bases = [_base(p) for p in phones]
    nuclei = [i for i, p in enumerate(bases) if p in VOWELS]
    if not nuclei:
        return [list(phones)] if phones else []
    cuts = [0]
    for a, b in zip(nuclei, nuclei[1:]):
        cluster = bases[a + 1 : b]
        split = len(cluster)  # all consonants to the onset if legal, else fewer
        for k in range(len(cluster) + 1):
            if not cluster[k:] or tuple(cluster[k:]) in LEGAL_ONSETS:
                split = k
                break
        cuts.append(a + 1 + split)
    cuts.append(len(phones))
    return [list(phones[s:e]) for s, e in zip(cuts, cuts[1:])]


@lru_cache(maxsize=1)
def _pyphen():
    import pyphen

    return pyphen.Pyphen(lang="en_US")


def orthographic_syllables(word: str) -> list[str]:
    """pyphen's en_US hyphenation pieces of ``word`` (the word itself if it has none)."""
    if not word:
        return []
    return _pyphen().inserted(word, hyphen="\x00").split("\x00")


def _proportional_chunks(word: str, weights: Sequence[int]) -> list[str]:
    total = sum(weights)
    bounds = [round(len(word) * sum(weights[:i]) / total) for i in range(len(weights) + 1)]
    return [word[a:b] for a, b in zip(bounds, bounds[1:])]


def label_syllables(word: str, syllables: Sequence[Sequence[str]]) -> list[str]:
    """Orthographic labels for phone syllables (rule in the module docstring)."""
    pieces = orthographic_syllables(word)
    if len(pieces) == len(syllables):
        return pieces
    return _proportional_chunks(word, [len(s) for s in syllables])


def syllables_from_phones(word: Segment, word_index: int, phones: Sequence[Segment]) -> list[Segment]:
    """Syllable segments of one word from its timed phones."""
    groups = syllabify([p.label for p in phones])
    labels = label_syllables(word.label, groups)
    out, i = [], 0
    for group, label in zip(groups, labels):
        first, last = phones[i], phones[i + len(group) - 1]
        out.append(Segment(first.start, last.end, label, word_index))
        i += len(group)
    return out


def syllables_from_letters(word: Segment, word_index: int) -> list[Segment]:
    """Fallback without phones: pyphen pieces, the word's span split in proportion to letters."""
    pieces = orthographic_syllables(word.label) or [word.label]
    total = sum(max(1, len(p)) for p in pieces)
    out, t = [], word.start
    for piece in pieces:
        end = t + (word.end - word.start) * max(1, len(piece)) / total
        out.append(Segment(t, end, piece, word_index))
        t = end
    return out


def add_syllables(words: Sequence[Segment], phones: Sequence[Segment]) -> tuple[list[Segment], int]:
    """All syllables of an utterance; also the number of words that used the pyphen fallback."""
    by_word: dict[int, list[Segment]] = {}
    for p in phones:
        by_word.setdefault(p.word, []).append(p)
    out: list[Segment] = []
    fallbacks = 0
    for i, word in enumerate(words):
        if by_word.get(i):
            out += syllables_from_phones(word, i, by_word[i])
        else:
            out += syllables_from_letters(word, i)
            fallbacks += 1
    return out, fallbacks
