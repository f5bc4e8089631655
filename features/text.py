"""What the text encoder reads, and how its sub-tokens find the aligned words.

The encoder reads the transcript *as written* (case, punctuation, "?" and "!"), the way the
text models of both papers read IEMOCAP, not the aligner's lower-cased dictionary words.
IEMOCAP's markers (``[LAUGHTER]``, ``[BREATHING]``) are dropped (blanked, so character
positions do not move) or kept as text, per ``features.text.markers``.

Word-level pairing with speech stays exact: every aligned word gets the character span of
the transcript it came from (:func:`mger.alignment.normalize.word_spans`, matched to the segment
table's words in order), and each sub-token belongs to the words whose spans its character
offsets overlap (:func:`token_word_matrix`).  Punctuation glued to a word ("really?!")
belongs to that word; a digit string spelled out as several words ("1990") is shared by them.
"""

from __future__ import annotations

import difflib
from typing import Sequence

import torch

from mger.alignment.normalize import blank_markers, word_spans

Span = tuple[int, int]


def encoder_text(transcript: str, markers: str = "drop") -> str:
    """The transcript the encoder reads: as written; markers blanked (``drop``) or kept."""
    return transcript if markers == "keep" else blank_markers(transcript)


def aligned_word_spans(transcript: str, words: Sequence[str]) -> list[Span | None]:
    """The character span of each aligned word in ``transcript``.  The aligner's words are
    matched to the transcript's (:func:`mger.alignment.normalize.word_spans`) in order; where a
    segmentation spells a stretch otherwise (a corpus's own ``twenty-minute`` for ``twenty
    minute``, ``5`` for ``five``) its words share that stretch's characters; a word with no
    counterpart at all gets None."""
    spans = word_spans(transcript)
    if [s.word for s in spans] == list(words):
        return [(s.start, s.end) for s in spans]
    out: list[Span | None] = [None] * len(words)
    matcher = difflib.SequenceMatcher(a=[s.word for s in spans], b=list(words), autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            out[b0:b1] = [(s.start, s.end) for s in spans[a0:a1]]
        elif op == "replace" and a1 - a0 == b1 - b0:  # as many words: one for one
            out[b0:b1] = [(s.start, s.end) for s in spans[a0:a1]]
        elif op == "replace":
            out[b0:b1] = [(spans[a0].start, spans[a1 - 1].end)] * (b1 - b0)
    return out


def token_word_matrix(offsets: torch.Tensor, spans: Sequence[Span | None]) -> torch.Tensor:
    """(W, T) bool: token t overlaps word w's characters.  ``offsets`` (T, 2) are the
    tokenizer's character offsets; special tokens have empty offsets and belong to no word."""
    if not spans:
        return torch.zeros(0, len(offsets), dtype=torch.bool)
    bounds = torch.tensor([s if s is not None else (0, 0) for s in spans], dtype=torch.long)
    start, end = offsets[:, 0][None], offsets[:, 1][None]
    return (start < bounds[:, 1:2]) & (end > bounds[:, 0:1]) & (end > start)


def token_words(matrix: torch.Tensor) -> torch.Tensor:
    """(W, T) → (T,): each token's first word, -1 for tokens of no word (special tokens,
    dropped markers, free-standing punctuation)."""
    if matrix.shape[0] == 0:
        return torch.full((matrix.shape[1],), -1, dtype=torch.long)
    first = matrix.to(torch.int8).argmax(0)
    return torch.where(matrix.any(0), first, torch.full_like(first, -1))


def word_rows(tokens: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Mean of each word's tokens. tokens (T, D), matrix (W, T) → (W, D).  A word with no token
    (cut by ``max_length``, or not in the transcript) gets the mean of all word tokens."""
    weights = matrix.to(tokens.dtype)
    counts = weights.sum(1, keepdim=True)
    out = (weights @ tokens) / counts.clamp(min=1)
    missing = counts[:, 0] == 0
    if missing.any():
        used = matrix.any(0)
        out[missing] = tokens[used].mean(0) if used.any() else 0.0
    return out
