"""The statistics of the results table checked against simulations with a known truth
(mger.models.stats): the paired test under a true null with correlated seeds, its power, Holm's
adjustment, p formatting and the three intervals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mger.models.predictions import Predictions
from mger.models.stats import (
    bootstrap_ci,
    by_improvised,
    clusters_of,
    fold_t_interval,
    format_p,
    holm,
    paired_interval,
    paired_test,
    sd,
    summarize,
)
from tests.builders import iemocap_row

CLASSES = ["ang", "hap", "neu", "sad"]


def _system(
    correct: np.ndarray, labels: np.ndarray, utt: np.ndarray, fold: np.ndarray, seed: np.ndarray
) -> Predictions:
    pred = np.where(correct, labels, (labels + 1) % 4)
    return Predictions(CLASSES, utt, fold, seed, labels, pred, np.eye(4)[pred])


def _pair(
    rng: np.random.Generator, seeds: int = 3, n_folds: int = 5, per_fold: int = 60, effect: float = 0.0
) -> tuple[Predictions, Predictions]:
    """Two systems on the same utterances. Each utterance has a propensity of being recognised
    (shared by both systems: hard utterances are hard for both). B is fixed across seeds, like a
    probe: one draw per utterance. A draws its own per-utterance outcome once and each seed
    redraws 20% of utterances (per-seed noise), so A's seeds are strongly correlated. Both are
    right with the same probability per utterance unless ``effect`` raises A's propensity."""
    n = n_folds * per_fold
    labels = rng.integers(0, 4, n)
    propensity = rng.beta(2.0, 1.0, n)
    b = rng.random(n) < propensity
    better = np.clip(propensity + effect, 0, 1)
    base = rng.random(n) < better
    a = [np.where(rng.random(n) < 0.2, rng.random(n) < better, base) for _ in range(seeds)]
    utt, fold = np.array([f"u{i:04d}" for i in range(n)]), np.arange(n) % n_folds
    seed = np.repeat(np.arange(seeds), n)
    rows = (np.tile(labels, seeds), np.tile(utt, seeds), np.tile(fold, seeds), seed)
    return _system(np.concatenate(a), *rows), _system(np.tile(b, seeds), *rows)


def test_paired_test_holds_its_level_under_a_true_null_with_correlated_seeds() -> None:
    """300 simulated data sets, three correlated seeds, no real difference: the test rejects at
    0.05 in about 5% of them (here 9 of 300). The earlier test (a fresh swap per (fold, seed) cell)
    rejected in 58 of these 300 data sets (19.3%; 21.4% over 1,000 data sets of another generator
    seed, where this test rejected 4.7%); with one seed both rejected in about 7% (22 of 300)."""
    rng = np.random.default_rng(2029)
    p = np.array([paired_test(*_pair(rng), n_perm=999)["ua"]["p"] for _ in range(300)])
    rejected = float(np.mean(p < 0.05))
    assert rejected <= 0.07, rejected
    assert rejected >= 0.02  # not a test that never rejects
    assert 0.4 < float(np.mean(p)) < 0.6  # p is about uniform under the null


def test_paired_test_finds_a_real_difference() -> None:
    rng = np.random.default_rng(7)
    found = [paired_test(*_pair(rng, effect=0.15), n_perm=999)["ua"] for _ in range(30)]
    assert np.mean([f["p"] < 0.05 for f in found]) >= 0.9
    assert all(f["delta"] > 0 for f in found)
    clear = paired_test(*_pair(rng, effect=0.3))["ua"]
    assert clear["p"] == pytest.approx(1 / 10_001) and format_p(clear["p"]) == "< 0.001"


def test_three_copies_of_one_seed_give_the_p_of_one_seed() -> None:
    a, b = _pair(np.random.default_rng(2), seeds=1, effect=0.02)
    one = paired_test(a, b)

    def copies(p: Predictions) -> Predictions:
        return Predictions.concat(
            CLASSES,
            [Predictions(CLASSES, p.utt_ids, p.fold, p.seed * 0 + s, p.label, p.pred, p.probs) for s in range(3)],
        )

    three = paired_test(copies(a), copies(b))
    for m in ("wa", "ua"):
        assert three[m]["delta"] == pytest.approx(one[m]["delta"], abs=1e-12)
        assert three[m]["p"] == pytest.approx(one[m]["p"], abs=1e-12)
    # the earlier test (a fresh swap per seed) gave p 0.050 for one seed and 0.001 for three copies of it
    assert 0.03 < one["ua"]["p"] < 0.08


def test_paired_delta_is_the_difference_of_the_table_figures() -> None:
    """Δ of the test equals the difference of summarize's fold-averaged means, also where a class
    is absent from a fold's test utterances."""
    a, b = _pair(np.random.default_rng(4), seeds=2, n_folds=3, per_fold=30, effect=0.05)
    keep = ~((a.fold == 1) & (a.label == 3))  # no 'sad' in fold 1
    a, b = a.where(keep), b.where(keep)
    test, sa, sb = paired_test(a, b, n_perm=99), summarize(a, n_boot=10), summarize(b, n_boot=10)
    for m in ("wa", "ua"):
        assert test[m]["delta"] == pytest.approx(sa[m]["mean"] - sb[m]["mean"], abs=1e-12)
    assert paired_test(a, a, n_perm=99)["ua"] == {"delta": 0.0, "p": 1.0}
    assert paired_test(a, b, n_perm=500) == paired_test(a, b, n_perm=500)  # a fixed generator


