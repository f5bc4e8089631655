"""The duration search over senone scores (alignment/senone_viterbi.py) and its use in the backend."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mger.alignment import senone_viterbi as sv
from mger.alignment.normalize import written_forms
from mger.alignment.pocketsphinx_backend import PocketsphinxAligner, PocketsphinxSettings, _pcm
from mger.core.audio import read_audio, write_audio
from mger.core.manifest import Utterance
from mger.corpus.espeak import Prosody
from mger.corpus.synth import Speaker, speak
from tests.builders import iemocap_row


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


def test_duration_weight_trades_the_duration_term_against_the_scores() -> None:
    """The scores put the split at frame 30 (0.5 nats a frame), the expected durations (10 / 30) at 10:
    no duration term leaves it to the scores, and a stronger one moves it further toward 10."""
    states = np.zeros((40, 2, 3))
    states[:30, 0, :] = states[30:, 1, :] = 0.5
    loud = np.ones(40, bool)
    args = (states, np.full(40, -10.0), np.array([True, True]), np.array([10.0, 30.0]), loud, ~loud)
    splits = [int(sv.align_phones(*args, weight=w)[0, 1]) for w in (0.0, 4.0, 24.0, 100.0)]
    assert splits == [30, 21, 11, 10]
    assert PocketsphinxSettings().duration_weight == sv.DURATION_WEIGHT == 24.0  # one definition, both defaults
    with pytest.raises(ValueError, match="duration weight"):
        sv.duration_prior(10.0, weight=-1.0)


@pytest.mark.parametrize("filler", [False, True])
def test_no_phone_but_a_fillers_outlasts_its_cap(filler: bool) -> None:
    """Ten one-phone words in 100 loud frames (expected 10 frames each): the first fits every frame,
    the others fit none, so it takes all it may: six times its expected duration, unless a filler."""
    n_phones, n_frames = 10, 100
    costs = np.full((n_frames, 3 * n_phones + 3), 100, dtype=np.int16)
    costs[:, :3] = 0
    costs[:, 3 * n_phones :] = 1000  # silence fits nowhere
    scores = sv.SenoneScores(costs, 1.0)
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


def test_align_phones_is_the_best_segmentation_brute_force() -> None:
    """On small random problems, no segmentation scores higher than the one found (exhaustive search)."""

    def phone(x: np.ndarray, a: int, b: int) -> float:  # best split of frames [a, b) into three states
        return max(
            x[a:i, 0].sum() + x[i:j, 1].sum() + x[j:b, 2].sum() for i in range(a + 1, b - 1) for j in range(i + 1, b)
        )

    def best(states, silence, word_start, expected, loud, quiet, cap) -> float:
        n_frames, n_phones = states.shape[:2]
        sil = silence - sv.LOUD_SILENCE * loud
        x = states - sv.QUIET_PHONE * quiet[:, None, None]
        top = -np.inf
        stack = [(0, 0, 0.0)]
        while stack:
            p, t, acc = stack.pop()
            if p == n_phones:
                top = max(top, acc + sil[t:].sum())
                continue
            for a in [t] if p and not word_start[p] else range(t, n_frames + 1):
                for b in range(a + 3, min(n_frames, a + int(cap[p])) + 1):
                    prior = sv.duration_prior(float(expected[p]), int(cap[p]))[b - a]
                    stack.append((p + 1, b, acc + sil[t:a].sum() + phone(x[:, p], a, b) + prior))
        return top

    def score(spans, states, silence, word_start, expected, loud, quiet, cap) -> float:
        sil = silence - sv.LOUD_SILENCE * loud
        x = states - sv.QUIET_PHONE * quiet[:, None, None]
        total, t = 0.0, 0
        for p, (a, b) in enumerate(spans):
            assert a >= t and 3 <= b - a <= cap[p] and (a == t or p == 0 or word_start[p])
            total += sil[t:a].sum() + phone(x[:, p], a, b) + sv.duration_prior(float(expected[p]), int(cap[p]))[b - a]
            t = b
        return total + sil[t:].sum()

    rng = np.random.default_rng(7)
    for _ in range(150):
        n_phones = int(rng.integers(1, 4))
        n_frames = int(rng.integers(3 * n_phones, 11))
        args = (
            rng.normal(0, 3, (n_frames, n_phones, 3)),
            rng.normal(0, 3, n_frames),
            np.concatenate([[True], rng.random(n_phones - 1) < 0.5]),
            rng.uniform(1, 6, n_phones),
            rng.random(n_frames) < 0.3,
            rng.random(n_frames) < 0.3,
            rng.integers(3, 12, n_phones),
        )
        spans = sv.align_phones(*args)
        assert score(spans.tolist(), *args) == pytest.approx(best(*args), abs=1e-9)


def test_align_phones_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="cannot hold 3 phones"):
        sv.align_phones(
            np.zeros((8, 3, 3)), np.zeros(8), np.ones(3, bool), np.ones(3), np.zeros(8, bool), np.ones(8, bool)
        )
    with pytest.raises(ValueError, match="shapes do not match"):
        sv.align_phones(
            np.zeros((9, 3, 2)), np.zeros(9), np.ones(3, bool), np.ones(3), np.zeros(9, bool), np.ones(9, bool)
        )


def _senone_log(path: Path, frames: list[list[int]], n_sen: int = 4, order: str = "<") -> Path:
    header = f"s3\nversion 0.1\nmdef_file mdef\nn_sen {n_sen}\nlogbase 1.000100\nendhdr\n".encode()
    path.write_bytes(header + struct.pack(f"{order}I", 0x11223344) + np.array(frames, f"{order}i2").tobytes())
    return path


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_senone_log_reads_scores_and_names_a_bad_file(tmp_path: Path, order: str) -> None:
    scores = sv.read_senone_log(_senone_log(tmp_path / "a.sen", [[4, 0, 10, 20, 30], [4, 5, 0, 1, 2]], order=order))
    assert len(scores) == 2 and scores.costs.tolist() == [[0, 10, 20, 30], [5, 0, 1, 2]]
    assert scores.loglik([1, 3])[0].tolist() == pytest.approx([-x * 1024 * np.log(1.0001) for x in (10, 30)], rel=1e-6)
    (tmp_path / "t.sen").write_bytes((tmp_path / "a.sen").read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"t\.sen: senone log of unexpected size"):
        sv.read_senone_log(tmp_path / "t.sen")
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
    write_audio(out / "a.wav", np.concatenate([np.zeros(4000, np.int16), audio, np.zeros(4000, np.int16)]))
    return iemocap_row("u", 1, "d", "F", "F", True, str(out / "a.wav"), 3.0, text, "neu", "neu", 3, 3, 3)


def test_silence_senones_are_the_models_silence_states(spoken: Utterance) -> None:
    aligner = PocketsphinxAligner()
    forms = written_forms(spoken.text)
    aligner._ensure_words(forms)
    audio = read_audio(spoken.wav)
    dec = aligner._decoder(0)
    pcm = _pcm(audio)
    assert aligner._align_pcm(dec, " ".join(f for _, f in forms), pcm, len(forms)) is not None
    phones, states = list(dec.get_alignment().phones()), [int(s.name) for s in dec.get_alignment().states()]
    silent = {tuple(states[3 * k : 3 * k + 3]) for k, p in enumerate(phones) if p.name == "SIL"}
    assert silent == {sv.SILENCE_SENONES}


def test_an_unreadable_senone_log_falls_back_to_pocketsphinxs_search(
    spoken: Utterance, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mger.alignment import pocketsphinx_backend

    def unreadable(path: Path) -> sv.SenoneScores:
        raise ValueError(f"{path}: senone log of unexpected size")

    monkeypatch.setattr(pocketsphinx_backend, "read_senone_log", unreadable)
    aligner = PocketsphinxAligner()
    result = aligner.align(spoken)
    assert result.method == "aligned" and len(result.words) == 6
    assert not any(n.startswith("aligned over senone scores") for n in result.notes)
    assert not Path(aligner._senone_dir()).exists()


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
        assert not Path(aligner._senone_dir()).exists()


@pytest.fixture(scope="module")
def spoken_time(tmp_path_factory: pytest.TempPathFactory) -> Utterance:
    """eSpeak reads "8:05" as "eight zero five"."""
    out = tmp_path_factory.mktemp("time")
    text = "Mm, the bus leaves at 8:05."
    audio = speak(text, Speaker("F", "en-us+f3", 0, 0), Prosody(), None, "", np.random.default_rng(0)).audio
    write_audio(out / "a.wav", audio)
    return iemocap_row("u", 1, "d", "F", "F", True, str(out / "a.wav"), 2.6, text, "neu", "neu", 3, 3, 3)


def test_a_clock_times_zero_is_aligned_as_spoken(spoken_time: Utterance) -> None:
    """The "oh" of 8:05 may be said "zero": eSpeak does, and the aligner picks that pronunciation."""
    result = PocketsphinxAligner().align(spoken_time)
    assert [w.label for w in result.words] == ["mm", "the", "bus", "leaves", "at", "eight", "oh", "five"]
    assert [p.label for p in result.phones if p.word == 6] == ["Z", "IY", "AH", "R", "OW"]
    assert result.words[6].start == pytest.approx(1.88, abs=0.05)  # eSpeak: "zero" from 1.88 s (its phoneme events)
