"""The held-out alignment set: voices the demo never uses, every variant, real eSpeak audio and truth."""

from __future__ import annotations

import json
from pathlib import Path

from mger.alignment.normalize import normalize_transcript
from mger.core.manifest import read_manifest
from mger.corpus.synth import _speakers
from mger.pipeline.heldout import DEMO_VOICES, LANGUAGES, SENTENCES, build_heldout, n_variants, voices


def test_voices_cover_every_language_and_variant_and_avoid_the_demo() -> None:
    vs = voices(n_variants())
    assert not set(vs) & DEMO_VOICES
    assert {v.split("+")[0] for v in vs} == set(LANGUAGES)
    assert len({v.split("+", 1)[1] for v in vs}) == n_variants() > 100
    demo = {s.voice for session in range(1, 10) for s in _speakers(session, 13).values()}
    assert demo <= DEMO_VOICES


def test_sentences_have_the_styles_the_demo_lacks() -> None:
    words = [w for s in SENTENCES for w in normalize_transcript(s)]
    assert {"um", "uh", "mm", "hmm"} <= set(words)
    assert any(not s.isascii() for s in SENTENCES) and any("-" in s for s in SENTENCES)
    assert any(any(c.isdigit() for c in s) for s in SENTENCES) and "fbi" in words


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
