"""The one split module (mger.core.splits): every protocol's folds; disjointness, balance,
stability, seeds."""

from __future__ import annotations

import dataclasses
import random

import pytest

from mger.core.config_corpus import SplitConfig
from mger.core.config_loader import ConfigError
from mger.core.manifest import Utterance
from mger.core.splits import (
    DEFAULT_PROTOCOLS,
    SplitError,
    all_folds,
    check_folds,
    final_split,
    fold_split,
    resolve_protocol,
    validation_halves,
)


def _row(
    uid: str, speaker: str, gender: str, group: str = "", corpus: str = "iemocap", partition: str = ""
) -> Utterance:
    extras = {"session": int(group[3:])} if corpus == "iemocap" else {}
    return Utterance(
        uid, corpus, "/x.wav", 1.0, speaker, gender, "hi", "gold", "neu", "neu", group, partition, 3.0, 3.0, 3.0, extras
    )


def _utts(n_sessions: int = 5, speakers: str = "FM", per_speaker: int = 4, per_gender: int = 1) -> list[Utterance]:
    """An IEMOCAP-like manifest: groups Ses01.., ``per_gender`` speakers of each gender per session."""
    out = []
    for s in range(1, n_sessions + 1):
        for g in speakers:
            for j in range(per_gender):
                for k in range(per_speaker):
                    name = f"Ses0{s}_{g}" + (str(j) if per_gender > 1 else "")
                    out.append(_row(f"Ses0{s}{g}{j}_impro01_{g}{k:03d}", name, g, f"Ses0{s}"))
    return out


def _genderless(utts: list[Utterance], value: str = "") -> list[Utterance]:
    return [dataclasses.replace(u, gender=value) for u in utts]


@pytest.mark.parametrize("split_seed", [0, 1, 7])
def test_folds_are_session_and_speaker_disjoint(split_seed: int) -> None:
    utts = _utts()
    for fold, split in all_folds(utts, split_seed).items():
        assert sorted(split.train + split.val + split.test) == list(range(len(utts)))
        sessions = [{utts[i].group for i in part} for part in (split.train, split.val, split.test)]
        speakers = [{utts[i].speaker for i in part} for part in (split.train, split.val, split.test)]
        assert sessions[2] == {f"Ses0{fold}"} and f"Ses0{fold}" not in sessions[0] | sessions[1]
        assert split.groups == [f"Ses0{fold}"] and split.protocol == "loso"
        assert not (speakers[0] & speakers[1]) and not (speakers[0] & speakers[2]) and not (speakers[1] & speakers[2])
        assert speakers[1] == set(split.val_speakers) and split.speaker_disjoint and split.warning is None


