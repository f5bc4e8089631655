"""The duration search over senone scores (alignment/senone_viterbi.py) and its use in the backend."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mger.alignment import senone_viterbi as sv
from mger.alignment.normalize import written_forms
from mger.alignment.pocketsphinx_backend import PocketsphinxAligner, PocketsphinxSettings
from mger.core.audio import read_audio, write_audio
from mger.core.manifest import Utterance
from mger.corpus.espeak import Prosody
from mger.corpus.synth import Speaker, speak


def _states(n_frames: int, owned: list[tuple[int, int]], inside: float = 0.0, outside: float = -10.0) -> np.ndarray:
    """(T, P, 3) scores: ``inside`` where phone p owns the frame (its three states alike), else ``outside``."""
    x = np.full((n_frames, len(owned), 3), outside)
    for p, (a, b) in enumerate(owned):
        x[a:b, p, :] = inside
    return x


def test_align_phones_finds_the_segmentation_the_scores_mark() -> None:
    owned = [(10, 20), (20, 30), (35, 50)]  # two words: phones 0-1, then a pause, then phone 2
    silence = np.full(60, -10.0)
    silence[:10] = silence[30:35] = silence[50:] = 0.0
    sound = np.zeros(60, bool)
    sound[10:30] = sound[35:50] = True
    spans = sv.align_phones(
        _states(60, owned), silence, np.array([True, False, True]), np.array([10.0, 10.0, 15.0]), sound, ~sound
    )
    assert spans.tolist() == [[10, 20], [20, 30], [35, 50]]


@pytest.mark.parametrize("loud_until", [20, 30])
def test_loud_frames_are_not_taken_for_silence(loud_until: int) -> None:
    """Frames 20-30 fit silence better than the phone; once they are loud, they are the phone's."""
    states = np.full((40, 1, 3), -10.0)
    states[10:20] = 0.0
    states[20:30] = -1.0
    silence = np.zeros(40)
    silence[10:20] = -10.0
    loud = np.zeros(40, bool)
    loud[10:loud_until] = True
    spans = sv.align_phones(states, silence, np.array([True]), np.array([15.0]), loud, ~loud)
    assert spans.tolist() == [[10, loud_until]]


def test_the_duration_term_splits_an_ambiguous_stretch_by_expected_durations() -> None:
    states = np.zeros((40, 2, 3))  # both phones fit every frame alike
    loud = np.ones(40, bool)
    for expected, split in (([10.0, 30.0], 10), ([25.0, 15.0], 25)):
        spans = sv.align_phones(states, np.full(40, -10.0), np.array([True, True]), np.array(expected), loud, ~loud)
        assert spans.tolist() == [[0, split], [split, 40]]


@pytest.mark.parametrize("filler", [False, True])
def test_no_phone_but_a_fillers_outlasts_its_cap(filler: bool) -> None:
    """Ten one-phone words in 100 loud frames (expected 10 frames each): the first fits every frame,
    the others fit none, so it takes all it may: six times its expected duration, unless a filler."""
    n_phones, n_frames = 10, 100
    scores = np.full((n_frames, 3 * n_phones + 3), -10.0, dtype=np.float32)
    scores[:, :3] = 0.0
    scores[:, 3 * n_phones :] = -100.0  # silence fits nowhere
    senones = np.arange(3 * n_phones).reshape(n_phones, 3)
    loud = np.ones(n_frames, bool)
    spans = sv.realign(
        scores,
        senones,
        np.ones(n_phones, bool),
        np.zeros(n_phones, bool),
        loud,
        ~loud,
        np.array([filler] + [False] * (n_phones - 1)),
        silence_senones=(3 * n_phones, 3 * n_phones + 1, 3 * n_phones + 2),
    )
    first = int(spans[0, 1] - spans[0, 0])
    assert first == (n_frames - 3 * (n_phones - 1) if filler else int(sv.MAX_PHONE_FACTOR * 10))
    assert spans[-1, 1] == n_frames and np.all(spans[1:, 0] == spans[:-1, 1])


