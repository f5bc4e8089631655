"""The held-out alignment set: voices the demo never uses, every variant, real eSpeak audio and truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mger.alignment.normalize import normalize_transcript
from mger.core.manifest import read_manifest
from mger.corpus.heldout import (
    DEMO_VOICES,
    DEV_SENTENCES,
    DEV_SHIFT,
    LANGUAGES,
    RATES,
    SENTENCES,
    build_heldout,
    n_variants,
    voices,
)
from mger.corpus.synth import _speakers


def test_voices_cover_every_language_and_variant_and_avoid_the_demo() -> None:
    vs = voices(n_variants())
    assert not set(vs) & DEMO_VOICES
    assert {v.split("+")[0] for v in vs} == set(LANGUAGES)
    assert len({v.split("+", 1)[1] for v in vs}) == n_variants() > 100
    demo = {s.voice for session in range(1, 10) for s in _speakers(session, 13).values()}
    assert demo <= DEMO_VOICES


@pytest.mark.parametrize("sentences", [SENTENCES, DEV_SENTENCES], ids=["heldout", "dev"])
def test_sentences_have_the_styles_the_demo_lacks(sentences: tuple[str, ...]) -> None:
    words = [w for s in sentences for w in normalize_transcript(s)]
    assert {"um", "uh", "mm", "hmm"} <= set(words)
    assert any(not s.isascii() for s in sentences) and any("-" in s for s in sentences)
    assert any(any(c.isdigit() for c in s) for s in sentences) and {"fbi", "cia"} & set(words)
    assert len(sentences) == len(set(sentences)) == 36


def test_dev_set_shares_no_sentence_and_pairs_voices_and_rates_otherwise(tmp_path: Path) -> None:
    assert not set(SENTENCES) & set(DEV_SENTENCES)
    n = max(3 * len(SENTENCES), n_variants())
    pairs = lambda shift: set(zip(voices(n, shift), [RATES[(i + shift) % len(RATES)] for i in range(n)]))  # noqa: E731
    assert len(pairs(0) & pairs(DEV_SHIFT)) < n // 10
    assert build_heldout(tmp_path / "d", n=2, dev=True) == 2
    utts = read_manifest(tmp_path / "d" / "manifest.jsonl")
    assert [u.utt_id for u in utts] == ["Dev_000", "Dev_001"] and [u.text for u in utts] == list(DEV_SENTENCES[:2])
    assert [u.speaker for u in utts] == voices(2, DEV_SHIFT)


def test_build_small_set(tmp_path: Path) -> None:
    assert build_heldout(tmp_path / "h", n=3) == 3
    utts = read_manifest(tmp_path / "h" / "manifest.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "h" / "truth" / "words.jsonl").read_text().splitlines()]
    assert [u.utt_id for u in utts] == [r["utt_id"] for r in rows] == ["Heldout_000", "Heldout_001", "Heldout_002"]
    assert [r["voice"] for r in rows] == voices(3) and [r["rate"] for r in rows] == [95, 125, 150]
    for u, r in zip(utts, rows):
        assert Path(u.wav).is_file() and u.text == SENTENCES[int(u.utt_id[-3:])]
        assert all(0 < w["start"] < w["end"] <= u.duration for w in r["words"])
    assert not (tmp_path / "h.tmp").exists()


def test_command_line_refuses_the_other_set_and_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mger.pipeline.heldout import main

    build_heldout(tmp_path / "h", n=2)
    assert main(["--dev", "--out", str(tmp_path / "h"), "--report", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("heldout: error:") and "holds the held-out set, not the development one" in err
    assert "\n" not in err and not (tmp_path / "r.json").exists()
    assert main(["--params", str(tmp_path / "nosuch.yaml"), "--out", str(tmp_path / "x")]) == 1
    assert "params file not found" in capsys.readouterr().err and not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["--n", "0"])
    assert "must be 1 or more" in capsys.readouterr().err
