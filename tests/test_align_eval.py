"""align-eval's signed errors, per-voice and per-class breakdowns and worst words, on hand-made truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mger.alignment.base import Segment
from mger.alignment.evaluate import evaluate, read_voices, word_errors
from mger.alignment.word_classes import group_class, word_class

TRUTH = [
    {"word": "in the", "start": 0.10, "end": 0.30},
    {"word": "um,", "start": 0.35, "end": 0.50},
    {"word": "House", "start": 0.50, "end": 0.90},
]
WORDS = [Segment(0.11, 0.20, "in"), Segment(0.20, 0.31, "the"), Segment(0.39, 0.50, "um"), Segment(0.47, 0.92, "house")]


def test_word_errors_are_signed_and_classed() -> None:
    errs = word_errors("u1", TRUTH, WORDS)
    assert [(e.word_class, round(e.onset * 1000, 3), round(e.offset * 1000, 3)) for e in errs] == [
        ("function", 10.0, 10.0),
        ("filler", 40.0, 0.0),
        ("content", -30.0, 20.0),
    ]


def test_evaluate_breakdowns_and_worst(tmp_path: Path) -> None:
    other = [Segment(0.10, 0.30, "in"), Segment(0.30, 0.31, "the")]
    truth = {"Ses01F_impro01_F000": TRUTH, "Ses01F_impro01_M000": TRUTH[:1]}
    aligned = {"Ses01F_impro01_F000": WORDS, "Ses01F_impro01_M000": other}
    rows = [{"utt_id": u, "words": w} for u, w in truth.items()]
    rows[1]["voice"] = "en-gb+m7"
    (tmp_path / "words.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    voices = read_voices(tmp_path / "words.jsonl")
    assert voices == {"Ses01F_impro01_F000": "Ses01_F", "Ses01F_impro01_M000": "en-gb+m7"}
    m = evaluate(truth, aligned, "test", voices, {"Ses01F_impro01_F000": 95})
    assert m["n_words"] == 4 and m["onset_signed_median_ms"] == 5.0 and m["onset_signed_mean_ms"] == 5.0
    assert m["onset_median_ms"] == 20.0 and m["onset_within_20ms"] == 0.5 and m["onset_within_50ms"] == 1.0
    assert m["offset_signed_median_ms"] == 10.0
    assert m["by_voice"]["en-gb+m7"]["n_words"] == 1 and m["by_voice"]["en-gb+m7"]["onset_signed_median_ms"] == 0.0
    assert {c: g["n_words"] for c, g in m["by_class"].items()} == {"filler": 1, "function": 2, "content": 1}
    assert m["by_class"]["filler"]["onset_signed_median_ms"] == 40.0
    assert {r: g["n_words"] for r, g in m["by_rate"].items()} == {"0": 1, "95": 3}
    assert "by_rate" not in evaluate(truth, aligned, "test", voices)
    assert [(w["word"], w["onset_ms"], w["voice"]) for w in m["worst"][:2]] == [
        ("um,", 40.0, "Ses01_F"),
        ("House", -30.0, "Ses01_F"),
    ]


@pytest.mark.parametrize(
    "words, cls",
    [
        (["mm"], "filler"),
        (["the"], "function"),
        (["in", "the"], "function"),
        (["of", "house"], "content"),
        (["uh", "the"], "filler"),
        ([], "content"),
    ],
)
def test_group_class(words: list[str], cls: str) -> None:
    assert group_class(words) == cls
    assert word_class("hmm") == "filler" and word_class("don't") == "function" and word_class("zorblax") == "content"
