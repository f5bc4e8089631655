"""Onset refinement (alignment/refine.py) and slow speech at a lower frame rate (pocketsphinx backend)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mger.alignment.base import Segment
from mger.alignment.refine import MAX_CLOSURE, SNAP_RANGE, fine_db, refine_onsets


def _silence_tone_silence_tone() -> np.ndarray:
    """0.3 s near-silence, 0.3 s tone, 0.05 s near-silence (a closure), 0.3 s tone, 0.2 s near-silence."""
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(0.3 * 16000)) / 16000)
    parts = [np.zeros(4800), tone, np.zeros(800), tone, np.zeros(3200)]
    audio = np.concatenate(parts)
    return audio + 1e-4 * rng.standard_normal(len(audio))


def _phones(words: list[Segment], first: list[str]) -> list[Segment]:
    """Two phones per word, the first labelled as given."""
    out = []
    for i, (w, label) in enumerate(zip(words, first)):
        mid = (w.start + w.end) / 2
        out += [Segment(w.start, mid, label, i), Segment(mid, w.end, "AH", i)]
    return out


def test_fine_db_frames() -> None:
    db = fine_db(_silence_tone_silence_tone())
    assert len(db) == int(1.15 * 16000) // 80
    assert db[10] < -70 and db[80] > -20


def test_first_word_onset_moves_to_where_the_sound_starts() -> None:
    audio = _silence_tone_silence_tone()
    words = [Segment(0.27, 0.6, "a"), Segment(0.6, 0.95, "b")]  # 30 ms early
    new_words, new_phones = refine_onsets(words, _phones(words, ["AH", "AH"]), audio)
    assert new_words[0].start == pytest.approx(0.3, abs=0.006)
    assert new_phones[0].start == new_words[0].start and new_phones[1] == _phones(words, ["AH", "AH"])[1]
    assert new_words[1] == words[1]  # no gap before it: left alone
    late = [Segment(0.32, 0.6, "a")]  # 20 ms late: moves back, within SNAP_RANGE
    assert refine_onsets(late, _phones(late, ["AH"]), audio)[0][0].start == pytest.approx(0.3, abs=0.006)
    far = [Segment(0.2, 0.6, "a")]  # the sound starts 100 ms later: out of range, moves at most SNAP_RANGE
    assert refine_onsets(far, _phones(far, ["AH"]), audio)[0][0].start <= 0.2 + SNAP_RANGE + 1e-9


def test_stop_closure_is_given_back_to_its_word() -> None:
    audio = _silence_tone_silence_tone()
    words = [Segment(0.3, 0.6, "a"), Segment(0.65, 0.95, "top")]  # the 50 ms closure labelled silence
    new_words, new_phones = refine_onsets(words, _phones(words, ["AH", "T"]), audio)
    assert new_words[1].start == pytest.approx(0.6) and new_phones[2].start == pytest.approx(0.6)
    assert new_words[0].start == pytest.approx(0.3, abs=0.006) and new_words[0].end == words[0].end
    # the same gap before a vowel is a pause: the onset stays at the sound (the second tone)
    vowel = refine_onsets(words, _phones(words, ["AH", "AH"]), audio)[0]
    assert vowel[1].start == pytest.approx(0.65, abs=0.006)
    # a gap longer than a closure is a pause even before a stop
    long_gap = [Segment(0.3, 0.6 - MAX_CLOSURE, "a"), Segment(0.65, 0.95, "top")]
    assert refine_onsets(long_gap, _phones(long_gap, ["AH", "T"]), audio)[0][1].start > 0.6


def test_words_without_phones_are_left_alone() -> None:
    words = [Segment(0.27, 0.6, "a")]
    assert refine_onsets(words, [], _silence_tone_silence_tone()) == (words, [])


def test_frame_step_and_phone_rate() -> None:
    from mger.alignment import pauses
    from mger.alignment.pocketsphinx_backend import frame_step, phone_rate

    assert frame_step(100) == 0.01
    assert frame_step(70) == pytest.approx(229 / 16000)  # pocketsphinx rounds the shift to whole samples
    db = pauses.frame_db(_silence_tone_silence_tone())
    # 0.6 s of tone (plus the frames whose window reaches into it) hold 6 phones: about 10 phones/s
    assert 8.5 < phone_rate(6, db) < 10.0


def test_slow_speech_aligned_at_a_lower_frame_rate(tmp_path: Path) -> None:
    """A held-out utterance at 95 wpm (en-gb-x-gbclan+benjamin, 7 phones/s): one word 97 ms off at
    100 frames/s, every word within 50 ms at 70 frames/s."""
    from mger.alignment.evaluate import word_errors
    from mger.alignment.pocketsphinx_backend import PocketsphinxAligner, PocketsphinxSettings
    from mger.corpus.heldout import SENTENCES, speak_utterance

    (tmp_path / "wav").mkdir()
    utt, truth = speak_utterance(
        tmp_path, tmp_path, 35, SENTENCES[35 % len(SENTENCES)], "en-gb-x-gbclan+benjamin", 95, 29
    )
    words = json.loads(truth)["words"]
    before = PocketsphinxAligner(
        PocketsphinxSettings(slow_speech=False, refine_onsets=False, duration_search=False)
    ).align(utt)
    after = PocketsphinxAligner(
        PocketsphinxSettings(slow_speech=True, refine_onsets=False, duration_search=False)
    ).align(utt)
    off = np.abs([e.onset for e in word_errors(utt.utt_id, words, before.words)])
    on = np.abs([e.onset for e in word_errors(utt.utt_id, words, after.words)])
    assert len(off) == len(on) == 7
    assert off.max() > 0.09 and on.max() <= 0.05
    assert any(n.startswith("slow speech") for n in after.notes)
    assert not any(n.startswith("slow speech") for n in before.notes)
    assert all(p.end > p.start for p in after.phones)
    assert [p.word for p in after.phones] == sorted(p.word for p in after.phones)


def test_closure_of_a_word_final_stop_is_given_back_to_it() -> None:
    """No gap between a word ending in a stop and one that does not start with one: a next word starting
    in the quiet closure starts at the sound instead, and the previous word ends there."""
    audio = _silence_tone_silence_tone()  # tones 0.3-0.6 and 0.65-0.95, the closure between them

    def phones(words: list[Segment], labels: list[tuple[str, str]]) -> list[Segment]:
        out = []
        for i, (w, (a, b)) in enumerate(zip(words, labels)):
            mid = (w.start + w.end) / 2
            out += [Segment(w.start, mid, a, i), Segment(mid, w.end, b, i)]
        return out

    words = [Segment(0.3, 0.63, "at"), Segment(0.63, 0.95, "the")]  # "the" given 20 ms of the closure
    new_words, new_phones = refine_onsets(words, phones(words, [("AE", "T"), ("DH", "AH")]), audio)
    assert new_words[1].start == pytest.approx(0.65, abs=0.006)
    assert new_words[0].end == new_words[1].start == new_phones[1].end == new_phones[2].start
    assert new_phones[1].start == words[0].start + (words[0].end - words[0].start) / 2  # only the edge moved
    # after a vowel, before a stop, or with more quiet than SNAP_RANGE ahead, the boundary stays
    for labels in ([("AE", "AH"), ("DH", "AH")], [("AE", "T"), ("D", "AH")]):
        kept = refine_onsets(words, phones(words, labels), audio)[0]
        assert kept[0].end == kept[1].start == 0.63 and kept[1] == words[1]
    early = [Segment(0.3, 0.6, "at"), Segment(0.6, 0.95, "the")]  # 50 ms of closure ahead
    kept = refine_onsets(early, phones(early, [("AE", "T"), ("DH", "AH")]), audio)[0]
    assert kept[0].end == kept[1].start == 0.6 and kept[1] == early[1]


def test_a_pause_inside_the_phones_at_a_boundary_becomes_the_gap() -> None:
    """Two words joined by the decoder over a 150 ms pause held inside their boundary phones: the pause becomes
    the gap (the first word ends where it starts, the second starts at the sound after it); a 50 ms quiet run
    (shorter than the energy check's pauses) is left alone."""
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(0.3 * 16000)) / 16000)
    audio = np.concatenate([np.zeros(4800), tone, np.zeros(2400), tone, np.zeros(3200)])  # pause 0.6-0.75 s
    audio = audio + 1e-4 * rng.standard_normal(len(audio))
    words = [Segment(0.3, 0.7, "an"), Segment(0.7, 1.05, "owl")]
    phones = [
        Segment(0.3, 0.5, "AE", 0),
        Segment(0.5, 0.7, "N", 0),
        Segment(0.7, 0.85, "AW", 1),
        Segment(0.85, 1.05, "L", 1),
    ]
    new_words, new_phones = refine_onsets(words, phones, audio)
    assert new_words[0].end == pytest.approx(0.6, abs=0.006) and new_phones[1].end == new_words[0].end
    assert new_words[1].start == pytest.approx(0.75, abs=0.006) and new_phones[2].start == new_words[1].start
    assert new_phones[0].end == 0.5 and new_phones[3] == phones[3]
    short = [Segment(0.3, 0.62, "an"), Segment(0.62, 0.95, "owl")]  # the 50 ms quiet run 0.6-0.65
    short_phones = [
        Segment(0.3, 0.5, "AE", 0),
        Segment(0.5, 0.62, "N", 0),
        Segment(0.62, 0.8, "AW", 1),
        Segment(0.8, 0.95, "L", 1),
    ]
    kept = refine_onsets(short, short_phones, _silence_tone_silence_tone())[0]
    assert kept[0].end == kept[1].start == 0.62


