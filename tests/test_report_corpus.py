"""results.md's title and protocol sentence (mger.models.report_corpus), from the metrics a run records."""

from __future__ import annotations

import dataclasses

from mger.core.config import Params
from mger.core.config_corpus import SplitConfig
from mger.models.report_corpus import ONE_FOLD, protocol_sentence, results_title


def _metrics(split: SplitConfig, folds: dict[str, dict]) -> dict:
    return {"provenance": {"split": dataclasses.asdict(split)}, "folds": folds}


def test_a_cross_corpus_run_says_so_in_its_title() -> None:
    split = SplitConfig(protocol="cross_corpus", train_corpus="iemocap", test_corpus="crema_d")
    m = _metrics(split, {"1": {"protocol": "cross_corpus", "tested": ["crema_d"], "unused": {"ravdess": 40}}})
    params = Params()  # the params' own split is auto: the metrics say what the run was
    assert results_title(params, m) == "# Results (cross-corpus: trained on iemocap, tested on crema_d)"
    assert protocol_sentence(params, m) == (
        "Cross-corpus: trained and validated on iemocap, tested on every utterance of crema_d; one fold. "
        "Unused: ravdess (40 utterances)." + ONE_FOLD
    )


def test_within_corpus_runs_name_their_protocol_and_folds() -> None:
    params = Params()
    loso = _metrics(SplitConfig(), {str(k): {"protocol": "loso", "tested": [f"Ses0{k}"]} for k in (2, 1, 3)})
    assert results_title(params, loso) == "# Results"
    assert protocol_sentence(params, loso) == (
        "Leave-one-session-out over 3 folds. Fold k tests the k-th group: Ses01, Ses02, Ses03."
    )
    msp = _metrics(SplitConfig(), {"1": {"protocol": "predefined", "tested": ["Test1"], "unused": {"Test2": 7}}})
    assert protocol_sentence(params, msp) == (
        "The corpus's predefined partitions: one fold, testing Test1. Unused: Test2 (7 utterances)." + ONE_FOLD
    )
    old = {"folds": {"1": {}, "2": {}}}  # metrics of an older run: the params' protocol
    assert protocol_sentence(dataclasses.replace(params, split=SplitConfig(protocol="loso")), old).startswith(
        "Leave-one-session-out over 2 folds."
    )
    speakers = _metrics(SplitConfig(), {str(k): {"protocol": "speaker_folds", "tested": ["a", "b"]} for k in (1, 2, 3)})
    assert protocol_sentence(params, speakers) == (
        "Speaker-independent folds: 3 folds, each testing its own speakers (drawn by `split.seed`)."
    )
