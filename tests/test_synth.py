"""The synthetic corpus: determinism, exact IEMOCAP layout and formats, exact truth."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mger.corpus.espeak import EVENT_PHONEME, EVENT_WORD, Event
from mger.corpus.synth import (
    EMOTION_TEXT,
    NEUTRAL_TEXT,
    _ssml,
    _transcript,
    dialog_names,
    spoken_tokens,
    synthesize_corpus,
    word_groups,
)
from tests.conftest import TINY

EMO_HEAD = re.compile(
    r"^\[\d+\.\d{4} - \d+\.\d{4}\]\t(Ses\d\d[FM]_\w+_[FM]\d{3})\t([a-z]{3})\t"
    r"\[\d\.\d{4}, \d\.\d{4}, \d\.\d{4}\]$"
)
TRANS = re.compile(r"^(Ses\d\d[FM]_\w+_[FM]\d{3}) \[\d{3}\.\d{4}-\d{3}\.\d{4}\]: .+$")


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tiny_corpus: Path, tmp_path: Path) -> None:
    synthesize_corpus(tmp_path / "again", **TINY)
    assert _digest(tmp_path / "again") == _digest(tiny_corpus)
    synthesize_corpus(tmp_path / "other", **{**TINY, "seed": TINY["seed"] + 1})
    assert _digest(tmp_path / "other") != _digest(tiny_corpus)


def test_layout_and_formats(tiny_corpus: Path) -> None:
    n_turns = TINY["turns_per_dialog"]
    for session in (1, 2, 3):
        (dialog,) = dialog_names(session, 1)
        sdir = tiny_corpus / f"Session{session}"
        emo_lines = (sdir / "dialog" / "EmoEvaluation" / f"{dialog}.txt").read_text().splitlines()
        assert emo_lines[0] == "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
        heads = [EMO_HEAD.match(line) for line in emo_lines if line.startswith("[")]
        assert len(heads) == n_turns and all(heads)
        assert any(line.startswith("C-E1:\t") and line.endswith(";\t()") for line in emo_lines)
        assert any(re.match(r"^A-E1:\tval \d; act \d; dom  \d;\t\(\)$", line) for line in emo_lines)
        trans = (sdir / "dialog" / "transcriptions" / f"{dialog}.txt").read_text().splitlines()
        assert len(trans) == n_turns and all(TRANS.match(line) for line in trans)
        ids = [h.group(1) for h in heads]
        assert {i.rsplit("_", 1)[1][0] for i in ids} == {"F", "M"}
        for uid in ids:
            info = sf.info(str(sdir / "sentences" / "wav" / dialog / f"{uid}.wav"))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            wdseg = (sdir / "sentences" / "ForcedAlignment" / dialog / f"{uid}.wdseg").read_text().splitlines()
            assert wdseg[0] == " SFrm  EFrm    SegAScr Word"
            assert wdseg[1].split()[-1] == "<s>" and wdseg[-2].split()[-1] == "</s>"
            assert wdseg[-1].startswith(" Total score:")
            frames = [tuple(int(x) for x in row.split()[:2]) for row in wdseg[1:-1]]
            assert frames[0][0] == 0 and all(a[1] + 1 == b[0] for a, b in zip(frames, frames[1:]))
            assert abs((frames[-1][1] + 1) / 100 - info.duration) <= 0.01


def test_truth_is_ordered_inside_the_audio(tiny_corpus: Path) -> None:
    rows = [json.loads(line) for line in (tiny_corpus / "truth" / "words.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * TINY["turns_per_dialog"]
    durations = {p.stem: sf.info(str(p)).duration for p in tiny_corpus.rglob("*.wav")}
    for row in rows:
        words = row["words"]
        assert words, row["utt_id"]
        assert all(w["start"] < w["end"] for w in words)
        assert all(a["end"] <= b["start"] + 1e-9 for a, b in zip(words, words[1:]))
        assert 0.15 <= words[0]["start"] and words[-1]["end"] <= durations[row["utt_id"]] - 0.15


def test_markers_are_in_the_transcript_but_not_spoken() -> None:
    transcript = "[LAUGHTER] I love it, thank you so much! [BREATHING]"
    assert spoken_tokens(transcript) == ["I", "love", "it", "thank", "you", "so", "much"]
    text, offsets = _ssml(transcript, cue_word=1, cue='pitch="+55%"')
    assert "LAUGHTER" not in text and text.startswith('I <prosody pitch="+55%">love</prosody> it,')
    assert [text[o : o + 4] for o in offsets[:3]] == ["I <p", "love", "it, "]


def test_word_groups_cope_with_merged_events() -> None:
    # "in the line": eSpeak gives one WORD event for "in the", then one for "line"; a pause ends "line".
    words, offsets = ["in", "the", "line"], [0, 3, 7]
    events = [
        Event(EVENT_WORD, 1, 2, 100),
        Event(EVENT_PHONEME, 1, 0, 100, "I"),
        Event(EVENT_PHONEME, 1, 0, 150, "D"),
        Event(EVENT_WORD, 8, 4, 300),
        Event(EVENT_PHONEME, 8, 0, 300, "l"),
        Event(EVENT_PHONEME, 8, 0, 420, "_:"),
        Event(EVENT_PHONEME, 8, 0, 500, "_"),
    ]
    assert word_groups(events, offsets, words) == [("in the", 100, 300), ("line", 300, 420)]
    # A WORD event emitted early, at the start of the previous word's last phoneme
    # ("coming|over"): the word's own first phoneme gives the onset.
    events = [
        Event(EVENT_WORD, 1, 6, 0),
        Event(EVENT_PHONEME, 1, 0, 0, "k"),
        Event(EVENT_PHONEME, 1, 0, 200, "N"),
        Event(EVENT_WORD, 8, 4, 200),
        Event(EVENT_PHONEME, 8, 0, 290, ",oU"),
        Event(EVENT_PHONEME, 8, 0, 400, "v"),
        Event(EVENT_PHONEME, 8, 0, 520, "_:"),
    ]
    assert word_groups(events, [0, 7], ["coming", "over"]) == [("coming", 0, 290), ("over", 290, 520)]


def test_labels_prosody_and_voices(tmp_path: Path) -> None:
    synthesize_corpus(tmp_path / "c", seed=1, sessions=2, dialogs_per_session=3, turns_per_dialog=10)
    codes, rms = [], {}
    for emo in sorted((tmp_path / "c").rglob("EmoEvaluation/*.txt")):
        for line in emo.read_text().splitlines():
            m = EMO_HEAD.match(line)
            if m:
                codes.append(m.group(2))
                wav = next((tmp_path / "c").rglob(f"{m.group(1)}.wav"))
                audio, _ = sf.read(str(wav))
                rms.setdefault(m.group(2), []).append(float(np.sqrt(np.mean(audio**2))))
    assert set(codes) >= {"neu", "ang", "sad"} and len(set(codes)) >= 5
    # Anger is spoken louder than sadness (the prosody cue), on average.
    assert np.mean(rms["ang"]) > 1.3 * np.mean(rms["sad"])
    assert dialog_names(1, 3) == ["Ses01F_impro01", "Ses01M_impro02", "Ses01F_script01_1"]


def test_rejects_bad_sizes(tmp_path: Path) -> None:
    from mger.pipeline.cli import main

    with pytest.raises(SystemExit):
        main(["synth", "--sessions", "x"])


def test_turns_speak_one_to_max_sentences_and_one_keeps_the_demo_corpus() -> None:
    """max_sentences_per_turn N: 1..N pool sentences per turn; N = 1 draws exactly what the demo drew."""
    pool = {*NEUTRAL_TEXT, *(s for texts in EMOTION_TEXT.values() for s in texts)}

    def sentences(text: str) -> list[str]:
        text, found = re.sub(r"\[[A-Z]+\]", "", text).strip(), []
        while text:
            head = next(s for s in pool if text.startswith(s))
            found.append(head)
            text = text[len(head) :].strip()
        return found

    counts = set()
    for seed in range(60):
        code = ["neu", "ang", "hap", "sad"][seed % 4]
        one, more = (_transcript(code, np.random.default_rng(seed), n) for n in (1, 3))
        assert len(sentences(one)) == 1 and sentences(more)[0] == sentences(one)[0]
        counts.add(len(sentences(more)))
    assert counts == {1, 2, 3}