@pytest.mark.parametrize("split_seed", range(8))
def test_validation_holds_a_woman_and_a_man_of_two_training_sessions(split_seed: int) -> None:
    utts = _utts()
    for fold, split in all_folds(utts, split_seed).items():
        chosen = [u for u in utts if u.speaker in split.val_speakers]
        assert len(split.val_speakers) == 2 and {u.gender for u in chosen} == {"F", "M"}
        assert len({u.group for u in chosen}) == 2 and f"Ses0{fold}" not in {u.group for u in chosen}
        assert split.validation == "one speaker per gender (F, M) from different training groups"


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
        assert len({u.group for u in utts if u.speaker in split.val_speakers}) == 2
        assert split.validation == "two speakers (no gender in the manifest) from different training groups"


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
    assert {utts[i].group for i in split.train + split.val} == {"Ses02"}
    assert split.warning == (
        "fold 1: validation is every fifth training utterance (the training data holds one speaker, "
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
        (_utts(), 9, "fold 9: split.protocol loso gives 5 fold"),
        (_utts(n_sessions=1), 1, r"1 group\(s\) \['Ses01'\]; leave-one-group-out needs at least two"),
    ],
)
def test_unsplittable_folds_are_refused(utts, fold: int, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        fold_split(utts, fold)


# The validation speakers of the base code (commit 850f05a, folds on the int session) on
# _utts(per_gender=2, per_speaker=2): loso on group must give the same, fold by fold.
BASE_VAL_SPEAKERS = {
    0: {1: ["Ses03_F1", "Ses05_M0"], 2: ["Ses03_F0", "Ses05_M0"], 3: ["Ses02_F0", "Ses05_M0"],
        4: ["Ses02_F1", "Ses03_M0"], 5: ["Ses01_M0", "Ses02_F0"]},
    1: {1: ["Ses02_F1", "Ses04_M1"], 2: ["Ses01_F0", "Ses03_M0"], 3: ["Ses04_F1", "Ses05_M1"],
        4: ["Ses02_F1", "Ses03_M1"], 5: ["Ses02_M1", "Ses04_F0"]},
    2: {1: ["Ses02_M1", "Ses04_F1"], 2: ["Ses01_M0", "Ses03_F0"], 3: ["Ses01_F1", "Ses02_M0"],
        4: ["Ses01_M1", "Ses05_F0"], 5: ["Ses03_M1", "Ses04_F1"]},
}  # fmt: skip


@pytest.mark.parametrize("split_seed", sorted(BASE_VAL_SPEAKERS))
def test_loso_on_group_gives_the_session_folds_of_the_base_code(split_seed: int) -> None:
    utts = _utts(per_gender=2, per_speaker=2)
    shuffled = utts[::-1]
    for rows in (utts, shuffled):
        folds = all_folds(rows, SplitConfig(seed=split_seed, protocol="loso"))
        assert {f: s.val_speakers for f, s in folds.items()} == BASE_VAL_SPEAKERS[split_seed]
        for fold, split in folds.items():
            assert {rows[i].extra("session") for i in split.test} == {fold}
    assert resolve_protocol(utts) == "loso"  # auto on IEMOCAP
    assert all_folds(utts, split_seed).keys() == all_folds(utts, SplitConfig(seed=split_seed)).keys()


def _partitioned(corpus: str, parts: dict[str, int], speakers: int = 6, shared: bool = False) -> list[Utterance]:
    """``parts``: partition → utterances; each partition's speakers (shared: the same names in
    every partition) cycle F/M over ``speakers`` names."""
    out = []
    for part, count in parts.items():
        for k in range(count):
            name = f"{corpus}_{'' if shared else part}s{k % speakers}"
            out.append(_row(f"{corpus}_{part}_{k:03d}", name, "FM"[k % 2], corpus=corpus, partition=part))
    return out


def test_predefined_maps_the_corpus_partitions_and_counts_the_unused() -> None:
    utts = _partitioned("msp_podcast", {"Train": 30, "Development": 8, "Test1": 10, "Test2": 5})
    random.Random(1).shuffle(utts)
    assert resolve_protocol(utts) == "predefined"
    folds = all_folds(utts, 4)
    assert list(folds) == [1]
    split = folds[1]
    parts = {p: {utts[i].partition for i in getattr(split, p)} for p in ("train", "val", "test")}
    assert parts == {"train": {"Train"}, "val": {"Development"}, "test": {"Test1"}}
    assert split.unused == {"Test2": 5} and split.groups == ["Test1"] and split.protocol == "predefined"
    assert split.validation == "the corpus's validation partition (Development)"
    final = final_split(utts, 4)
    assert final.ids(utts, "train") == split.ids(utts, "train") and final.test == []
    assert final.unused == {"Test2": 5, "test: Test1": 10}
    assert split.warning is None
    meld = _partitioned("meld", {"train": 20, "dev": 5, "test": 7}, shared=True)  # MELD's speakers recur
    split = fold_split(meld, 1, SplitConfig(protocol="predefined"))
    assert [len(split.train), len(split.val), len(split.test)] == [20, 5, 7] and not split.speaker_disjoint
    assert split.warning == (
        "fold 1: the corpus's partitions share 6 speaker(s) between training/validation and test "
        "(its own protocol: not speaker-independent)"
    )


def test_predefined_without_a_validation_partition_carves_it_from_training_speakers() -> None:
    utts = _partitioned("csv", {"train": 40, "test": 10}, speakers=8)
    split = fold_split(utts, 1, SplitConfig(protocol="predefined"))
    val_speakers = {utts[i].speaker for i in split.val}
    assert {utts[i].partition for i in split.val} == {"train"} and len(val_speakers) == 2
    assert {utts[i].gender for i in split.val} == {"F", "M"} and split.speaker_disjoint
    assert not val_speakers & {utts[i].speaker for i in split.train}


@pytest.mark.parametrize(
    "utts, message",
    [
        (_partitioned("crema_d", {"": 20}), "crema_d utterance crema_d__000 has no partition.*use split.protocol"),
        (_partitioned("meld", {"train": 20, "dev": 4}), r"partitions \(dev, train\) give no test partition"),
    ],
)
def test_predefined_on_a_corpus_without_its_partitions_is_one_line(utts, message: str) -> None:
    with pytest.raises(SplitError, match=message) as err:
        all_folds(utts, SplitConfig(protocol="predefined"))
    assert "\n" not in str(err.value)


def _actors(n: int = 12, per: int = 5, corpus: str = "crema_d", unknown: int = 0) -> list[Utterance]:
    """``n`` speakers alternating F/M (the last ``unknown`` without gender), ``per`` utterances each."""
    return [
        _row(f"{corpus}{a:02d}_{k}", f"{corpus}{a:02d}", "" if a >= n - unknown else "FM"[a % 2], corpus=corpus)
        for a in range(n)
        for k in range(per)
    ]


@pytest.mark.parametrize("n_folds, unknown", [(5, 0), (3, 0), (4, 3)])
def test_speaker_folds_are_speaker_independent_balanced_and_cover_every_speaker_once(
    n_folds: int, unknown: int
) -> None:
    utts = _actors(unknown=unknown)
    cfg = SplitConfig(seed=2, protocol="speaker_folds", n_folds=n_folds)
    folds = all_folds(utts, cfg)
    assert list(folds) == list(range(1, n_folds + 1))
    tested = [sp for s in folds.values() for sp in s.groups]
    assert sorted(tested) == sorted({u.speaker for u in utts})  # every speaker tested exactly once
    for split in folds.values():
        assert sorted(split.train + split.val + split.test) == list(range(len(utts)))
        parts = [{utts[i].speaker for i in p} for p in (split.train, split.val, split.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert parts[2] == set(split.groups) and split.speaker_disjoint
        assert {utts[i].gender for i in split.val} == {"F", "M"} and split.warning is None
    for gender in ("F", "M", ""):
        counts = [sum(utts[i].gender == gender for i in s.test) // 5 for s in folds.values()]
        assert max(counts) - min(counts) <= 1, (gender, counts)
    sizes = [len(s.groups) for s in folds.values()]
    assert max(sizes) - min(sizes) <= 1


def test_speaker_folds_depend_on_the_split_seed_not_the_row_order() -> None:
    utts = _actors(n=20)
    shuffled = utts[:]
    random.Random(5).shuffle(shuffled)

    def tested(rows: list[Utterance], seed: int) -> dict[int, tuple[list[str], list[str]]]:
        folds = all_folds(rows, SplitConfig(seed=seed, protocol="speaker_folds"))
        return {f: (s.groups, s.val_speakers) for f, s in folds.items()}

    assert tested(utts, 0) == tested(shuffled, 0)
    assert tested(utts, 0) != tested(utts, 1)
    assert resolve_protocol(utts) == "speaker_folds"  # auto on CREMA-D
    final = final_split(shuffled, SplitConfig(protocol="speaker_folds"))
    assert final.test == [] and len(final.val_speakers) == 2 and final.protocol == "speaker_folds"


def test_speaker_folds_need_a_speaker_per_fold() -> None:
    with pytest.raises(SplitError, match="split.n_folds is 5 but the manifest has 3 speaker"):
        all_folds(_actors(n=3), SplitConfig(protocol="speaker_folds"))


def test_cross_corpus_tests_on_the_test_corpus_only() -> None:
    utts = _utts(per_speaker=3) + _actors(n=6, corpus="ravdess") + _actors(n=4, corpus="crema_d")
    random.Random(2).shuffle(utts)
    with pytest.raises(SplitError, match="combines corpora with different default protocols"):
        all_folds(utts)
    cfg = SplitConfig(seed=1, protocol="cross_corpus", train_corpus="iemocap", test_corpus="ravdess")
    folds = all_folds(utts, cfg)
    assert list(folds) == [1]
    split = folds[1]
    assert {utts[i].corpus for i in split.test} == {"ravdess"} and len(split.test) == 30
    assert {utts[i].corpus for i in split.train + split.val} == {"iemocap"}
    assert len(split.train) + len(split.val) == 30 and split.unused == {"crema_d": 20}
    chosen = [u for u in utts if u.speaker in split.val_speakers]
    assert {u.gender for u in chosen} == {"F", "M"} and len({u.group for u in chosen}) == 2
    assert split.groups == ["ravdess"] and split.protocol == "cross_corpus"
    final = final_split(utts, cfg)
    assert final.val == split.val and final.train == split.train and final.test == []
    missing = SplitConfig(protocol="cross_corpus", train_corpus="iemocap", test_corpus="meld")
    with pytest.raises(SplitError, match="split.test_corpus: 'meld' is not in the manifest"):
        all_folds(utts, missing)


@pytest.mark.parametrize(
    "utts, cfg",
    [
        (_utts(), SplitConfig(seed=3)),
        (_partitioned("msp_podcast", {"Train": 20, "Development": 6, "Test1": 6}), SplitConfig(seed=3)),
        (_partitioned("csv", {"train": 30, "test": 6}), SplitConfig(protocol="predefined")),
        (_actors(), SplitConfig(seed=3)),
        (_utts() + _actors(), SplitConfig(protocol="cross_corpus", train_corpus="crema_d", test_corpus="iemocap")),
    ],
)
def test_validation_never_overlaps_test_in_any_protocol(utts: list[Utterance], cfg: SplitConfig) -> None:
    for split in all_folds(utts, cfg).values():
        assert split.val and split.test and not set(split.val) & set(split.test)
        assert not {utts[i].speaker for i in split.val} & {utts[i].speaker for i in split.test}
        assert not set(split.train) & set(split.test) and not set(split.train) & set(split.val)


def test_a_fold_the_protocol_lacks_is_refused_in_one_line() -> None:
    utts = _partitioned("meld", {"train": 20, "dev": 5, "test": 7})
    check_folds(utts, 0, [1], "finetune.folds")
    with pytest.raises(SplitError) as err:
        check_folds(utts, 0, [1, 2, 3], "finetune.folds")
    assert str(err.value) == (
        "finetune.folds: fold 2 does not exist: split.protocol predefined gives 1 fold(s) (1); set finetune.folds: [1]"
    )
    with pytest.raises(SplitError, match="fold 2: split.protocol predefined gives 1 fold"):
        fold_split(utts, 2, 0)


def test_loso_needs_a_group_on_every_row() -> None:
    utts = _actors(corpus="csv")
    with pytest.raises(SplitError, match="csv utterance csv00_0 has no group.*speaker_folds"):
        all_folds(utts, SplitConfig(protocol="loso"))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"protocol": "kfold"}, "split.protocol: 'kfold' is not a protocol"),
        ({"protocol": "cross_corpus", "train_corpus": "iemocap"}, "needs split.train_corpus and split.test_corpus"),
        ({"protocol": "cross_corpus", "train_corpus": "meld", "test_corpus": "meld"}, "both 'meld'"),
        ({"protocol": "loso", "test_corpus": "meld"}, "apply to cross_corpus only"),
        ({"protocol": "speaker_folds", "n_folds": 1}, "at least 2 folds"),
    ],
)
def test_split_config_refuses_bad_protocols(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SplitConfig(**fields)


def test_default_protocols_agree_with_the_readers_registry() -> None:
    from mger.corpus.readers import READERS, reader

    try:
        reader("iemocap")  # imports the built-in readers that exist
    except Exception:  # noqa: BLE001 - a reader not yet registered is checked where it is
        pass
    for name, entry in READERS.items():
        assert DEFAULT_PROTOCOLS.get(name, entry.protocol) == entry.protocol, name


def test_mger_finetune_refuses_a_fold_the_protocol_lacks_before_it_starts(tmp_path) -> None:
    from mger.core.manifest import write_manifest
    from mger.core.reporting import StageError
    from mger.pipeline.cli import _check_split

    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, _partitioned("msp_podcast", {"Train": 20, "Development": 6, "Test1": 6}))
    _check_split(str(manifest), SplitConfig(), [1], "finetune.folds")
    with pytest.raises(StageError) as err:
        _check_split(str(manifest), SplitConfig(), [1, 2, 3, 4, 5], "finetune.folds")
    assert str(err.value) == (
        f"{manifest}: finetune.folds: fold 2 does not exist: split.protocol predefined gives 1 fold(s) (1); "
        "set finetune.folds: [1]"
    )
    with pytest.raises(StageError, match=r"--fold 3: no such fold: split.protocol predefined gives 1 fold\(s\) \(1\)$"):
        _check_split(str(manifest), SplitConfig(), [3], "--fold")
    with pytest.raises(StageError, match="m.jsonl: split.protocol predefined: msp_podcast utterance .* no partition"):
        write_manifest(manifest, _actors(corpus="msp_podcast"))
        _check_split(str(manifest), SplitConfig(), [1], "finetune.folds")


