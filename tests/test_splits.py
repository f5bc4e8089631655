"""The one leave-one-session-out split (mger.core.splits): disjointness, stability, seeds."""

from __future__ import annotations

import random

import pytest

from mger.core.manifest import Utterance
from mger.core.splits import SplitError, all_folds, fold_split, validation_speaker


def _utts(n_sessions: int = 5, speakers: str = "FM", per_speaker: int = 4) -> list[Utterance]:
    out = []
    for s in range(1, n_sessions + 1):
        for g in speakers:
            for k in range(per_speaker):
                uid = f"Ses0{s}F_impro01_{g}{k:03d}"
                out.append(
                    Utterance(
                        uid, s, uid[:14], f"Ses0{s}_{g}", g, True, "/x.wav", 1.0, "hi", "neu", "neu", 3.0, 3.0, 3.0
                    )
                )
    return out


@pytest.mark.parametrize("split_seed", [0, 1, 7])
def test_folds_are_session_and_speaker_disjoint(split_seed: int) -> None:
    utts = _utts()
    for fold, split in all_folds(utts, split_seed).items():
        assert sorted(split.train + split.val + split.test) == list(range(len(utts)))
        sessions = [{utts[i].session for i in part} for part in (split.train, split.val, split.test)]
        speakers = [{utts[i].speaker for i in part} for part in (split.train, split.val, split.test)]
        assert sessions[2] == {fold} and fold not in sessions[0] | sessions[1]
        assert not (speakers[0] & speakers[1]) and not (speakers[0] & speakers[2]) and not (speakers[1] & speakers[2])
        assert speakers[1] == set(split.val_speakers) and len(split.val_speakers) == 1 and split.speaker_disjoint


def test_validation_speaker_depends_on_fold_and_split_seed_only() -> None:
    utts = _utts()
    shuffled = utts[:]
    random.Random(3).shuffle(shuffled)
    for fold in range(1, 6):
        a, b = fold_split(utts, fold, 0), fold_split(shuffled, fold, 0)
        assert a.val_speakers == b.val_speakers  # order of the manifest does not matter
        assert sorted(a.ids(utts, "val")) == sorted(b.ids(shuffled, "val"))
    chosen = {seed: [fold_split(utts, f, seed).val_speakers[0] for f in range(1, 6)] for seed in range(6)}
    assert len({tuple(v) for v in chosen.values()}) > 1  # the split seed does choose
    assert validation_speaker(["b", "a", "c"], 2, 5) == validation_speaker(["c", "b", "a", "a"], 2, 5)


def test_single_training_speaker_falls_back_to_every_fifth_utterance() -> None:
    utts = _utts(n_sessions=2, speakers="F", per_speaker=10)
    split = fold_split(utts, 1)
    assert not split.speaker_disjoint and len(split.val) == 2 and len(split.train) == 8
    assert {utts[i].session for i in split.train + split.val} == {2}


@pytest.mark.parametrize(
    "utts, fold, message",
    [
        (_utts(), 9, "no session 9"),
        (_utts(n_sessions=1), 1, "at least two sessions"),
    ],
)
def test_unsplittable_folds_are_refused(utts, fold: int, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        fold_split(utts, fold)