def test_align_phones_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="cannot hold 3 phones"):
        sv.align_phones(
            np.zeros((8, 3, 3)), np.zeros(8), np.ones(3, bool), np.ones(3), np.zeros(8, bool), np.ones(8, bool)
        )
    with pytest.raises(ValueError, match="shapes do not match"):
        sv.align_phones(
            np.zeros((9, 3, 2)), np.zeros(9), np.ones(3, bool), np.ones(3), np.zeros(9, bool), np.ones(9, bool)
        )


def _senone_log(path: Path, frames: list[list[int]], n_sen: int = 4) -> Path:
    header = f"version 0.1\nmdef_file mdef\nn_sen {n_sen}\nlogbase 1.000100\nendhdr\n".encode()
    path.write_bytes(header + struct.pack("<I", 0x11223344) + np.array(frames, "<i2").tobytes())
    return path


def test_read_senone_log_reads_scores_and_names_a_bad_file(tmp_path: Path) -> None:
    scores = sv.read_senone_log(_senone_log(tmp_path / "a.sen", [[4, 0, 10, 20, 30], [4, 5, 0, 1, 2]]))
    assert scores.shape == (2, 4)
    assert scores[0].tolist() == pytest.approx([-x * 1024 * np.log(1.0001) for x in (0, 10, 20, 30)], rel=1e-6)
    with pytest.raises(ValueError, match=r"b\.sen: senone log lacks scores of inactive senones"):
        sv.read_senone_log(_senone_log(tmp_path / "b.sen", [[2, 0, 1, 7, 9]]))
    (tmp_path / "c.sen").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"c\.sen: not a senone log"):
        sv.read_senone_log(tmp_path / "c.sen")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Utterance:
    out = tmp_path_factory.mktemp("spoken")
    text = "Call me after lunch on Tuesday."
    audio = speak(text, Speaker("F", "en-us+f3", 0, 0), Prosody(), None, "", np.random.default_rng(0)).audio
    write_audio(out / "a.wav", np.concatenate([np.zeros(4000), audio, np.zeros(4000)]))
    return Utterance("u", 1, "d", "F", "F", True, str(out / "a.wav"), 3.0, text, "neu", "neu", 3, 3, 3)


def test_silence_senones_are_the_models_silence_states(spoken: Utterance) -> None:
    aligner = PocketsphinxAligner()
    forms = written_forms(spoken.text)
    aligner._ensure_words(forms)
    audio = read_audio(spoken.wav)
    dec = aligner._decoder(0)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
    assert aligner._align_pcm(dec, " ".join(f for _, f in forms), pcm, len(forms)) is not None
    phones, states = list(dec.get_alignment().phones()), [int(s.name) for s in dec.get_alignment().states()]
    silent = {tuple(states[3 * k : 3 * k + 3]) for k, p in enumerate(phones) if p.name == "SIL"}
    assert silent == {sv.SILENCE_SENONES}


@pytest.mark.parametrize("on", [True, False])
def test_duration_search_aligns_over_senone_scores_and_leaves_no_logs(spoken: Utterance, on: bool) -> None:
    aligner = PocketsphinxAligner(PocketsphinxSettings(duration_search=on))
    result = aligner.align(spoken)
    assert [w.label for w in result.words] == ["call", "me", "after", "lunch", "on", "tuesday"]
    assert ("aligned over senone scores with phone durations and frame energy" in result.notes) == on
    assert all(a.end <= b.start + 1e-9 for a, b in zip(result.words, result.words[1:]))
    assert [p.word for p in result.phones] == sorted(p.word for p in result.phones)
    assert result.words[0].start > 0.2  # the 0.25 s of leading silence is not the first word's
    if on:
        assert not list(Path(aligner._senone_dir()).iterdir())
