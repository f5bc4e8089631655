"""The one leave-one-session-out split: test, validation and training utterances of a fold.

Fold ``k`` tests session ``k``.  Its validation set is every utterance of a few speakers of
the *training* sessions (:func:`validation_speakers`), chosen by the fold and ``split.seed``
alone (a stable hash, independent of the order utterances come in), never by a training
seed: fine-tuning, every classifier seed, the benchmarks and the tests of fold ``k`` see the
same validation speakers, so a classifier never early-stops or fits fusion weights on a
speaker its fold's fine-tuned encoder learnt from.  Train, validation and test are session-
and speaker-disjoint; the test session is never used to choose anything.

Balanced validation: where the manifest gives genders (``Utterance.gender``; empty or
``unknown`` counts as none), one speaker of each gender the training sessions hold, taken
from different training sessions where the corpus allows (IEMOCAP: one woman and one man of
two different sessions).  A corpus without genders validates on two speakers, again from two
sessions where possible.  At least one training speaker is always left to train on: with too
few speakers the validation set shrinks to fewer speakers (one gender then), and
:attr:`FoldSplit.warning` says so.

A corpus whose training sessions hold a single speaker (tiny test corpora) falls back to
every fifth training utterance for validation; :attr:`FoldSplit.val_speakers` then lists
that speaker, :attr:`FoldSplit.speaker_disjoint` is ``False`` and :attr:`FoldSplit.warning`
names the fold and the fallback (the stages print it and the metrics record it).

Statistics fitted on validation (late-fusion weights) are scored out of sample on the two
halves of :func:`validation_halves`.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

from mger.core.manifest import Utterance, groups


def _group_index(utts: Sequence[Utterance]) -> dict[str, int]:
    """group → fold number (1-based position among the sorted groups; IEMOCAP Ses01..Ses05 → 1..5)."""
    return {g: k for k, g in enumerate(groups(utts), 1)}


def sessions(utts: Sequence[Utterance]) -> list[int]:
    """The fold numbers present (one per group)."""
    return sorted(_group_index(utts).values())


class SplitError(ValueError):
    """A fold that cannot be split (no such session, too few utterances)."""


@dataclass(frozen=True)
class FoldSplit:
    """Indices into the utterance list a split was made from; ``validation``: how the
    validation set was chosen, in words (recorded in the metrics)."""

    fold: int
    train: list[int]
    val: list[int]
    test: list[int]
    val_speakers: list[str]
    speaker_disjoint: bool
    validation: str = ""
    warning: str | None = None

    def ids(self, utts: Sequence[Utterance], part: str) -> list[str]:
        """The utterance ids of ``part`` (``train``, ``val`` or ``test``)."""
        return [utts[i].utt_id for i in getattr(self, part)]


@dataclass(frozen=True)
class Speaker:
    """A training speaker: the sessions it speaks in and its gender (``""`` when unknown)."""

    sessions: frozenset[int]
    gender: str


_UNKNOWN_GENDERS = {"", "unknown", "u", "?", "none", "na", "n/a"}


def _gender(value: str) -> str:
    """The manifest's gender field, or ``""`` when it says nothing."""
    value = (value or "").strip()
    return "" if value.lower() in _UNKNOWN_GENDERS else value


def training_speakers(utts: Sequence[Utterance], indices: Sequence[int]) -> dict[str, Speaker]:
    """speaker → :class:`Speaker` over ``utts[indices]``; a speaker given two genders is refused."""
    found: dict[str, tuple[set[int], set[str]]] = {}
    index = _group_index(utts)
    for i in indices:
        sess, genders = found.setdefault(utts[i].speaker, (set(), set()))
        sess.add(index[utts[i].group])
        genders.add(_gender(utts[i].gender))
    out = {}
    for name, (sess, genders) in found.items():
        known = genders - {""}
        if len(known) > 1:
            raise SplitError(f"speaker {name!r} has several genders in the manifest ({', '.join(sorted(known))})")
        out[name] = Speaker(frozenset(sess), next(iter(known), ""))
    return out


def _pick(candidates: list[tuple[str, ...]], fold: int, split_seed: int) -> tuple[str, ...]:
    """One of the sorted ``candidates`` by a stable hash of (fold, split seed)."""
    digest = hashlib.sha256(f"mger-split:{split_seed}:{fold}".encode()).digest()
    return candidates[int.from_bytes(digest[:8], "big") % len(candidates)]


def _apart(group: tuple[str, ...], speakers: Mapping[str, Speaker]) -> bool:
    """Whether the speakers of ``group`` share no session."""
    seen: set[int] = set()
    for name in group:
        if seen & speakers[name].sessions:
            return False
        seen |= speakers[name].sessions
    return True


def validation_speakers(speakers: Mapping[str, Speaker], fold: int, split_seed: int) -> tuple[list[str], str]:
    """The validation speakers of ``fold`` among the training ``speakers`` and how they were
    chosen: one per gender (or two when no gender is known), from different sessions where
    possible, always leaving a training speaker; one group of all candidates, picked by a
    stable hash of (fold, split seed), so the input order never matters."""
    if not speakers:
        raise SplitError(f"fold {fold}: no training speakers to validate on")
    names = sorted(speakers)
    by_gender: dict[str, list[str]] = {}
    for name in names:
        if speakers[name].gender:
            by_gender.setdefault(speakers[name].gender, []).append(name)
    genders = sorted(by_gender)
    if len(genders) >= 2 and len(genders) < len(names):
        groups = list(itertools.product(*(by_gender[g] for g in genders)))
        how = f"one speaker per gender ({', '.join(genders)})"
    else:
        size = min(2, len(names) - 1) or 1
        groups = list(itertools.combinations(names, size))
        how = "two speakers" if size == 2 else "one speaker"
        if genders:
            how += f" (training sessions give {'one gender' if len(genders) == 1 else 'too few speakers'})"
        else:
            how += " (no gender in the manifest)"
    apart = [g for g in groups if _apart(g, speakers)]
    if len(groups[0]) > 1:
        how += " from different training sessions" if apart else " (sessions shared: no two sessions to draw from)"
    return sorted(_pick(apart or groups, fold, split_seed)), how