def test_paired_interval_covers_a_true_difference_and_shrinks_to_zero_for_a_copy() -> None:
    """The bootstrap interval of Δ holds the observed Δ, excludes 0 for a clear difference, is
    [0, 0] for a system against itself, and covers the true Δ of simulated pairs at about its level."""
    rng = np.random.default_rng(11)
    a, b = _pair(rng, seeds=3, effect=0.3)
    ci, delta = paired_interval(a, b)["ua"], paired_test(a, b, n_perm=99)["ua"]["delta"]
    assert ci[0] < delta < ci[1] and ci[0] > 0
    assert paired_interval(a, a) == {"wa": [0.0, 0.0], "ua": [0.0, 0.0]}
    covered = []
    for _ in range(60):  # true null: no difference between the systems in expectation
        x, y = _pair(rng, seeds=1, effect=0.0)
        lo, hi = paired_interval(x, y, n_boot=300)["ua"]
        covered.append(lo <= 0.0 <= hi)
    assert np.mean(covered) >= 0.85


def test_holm_adjusts_known_values() -> None:
    # sorted .005 .01 .03 .04 → ×4 ×3 ×2 ×1 = .02 .03 .06 .04 → monotone .02 .03 .06 .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.2]) == [pytest.approx(0.5), None, pytest.approx(0.4)]  # None does not count
    assert holm([0.6, 0.7]) == [1.0, 1.0] and holm([]) == [] and holm([0.04]) == [0.04]


def test_format_p_never_prints_zero() -> None:
    assert [format_p(x) for x in (1 / 10_001, 0.00099, 0.001, 0.0123, 1.0)] == [
        "< 0.001",
        "< 0.001",
        "0.001",
        "0.012",
        "1.000",
    ]


def test_fold_interval_and_sd_use_ddof_1() -> None:
    assert sd([0.5, 0.6, 0.7]) == pytest.approx(0.1) and sd([0.4]) == 0.0
    lo, hi = fold_t_interval([0.5, 0.6, 0.7])
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t(0.975, 2)
    assert (lo, hi) == pytest.approx((0.6 - half, 0.6 + half))
    assert fold_t_interval([0.5]) is None


def _dialogue_predictions(rng: np.random.Generator, dialogues: int = 8, per: int = 20) -> Predictions:
    """2 folds; within a dialogue, whether the system is right depends strongly on the dialogue."""
    parts = []
    for fold in (1, 2):
        skill = np.repeat(rng.beta(2, 2, dialogues), per)
        n = dialogues * per
        labels = np.arange(n) % 4
        utt = np.array([f"Ses0{fold}_d{i // per:02d}_{i:03d}" for i in range(n)])
        parts.append(_system(rng.random(n) < skill, labels, utt, np.full(n, fold), np.zeros(n, int)))
    return Predictions.concat(CLASSES, parts)


def test_clustered_bootstrap_widens_with_dialogue_effects() -> None:
    p = _dialogue_predictions(np.random.default_rng(5))
    utts = [iemocap_row(u, 1, u[:9], u[:5], "F", True, "", 1.0, "", "neu", "neu", 3, 3, 3) for u in p.utt_ids.tolist()]
    groups, unit = clusters_of(utts)
    assert unit == "dialogue" and len(set(groups.values())) == 16
    utterance, dialogue = bootstrap_ci(p), bootstrap_ci(p, groups=groups)
    assert np.diff(dialogue["ua"])[0] > 1.5 * np.diff(utterance["ua"])[0]
    singletons = bootstrap_ci(p, groups={u: u for u in p.utt_ids.tolist()})
    assert singletons == utterance  # one utterance per cluster: the utterance bootstrap itself
    stats = summarize(p, groups=groups, unit=unit)
    assert stats["ua"]["ci95_clustered"] == dialogue["ua"] and stats["clustered_by"] == "dialogue"
    assert stats["ua"]["ci95_folds"][0] < stats["ua"]["mean"] < stats["ua"]["ci95_folds"][1]
    no_dialog = [dataclasses.replace(u, corpus="csv", extras={}) for u in utts]  # a corpus without dialogues
    assert clusters_of(no_dialog) == ({u.utt_id: f"speaker:{u.speaker}" for u in utts}, "speaker")
    # improvised vs scripted: IEMOCAP rows only (extras.improvised); none for another corpus
    kinds = by_improvised(p, utts)
    assert list(kinds) == ["improvised"] and kinds["improvised"]["n"] == len(utts)
    assert by_improvised(p, no_dialog) == {}
    with pytest.raises(ValueError, match="utterance Ses01_d00_000 has no cluster"):
        bootstrap_ci(p, groups={})
