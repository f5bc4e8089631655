"""The one leave-one-session-out split (mger.core.splits): disjointness, balance, stability, seeds."""

from __future__ import annotations

import dataclasses
import random

import pytest

from mger.core.manifest import Utterance
from mger.core.splits import SplitError, all_folds, fold_split, validation_halves


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


def _genderless(utts: list[Utterance], value: str = "") -> list[Utterance]:
    return [dataclasses.replace(u, gender=value) for u in utts]


@pytest.mark.parametrize("split_seed", [0, 1, 7])
def test_folds_are_session_and_speaker_disjoint(split_seed: int) -> None:
    utts = _utts()
    for fold, split in all_folds(utts, split_seed).items():
        assert sorted(split.train + split.val + split.test) == list(range(len(utts)))
        sessions = [{utts[i].session for i in part} for part in (split.train, split.val, split.test)]
        speakers = [{utts[i].speaker for i in part} for part in (split.train, split.val, split.test)]
        assert sessions[2] == {fold} and fold not in sessions[0] | sessions[1]
        assert not (speakers[0] & speakers[1]) and not (speakers[0] & speakers[2]) and not (speakers[1] & speakers[2])
        assert speakers[1] == set(split.val_speakers) and split.speaker_disjoint and split.warning is None


@pytest.mark.parametrize("split_seed", range(8))
def test_validation_holds_a_woman_and_a_man_of_two_training_sessions(split_seed: int) -> None:
    utts = _utts()
    for fold, split in all_folds(utts, split_seed).items():
        chosen = [u for u in utts if u.speaker in split.val_speakers]
        assert len(split.val_speakers) == 2 and {u.gender for u in chosen} == {"F", "M"}
        assert len({u.session for u in chosen}) == 2 and fold not in {u.session for u in chosen}
        assert split.validation == "one speaker per gender (F, M) from different training sessions"


def test_validation_speakers_depend_on_fold_and_split_seed_only() -> None:
    utts = _utts()
    shuffled = utts[:]
    random.Random(3).shuffle(shuffled)
    for seed in (0, 5):
        for fold in range(1, 6):
            a, b = fold_split(utts, fold, seed), fold_split(shuffled, fold, seed)
            assert a.val_speakers == b.val_speakers  # order of the manifest does not matter
            assert sorted(a.ids(utts, "val")) == sorted(b.ids(shuffled, "val"))
            assert sorted(a.ids(utts, "train")) == sorted(b.ids(shuffled, "train"))
    chosen = {seed: [tuple(fold_split(utts, f, seed).val_speakers) for f in range(1, 6)] for seed in range(6)}
    assert len({tuple(v) for v in chosen.values()}) > 1  # the split seed does choose
    per_fold = {fold_split(utts, f, 0).val_speakers[0] for f in range(1, 6)}
    assert len(per_fold) > 1  # and so does the fold


@pytest.mark.parametrize("value", ["", "unknown"])
def test_without_gender_two_speakers_of_two_sessions_validate(value: str) -> None:
    utts = _genderless(_utts(), value)
    for fold, split in all_folds(utts, 3).items():
        assert len(split.val_speakers) == 2 and split.speaker_disjoint and split.warning is None
        assert len({u.session for u in utts if u.speaker in split.val_speakers}) == 2
        assert split.validation == "two speakers (no gender in the manifest) from different training sessions"


def test_too_few_speakers_shrink_validation_and_say_so() -> None:
    utts = _utts(n_sessions=2)  # fold 1 trains on Ses02_F and Ses02_M only: one validates, one trains
    split = fold_split(utts, 1)
    assert len(split.val_speakers) == 1 and split.speaker_disjoint and split.train
    assert split.warning is not None and "not balanced by gender" in split.warning and "fold 1" in split.warning
    one_gender = _utts(n_sessions=4, speakers="F")  # three training speakers: two validate
    split = fold_split(one_gender, 1)
    assert len(split.val_speakers) == 2 and "one gender" in split.validation and split.warning


def test_a_speaker_with_two_genders_is_refused() -> None:
    utts = _utts()
    utts[-1] = dataclasses.replace(utts[-1], gender="F")  # Ses05_M's last utterance
    with pytest.raises(SplitError, match="Ses05_M.*several genders"):
        fold_split(utts, 1)


def test_single_training_speaker_falls_back_to_every_fifth_utterance_and_warns() -> None:
    utts = _utts(n_sessions=2, speakers="F", per_speaker=10)
    split = fold_split(utts, 1)
    assert not split.speaker_disjoint and len(split.val) == 2 and len(split.train) == 8
    assert {utts[i].session for i in split.train + split.val} == {2}
    assert split.warning == (
        "fold 1: validation is every fifth training utterance (the training sessions hold one speaker, "
        "Ses02_F): not speaker-disjoint from training"
    )
    shuffled = utts[::-1]
    assert sorted(fold_split(shuffled, 1).ids(shuffled, "val")) == sorted(split.ids(utts, "val"))


def test_validation_halves_split_by_speaker_else_by_utterance_hash() -> None:
    utts = _utts(per_speaker=6)
    for split in all_folds(utts).values():
        first, second, how = validation_halves(utts, split)
        assert how == "2 halves by speaker" and sorted(first + second) == list(range(len(split.val)))
        assert {utts[split.val[p]].speaker for p in first}.isdisjoint({utts[split.val[p]].speaker for p in second})
    lone = _utts(n_sessions=2, speakers="F", per_speaker=40)
    split = fold_split(lone, 1)
    first, second, how = validation_halves(lone, split)
    assert how == "2 halves by utterance-id hash" and first and second
    shuffled = lone[::-1]
    again = fold_split(shuffled, 1)
    a2, _, _ = validation_halves(shuffled, again)
    assert sorted(shuffled[again.val[p]].utt_id for p in a2) == sorted(lone[split.val[p]].utt_id for p in first)


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