def fold_split(utts: Sequence[Utterance], fold: int, split_seed: int = 0) -> FoldSplit:
    """Fold ``fold`` of ``utts``: test = session ``fold``, validation = :func:`validation_speakers`."""
    present = sessions(utts)
    if fold not in present:
        raise SplitError(f"fold {fold}: no session {fold} in the manifest (sessions: {present})")
    if len(present) < 2:
        raise SplitError(
            f"fold {fold}: leave-one-session-out needs at least two sessions, the manifest has "
            f"only session {present[0]}"
        )
    index = _group_index(utts)
    test = [i for i, u in enumerate(utts) if index[u.group] == fold]
    rest = [i for i, u in enumerate(utts) if index[u.group] != fold]
    speakers = training_speakers(utts, rest)
    chosen, how = validation_speakers(speakers, fold, split_seed)
    val = [i for i in rest if utts[i].speaker in chosen]
    train = [i for i in rest if utts[i].speaker not in chosen]
    disjoint = bool(train)
    warning = None
    if not disjoint:  # one training speaker: every fifth training utterance validates
        rest = sorted(rest, key=lambda i: utts[i].utt_id)  # independent of the manifest's order
        val, train = rest[::5], [i for k, i in enumerate(rest) if k % 5]
        how = f"every fifth training utterance (the training sessions hold one speaker, {chosen[0]})"
        warning = f"fold {fold}: validation is {how}: not speaker-disjoint from training"
    elif "per gender" not in how and any(s.gender for s in speakers.values()):
        warning = f"fold {fold}: validation is {how}: not balanced by gender"
    if not train or not val or not test:
        raise SplitError(
            f"fold {fold}: too few utterances for train/validation/test ({len(rest)} outside session "
            f"{fold}, {len(test)} in it)"
        )
    val_speakers = sorted({utts[i].speaker for i in val})
    return FoldSplit(fold, sorted(train), sorted(val), test, val_speakers, disjoint, how, warning)


def all_folds(utts: Sequence[Utterance], split_seed: int = 0) -> dict[int, FoldSplit]:
    """Every fold of ``utts`` (one per session), keyed by the test session."""
    return {fold: fold_split(utts, fold, split_seed) for fold in sessions(utts)}


def validation_halves(utts: Sequence[Utterance], split: FoldSplit) -> tuple[list[int], list[int], str]:
    """Two non-empty halves of ``split.val`` (positions into it) for cross-fitting whatever is
    fitted on validation, and how they were made: by validation speaker when there are two or
    more (alternating over the sorted speakers), else by a stable hash of the utterance id
    (sorted ids alternating when the hash leaves a half empty).  Order-independent."""
    ids = [utts[i].utt_id for i in split.val]
    speakers = sorted({utts[i].speaker for i in split.val})
    if len(speakers) >= 2:
        side = {s: k % 2 for k, s in enumerate(speakers)}
        first = [p for p, i in enumerate(split.val) if side[utts[i].speaker] == 0]
        how = "2 halves by speaker"
    else:
        first = [p for p, u in enumerate(ids) if hashlib.sha256(f"mger-half:{u}".encode()).digest()[0] % 2 == 0]
        how = "2 halves by utterance-id hash"
        if not first or len(first) == len(ids):
            order = sorted(range(len(ids)), key=ids.__getitem__)
            first = sorted(order[::2])
    if not first or len(first) == len(ids):
        raise SplitError(f"fold {split.fold}: {len(ids)} validation utterance(s) cannot be cross-fitted in two halves")
    taken = set(first)
    second = [p for p in range(len(ids)) if p not in taken]
    return first, second, how


def final_split(utts: Sequence[Utterance], split_seed: int = 0) -> FoldSplit:
    """The final system's split (``mger export`` without ``--fold``): every session trains, and
    validation (early stopping, late-fusion weights) is carved as in the folds, by
    :func:`validation_speakers` over all speakers with fold ``0`` (no session is tested);
    one speaker only: every fifth utterance.  ``test`` is empty."""
    if not utts:
        raise SplitError("final split: no utterances")
    rest = list(range(len(utts)))
    speakers = training_speakers(utts, rest)
    chosen, how = validation_speakers(speakers, 0, split_seed)
    val = [i for i in rest if utts[i].speaker in chosen]
    train = [i for i in rest if utts[i].speaker not in chosen]
    disjoint, warning = bool(train), None
    if not disjoint:
        rest = sorted(rest, key=lambda i: utts[i].utt_id)
        val, train = rest[::5], [i for k, i in enumerate(rest) if k % 5]
        how = f"every fifth utterance (the corpus holds one speaker, {chosen[0]})"
        warning = f"final split: validation is {how}: not speaker-disjoint from training"
    if not train or not val:
        raise SplitError(f"final split: too few utterances for train/validation ({len(utts)})")
    return FoldSplit(0, sorted(train), sorted(val), [], sorted({utts[i].speaker for i in val}), disjoint, how, warning)