def test_release_of_a_word_final_stop_is_given_back_to_it() -> None:
    """ "at the" as eSpeak says it: vowel, 40 ms closure, 60 ms release, a 10 ms dip, then DH.  The decoder
    starts "the" at the release; it moves to the dip, and "at" ends there."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000

    def tone(sec: float, amp: float = 0.3) -> np.ndarray:
        return amp * np.sin(2 * np.pi * 220 * t[: int(sec * 16000)])

    audio = np.concatenate(
        [np.zeros(4800), tone(0.3), np.zeros(640), tone(0.06, 0.03), np.zeros(160), tone(0.29), np.zeros(3200)]
    )  # vowel 0.3-0.6, closure -0.64, release -0.7, dip -0.71, DH 0.71-1.0
    audio = audio + 1e-4 * rng.standard_normal(len(audio))
    words = [Segment(0.3, 0.64, "at"), Segment(0.64, 1.0, "the")]
    phones = [
        Segment(0.3, 0.55, "AE", 0),
        Segment(0.55, 0.64, "T", 0),
        Segment(0.64, 0.8, "DH", 1),
        Segment(0.8, 1.0, "AH", 1),
    ]
    new_words, new_phones = refine_onsets(words, phones, audio)
    assert new_words[1].start == pytest.approx(0.70, abs=0.006)
    assert new_words[0].end == new_words[1].start == new_phones[1].end == new_phones[2].start
    # the closure labelled silence (a 40 ms gap) and the release given to "the": the same
    gap_words = [Segment(0.3, 0.6, "at"), Segment(0.64, 1.0, "the")]
    gap_phones = [phones[0], Segment(0.55, 0.6, "T", 0)] + phones[2:]
    moved_words, moved_phones = refine_onsets(gap_words, gap_phones, audio)
    assert moved_words[1].start == pytest.approx(0.70, abs=0.006) and moved_words[0].end == moved_words[1].start
    assert moved_phones[1].end == moved_phones[2].start == moved_words[1].start
    # before a stop-initial word the dip is that word's closure: it starts there too
    stop = phones[:2] + [Segment(0.64, 0.8, "D", 1), phones[3]]
    assert refine_onsets(words, stop, audio)[0][1].start == pytest.approx(0.70, abs=0.006)
    # after a vowel the same sound is left alone
    vowel = [phones[0], Segment(0.55, 0.64, "AH", 0)] + phones[2:]
    assert refine_onsets(words, vowel, audio)[0][1] == words[1]