@pytest.mark.parametrize(
    "utts, cfg",
    [
        (_utts(), SplitConfig()),
        (_actors(), SplitConfig()),
        (_partitioned("meld", {"train": 20, "dev": 5, "test": 7}, shared=True), SplitConfig()),
        (_utts() + _actors(), SplitConfig(protocol="cross_corpus", train_corpus="iemocap", test_corpus="crema_d")),
    ],
)
def test_leaked_finds_a_training_row_of_what_the_fold_tests(utts: list[Utterance], cfg: SplitConfig) -> None:
    for split in all_folds(utts, cfg).values():
        assert split.leaked(utts) == []
        bad = dataclasses.replace(split, train=split.train + split.test[:1])  # a stage's bug: a test row trains
        assert bad.leaked(utts) == split.test[:1]


def test_cross_corpus_names_a_reader_or_a_prepare_corpora_name() -> None:
    def combined(name: str, rows: list[Utterance]) -> list[Utterance]:  # as prepare.corpora writes them
        return [
            dataclasses.replace(
                u, utt_id=f"{name}-{u.utt_id}", speaker=f"{name}-{u.speaker}", group=f"{name}-{u.group}"
            )
            for u in rows
        ]

    utts = combined("a", _actors(n=6, corpus="csv")) + combined("b", _actors(n=4, corpus="csv"))
    split = fold_split(utts, 1, SplitConfig(protocol="cross_corpus", train_corpus="a", test_corpus="b"))
    assert {utts[i].utt_id[:2] for i in split.test} == {"b-"} and len(split.test) == 20
    assert {utts[i].utt_id[:2] for i in split.train + split.val} == {"a-"} and split.unused == {}
    assert split.leaked(utts) == []
    with pytest.raises(SplitError, match="both hold 20 utterance"):
        fold_split(utts, 1, SplitConfig(protocol="cross_corpus", train_corpus="csv", test_corpus="b"))


@pytest.mark.parametrize("genders", ["FM", "", "F"])
def test_validation_speakers_picks_as_listing_every_set_would(genders: str) -> None:
    """Speakers in groups of their own are picked arithmetically: the same set as listing them."""
    import itertools

    from mger.core.splits import Speaker, _pick, validation_speakers

    rng = random.Random(4)
    speakers = {f"s{k:02d}": Speaker(frozenset({f"g{k}"}), rng.choice(genders) if genders else "") for k in range(13)}
    names = sorted(speakers)
    by_gender = [[n for n in names if speakers[n].gender == g] for g in sorted(set(genders))]
    listed = list(itertools.product(*by_gender)) if len(by_gender) == 2 else list(itertools.combinations(names, 2))
    for fold in range(6):
        for seed in range(4):
            chosen, how = validation_speakers(speakers, fold, seed)
            assert chosen == sorted(_pick(listed, fold, seed)) and how.endswith("from different training groups")
