"""The one leave-one-session-out split: test, validation and training utterances of a fold.

Fold ``k`` tests session ``k``.  Its validation set is every utterance of one speaker of the
*training* sessions, drawn from the sorted training speakers by the fold and ``split.seed``
(:func:`validation_speaker`), never by a training seed: fine-tuning, every classifier seed,
the benchmarks and the tests of fold ``k`` see the same validation speaker, so a classifier
never early-stops or fits fusion weights on a speaker its fold's fine-tuned encoder learnt
from.  Train, validation and test are session- and speaker-disjoint; the test session is
never used to choose anything.

A corpus whose training sessions hold a single speaker (tiny test corpora) falls back to
every fifth training utterance for validation; :attr:`FoldSplit.val_speakers` then lists
that speaker, and :attr:`FoldSplit.speaker_disjoint` is ``False``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from mger.core.manifest import Utterance, sessions


class SplitError(ValueError):
    """A fold that cannot be split (no such session, too few utterances)."""


@dataclass(frozen=True)
class FoldSplit:
    """Indices into the utterance list a split was made from."""

    fold: int
    train: list[int]
    val: list[int]
    test: list[int]
    val_speakers: list[str]
    speaker_disjoint: bool

    def ids(self, utts: Sequence[Utterance], part: str) -> list[str]:
        """The utterance ids of ``part`` (``train``, ``val`` or ``test``)."""
        return [utts[i].utt_id for i in getattr(self, part)]


def validation_speaker(speakers: Sequence[str], fold: int, split_seed: int) -> str:
    """One of ``speakers`` chosen by (fold, split seed) alone: a stable hash, the same on any
    machine and Python version, independent of the order ``speakers`` come in."""
    ordered = sorted(set(speakers))
    if not ordered:
        raise SplitError(f"fold {fold}: no training speakers to validate on")
    digest = hashlib.sha256(f"mger-split:{split_seed}:{fold}".encode()).digest()
    return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]


def fold_split(utts: Sequence[Utterance], fold: int, split_seed: int = 0) -> FoldSplit:
    """Fold ``fold`` of ``utts``: test = session ``fold``, validation = one training speaker."""
    present = sessions(utts)
    if fold not in present:
        raise SplitError(f"fold {fold}: no session {fold} in the manifest (sessions: {present})")
    if len(present) < 2:
        raise SplitError(
            f"fold {fold}: leave-one-session-out needs at least two sessions, the manifest has "
            f"only session {present[0]}"
        )
    test = [i for i, u in enumerate(utts) if u.session == fold]
    rest = [i for i, u in enumerate(utts) if u.session != fold]
    speaker = validation_speaker([utts[i].speaker for i in rest], fold, split_seed)
    val = [i for i in rest if utts[i].speaker == speaker]
    train = [i for i in rest if utts[i].speaker != speaker]
    disjoint = bool(train)
    if not disjoint:  # one training speaker: every fifth training utterance validates
        val, train = rest[::5], [i for k, i in enumerate(rest) if k % 5]
    if not train or not val or not test:
        raise SplitError(
            f"fold {fold}: too few utterances for train/validation/test ({len(rest)} outside session "
            f"{fold}, {len(test)} in it)"
        )
    return FoldSplit(fold, train, val, test, sorted({utts[i].speaker for i in val}), disjoint)


def all_folds(utts: Sequence[Utterance], split_seed: int = 0) -> dict[int, FoldSplit]:
    """Every fold of ``utts`` (one per session), keyed by the test session."""
    return {fold: fold_split(utts, fold, split_seed) for fold in sessions(utts)}
