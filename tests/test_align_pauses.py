"""The energy check on alignments (alignment/pauses.py) and its use in the pocketsphinx backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mger.alignment import pauses
from mger.alignment.base import Segment


def _tone_with_pause() -> np.ndarray:
    """0.2 s near-silence, 0.3 s tone, 0.25 s near-silence, 0.3 s tone, 0.2 s near-silence (16 kHz)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(0.3 * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    quiet = [np.zeros(int(s * 16000)) for s in (0.2, 0.25, 0.2)]
    audio = np.concatenate([quiet[0], tone, quiet[1], tone, quiet[2]])
    return audio + 1e-3 * rng.standard_normal(len(audio))


def test_runs_and_kept_frames_cut_long_quiet_runs_only() -> None:
    assert pauses.runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    db = np.array([-60.0] * 20 + [-10.0] * 30 + [-60.0] * 5 + [-10.0] * 30 + [-60.0] * 20)
    kept = pauses.kept_frames(db)
    # edges cut whole except KEEP_FRAMES next to speech; the 5-frame dip (a stop closure) stays
    assert kept[0] == 20 - pauses.KEEP_FRAMES and kept[-1] == 85 + pauses.KEEP_FRAMES - 1
    assert len(kept) == 65 + 2 * pauses.KEEP_FRAMES


def test_disagreement_counts_loud_silence_and_quiet_speech() -> None:
    db = pauses.frame_db(_tone_with_pause())
    assert len(db) == 125
    right = [Segment(0.2, 0.5, "a"), Segment(0.75, 1.05, "b")]
    wrong = [Segment(0.2, 0.3, "a"), Segment(0.55, 1.05, "b")]  # the first tone's end as silence
    # right: only the 2 frames before each tone whose 25.6 ms window already reaches into it
    assert pauses.disagreement(db, right) == (4, 0)
    assert pauses.disagreement(db, wrong) == (22, 18)


def test_cut_audio_map_back_and_trim_restore_the_original_times() -> None:
    audio = _tone_with_pause()
    db = pauses.frame_db(audio)
    kept = pauses.kept_frames(db)
    cut = pauses.cut_audio(audio, kept)
    assert len(cut) == len(kept) * pauses.HOP < len(audio)
    # on the cut audio the two tones touch: word a covers the first tone and two kept quiet frames each side
    n_a = int(np.sum(kept < 62))
    words = [Segment(0.0, n_a * 0.01 + 0.0038, "a"), Segment(n_a * 0.01 + 0.0038, len(kept) * 0.01, "b")]
    phones = [Segment(w.start, w.end, "AH", i) for i, w in enumerate(words)]
    back_w = pauses.map_back(words, kept, 0.0038)
    back_p = pauses.map_back(phones, kept, 0.0038)
    # kept quiet frames 16-17 | tone | 50-51 · cut · 71-72 | tone | 105-106
    assert [w.start for w in back_w] == pytest.approx([0.1638, 0.7138])
    assert [w.end for w in back_w] == pytest.approx([0.5238, 1.0738])
    trimmed_w, trimmed_p = pauses.trim_edges(back_w, back_p, db)
    # the kept quiet frames come off; frames 18-19 stay, their window already hears the tone
    assert [w.start for w in trimmed_w] == pytest.approx([0.1838, 0.7338])
    assert [w.end for w in trimmed_w] == pytest.approx([0.5038, 1.0538])
    assert [(p.start, p.end) for p in trimmed_p] == [(w.start, w.end) for w in trimmed_w]


def test_energy_check_repairs_speech_taken_for_silence(tmp_path: Path) -> None:
    """A held-out utterance (en-029+Alicia, 95 wpm) whose alignment put 2.4 s of loud speech into
    silences: five words more than 0.5 s late.  With the check all but one are within 70 ms."""
    from mger.alignment.evaluate import word_errors
    from mger.alignment.pocketsphinx_backend import PocketsphinxAligner, PocketsphinxSettings
    from mger.corpus.heldout import SENTENCES, speak_utterance

    (tmp_path / "wav").mkdir()
    utt, truth = speak_utterance(tmp_path, tmp_path, 105, SENTENCES[105 % len(SENTENCES)], "en-029+Alicia", 95, 29)
    words = json.loads(truth)["words"]
    # pocketsphinx's own search (the duration search, on by default, would not run it)
    before = PocketsphinxAligner(PocketsphinxSettings(energy_check=False, duration_search=False)).align(utt)
    after = PocketsphinxAligner(PocketsphinxSettings(energy_check=True, duration_search=False)).align(utt)
    late = np.array([e.onset for e in word_errors(utt.utt_id, words, before.words)])
    fixed = np.array([e.onset for e in word_errors(utt.utt_id, words, after.words)])
    assert len(late) == len(fixed) == 10
    assert np.sum(late > 0.5) >= 5
    assert np.sum(np.abs(fixed) <= 0.07) >= 9 and np.max(np.abs(fixed)) < 0.25
    assert any(n.startswith("energy check:") for n in after.notes)
    assert [p.word for p in after.phones] == sorted(p.word for p in after.phones)
    assert all(p.end > p.start for p in after.phones)
