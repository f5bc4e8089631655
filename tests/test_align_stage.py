"""The align stage end to end on a tiny synthetic corpus, with real pocketsphinx."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import textgrid
import yaml

from mger.alignment.base import AlignmentFailure
from mger.alignment.evaluate import evaluate, read_truth
from mger.alignment.g2p import pronounce
from mger.alignment.iemocap_backend import IemocapAligner
from mger.alignment.normalize import normalize_transcript, written_forms
from mger.alignment.pocketsphinx_backend import PocketsphinxAligner
from mger.alignment.stage import run_align, run_align_eval
from mger.alignment.table import SegmentTable
from mger.alignment.textgrids import TIERS
from mger.core.audio import read_audio, write_audio
from mger.core.config import AlignConfig
from mger.core.manifest import Utterance, write_manifest
from mger.core.reporting import StageError
from mger.corpus.espeak import Prosody
from mger.corpus.readers import prepare_corpus
from mger.corpus.synth import Speaker, speak
from tests.builders import iemocap_row, write_tone

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_manifest(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    out = tmp_path_factory.mktemp("prep")
    return prepare_corpus("iemocap", tiny_corpus, out / "m.jsonl", out / "q.json", "4class", quiet=True)


def _bad_utterances(good: Utterance, folder: Path) -> list[Utterance]:
    """Utterances that must end as report entries, not crashes."""
    folder.mkdir(parents=True, exist_ok=True)
    spoken = speak("Zorblax is here.", Speaker("F", "en-us+f2", 0, 0), Prosody(), None, "", np.random.default_rng(0))
    write_audio(folder / "unknown.wav", spoken.audio)
    write_tone(folder / "short.wav", seconds=0.8)  # too short to align 13 words, long enough to spread them
    (folder / "corrupt.wav").write_bytes(b"RIFF not really a wav")
    make = lambda uid, **kw: dataclasses.replace(good, utt_id=f"Ses01F_impro09_F{uid}", **kw)  # noqa: E731
    return [
        make("900", text=""),
        make("901", text="[LAUGHTER] [BREATHING]"),
        make("902", text="Zorblax is here.", wav=str(folder / "unknown.wav")),
        make(
            "903",
            text="This is a much longer transcript than the audio could ever hold.",
            wav=str(folder / "short.wav"),
        ),
        make("904", wav=str(folder / "corrupt.wav")),
    ]


@pytest.mark.parametrize("on_failure", ["uniform", "drop"])
def test_pocketsphinx_stage_with_bad_inputs(
    tiny_manifest: list[Utterance], tmp_path: Path, on_failure: str, capsys: pytest.CaptureFixture[str]
) -> None:
    utts = tiny_manifest[:6] + _bad_utterances(tiny_manifest[0], tmp_path / "bad")
    write_manifest(tmp_path / "m.jsonl", utts)
    cfg = AlignConfig(
        out=str(tmp_path / "align"), report=str(tmp_path / "alignment.json"), n_jobs=2, on_failure=on_failure
    )
    report = run_align(tmp_path / "m.jsonl", cfg)
    assert json.loads((tmp_path / "alignment.json").read_text()) == report
    failed = {f["utt_id"]: f for f in report["failed"]}
    assert set(failed) == {f"Ses01F_impro09_F{i}" for i in (900, 901, 903, 904)}
    assert "markers only" in failed["Ses01F_impro09_F901"]["reason"]
    assert "audio too short" in failed["Ses01F_impro09_F903"]["reason"]
    assert "Error" in failed["Ses01F_impro09_F904"]["reason"]
    assert report["unknown_words"]["zorblax"] == "Z AO R B L AE K S"
    assert report["aligned"] == 7  # the 6 good ones and the unknown-word one
    if on_failure == "uniform":
        assert (report["uniform_fallback"], report["dropped"]) == (1, 3)
        assert failed["Ses01F_impro09_F903"]["fallback"] == "uniform"
    else:
        assert (report["uniform_fallback"], report["dropped"]) == (0, 4)
    captured = capsys.readouterr()
    assert captured.err.count("alignment failed") == 4
    closing = captured.out.strip().splitlines()[-1]
    assert closing.startswith(
        f"align: 11 utterances: 7 aligned, {report['uniform_fallback']} uniform fallback, {report['dropped']} dropped"
    )
    table = SegmentTable.read(tmp_path / "align" / "segments.h5")
    assert len(table.utt_ids) == 7 + report["uniform_fallback"]
    by_id = {u.utt_id: u for u in utts}
    for uid, method in zip(table.utt_ids, table.method):
        words = table.segments("word", uid)
        assert [w.label for w in words] == normalize_transcript(by_id[uid].text)
        assert all(0 <= w.start < w.end <= table.duration[table.index(uid)] + 0.011 for w in words)
        syllables = table.segments("syllable", uid)
        assert {s.word for s in syllables} == set(range(len(words)))
        phones = table.segments("phone", uid)
        assert (method == "uniform") == (not phones)
        for p in phones:
            assert words[p.word].start - 1e-6 <= p.start < p.end <= words[p.word].end + 1e-6
        grid = textgrid.TextGrid.fromFile(str(tmp_path / "align" / "textgrid" / f"{uid}.TextGrid"))
        assert [t.name for t in grid] == list(TIERS)
        assert [iv.mark for iv in grid[0] if iv.mark] == [w.label for w in words]


def test_pocketsphinx_accuracy_on_tiny_corpus(
    tiny_corpus: Path, tiny_manifest: list[Utterance], tmp_path: Path
) -> None:
    write_manifest(tmp_path / "m.jsonl", tiny_manifest)
    cfg = AlignConfig(out=str(tmp_path / "align"), report=str(tmp_path / "a.json"), n_jobs=1)
    report = run_align(tmp_path / "m.jsonl", cfg)
    assert report["aligned"] == len(tiny_manifest) and report["audio_seconds_per_wall_second"] > 5
    metrics = run_align_eval(
        tiny_corpus / "truth" / "words.jsonl", tmp_path / "align" / "segments.h5", tmp_path / "eval.json"
    )
    assert set(metrics) >= {
        "onset_median_ms",
        "onset_mean_ms",
        "onset_within_20ms",
        "onset_within_50ms",
        "offset_median_ms",
        "n_words",
        "n_utterances",
    }
    assert metrics["n_utterances"] == len(tiny_manifest) and metrics["n_words"] > 50
    assert metrics["onset_within_50ms"] >= 0.9 and metrics["onset_median_ms"] <= 20


def test_iemocap_backend_reproduces_truth_within_a_frame(
    tiny_corpus: Path, tiny_manifest: list[Utterance], tmp_path: Path
) -> None:
    write_manifest(tmp_path / "m.jsonl", tiny_manifest)
    cfg = AlignConfig(backend="iemocap", out=str(tmp_path / "align"), report=str(tmp_path / "a.json"), n_jobs=1)
    report = run_align(tmp_path / "m.jsonl", cfg)
    assert report["aligned"] == len(tiny_manifest)
    table = SegmentTable.read(tmp_path / "align" / "segments.h5")
    truth = read_truth(tiny_corpus / "truth" / "words.jsonl")
    aligned = {u: table.segments("word", u) for u in table.utt_ids}
    metrics = evaluate(truth, aligned, "iemocap")
    assert metrics["n_words"] >= sum(len(truth[u]) for u in aligned) - 2
    assert metrics["onset_within_20ms"] == 1.0
    onset_max = max(
        abs(w.start - t["start"])
        for u in aligned
        for w, t in zip(aligned[u], truth[u])
        if t["word"].split()[0].lower() == w.label
    )
    assert onset_max <= 0.0101
    # .wdseg only (no .phseg): syllables come from pyphen, phones are empty.
    assert len(table.levels["phone"]["start"]) == 0 and len(table.levels["syllable"]["start"]) > 0


def test_iemocap_backend_missing_file_follows_policy(tiny_manifest: list[Utterance], tmp_path: Path) -> None:
    wav = tiny_manifest[0].wav.replace(Path(tiny_manifest[0].wav).stem, "Ses03M_impro03_M001")
    missing = dataclasses.replace(tiny_manifest[0], utt_id="Ses03M_impro03_M001", wav=wav)
    write_tone(Path(missing.wav))
    try:
        write_manifest(tmp_path / "m.jsonl", [tiny_manifest[1], missing])
        cfg = AlignConfig(
            backend="iemocap", out=str(tmp_path / "align"), report=str(tmp_path / "a.json"), n_jobs=1, on_failure="drop"
        )
        report = run_align(tmp_path / "m.jsonl", cfg)
    finally:
        Path(missing.wav).unlink()
    assert report["dropped"] == 1 and "no word segmentation file" in report["failed"][0]["reason"]


@pytest.mark.parametrize("wav", ["u.wav", "dialog/u.wav", "corpus/sentences/audio/dialog/u.wav"])
def test_iemocap_backend_names_a_wav_outside_the_corpus_layout(tiny_manifest: list[Utterance], wav: str) -> None:
    result = IemocapAligner().align(dataclasses.replace(tiny_manifest[0], wav=wav))
    assert isinstance(result, AlignmentFailure)
    assert result.reason.startswith(f"{wav}: not in IEMOCAP's layout")


def test_rerun_removes_textgrids_of_dropped_utterances_and_refuses_duplicate_ids(
    tiny_manifest: list[Utterance], tmp_path: Path
) -> None:
    cfg = AlignConfig(backend="iemocap", out=str(tmp_path / "align"), report=str(tmp_path / "a.json"), n_jobs=1)
    write_manifest(tmp_path / "m.jsonl", tiny_manifest[:3])
    run_align(tmp_path / "m.jsonl", cfg)
    grids = tmp_path / "align" / "textgrid"
    assert sorted(p.stem for p in grids.glob("*.TextGrid")) == sorted(u.utt_id for u in tiny_manifest[:3])
    write_manifest(tmp_path / "m.jsonl", tiny_manifest[1:3])  # the first utterance is gone now
    run_align(tmp_path / "m.jsonl", cfg)
    assert sorted(p.stem for p in grids.glob("*.TextGrid")) == sorted(u.utt_id for u in tiny_manifest[1:3])
    assert not list(grids.glob(".*"))  # no temporary files left
    write_manifest(tmp_path / "m.jsonl", [tiny_manifest[1], tiny_manifest[2], tiny_manifest[1]])
    with pytest.raises(StageError, match=rf"utterance id {tiny_manifest[1].utt_id} appears more than once"):
        run_align(tmp_path / "m.jsonl", cfg)


def test_align_stage_depends_only_on_manifest_code_and_align_params() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    align = stages["align"]
    assert align["params"] == ["transcribe.source", "align"]  # the source picks the manifest it reads
    assert align["deps"][:3] == ["${prepare.manifest}", "${transcribe.manifest}", "${transcribe.manifest}.source.json"]
    assert all(not d.startswith(("features", "models", "data/", "reports")) for d in align["deps"])


def _table_contents(path: Path) -> dict[str, tuple]:
    """Per utterance: duration, method and every level's rows, as bytes (exact float64 values)."""
    import h5py

    with h5py.File(path, "r") as f:
        ids = list(f["utt_ids"].asstr()[()])
        out: dict[str, tuple] = {}
        for i, uid in enumerate(ids):
            rows: list = [f["duration"][i].tobytes(), f["method"].asstr()[i]]
            for group in TIERS:
                g = f[group]
                a, b = g["offsets"][i], g["offsets"][i + 1]
                rows += [
                    g["start"][a:b].tobytes(),
                    g["end"][a:b].tobytes(),
                    g["word"][a:b].tobytes(),
                    tuple(g["label"].asstr()[a:b]),
                ]
            out[uid] = tuple(rows)
    return out


@pytest.fixture(scope="module")
def determinism_utts(tiny_manifest: list[Utterance], tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    """Eight corpus utterances with an out-of-dictionary one in the middle (its added word must change nothing)."""
    folder = tmp_path_factory.mktemp("oov")
    spoken = speak("Zorblax is here.", Speaker("F", "en-us+f2", 0, 0), Prosody(), None, "", np.random.default_rng(0))
    write_audio(folder / "oov.wav", spoken.audio)
    oov = dataclasses.replace(
        tiny_manifest[0],
        utt_id="Ses01F_impro09_F950",
        text="Zorblax is here.",
        wav=str(folder / "oov.wav"),
        duration=len(spoken.audio) / 16000,
    )
    return tiny_manifest[:4] + [oov] + tiny_manifest[4:8]


@pytest.fixture(scope="module")
def fresh_reference(determinism_utts: list[Utterance], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each utterance aligned by its own new aligner: the table every other run must equal."""
    from mger.alignment.pocketsphinx_backend import PocketsphinxAligner
    from mger.alignment.stage import align_one
    from mger.alignment.table import write_table

    results = [align_one(PocketsphinxAligner(), u, "drop")[0] for u in determinism_utts]
    assert all(r.method == "aligned" for r in results)
    path = tmp_path_factory.mktemp("fresh") / "segments.h5"
    write_table(path, results, "pocketsphinx")
    return path


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("order", ["manifest", "reversed"])
def test_segment_table_independent_of_workers_and_order(
    determinism_utts: list[Utterance], fresh_reference: Path, tmp_path: Path, n_jobs: int, order: str
) -> None:
    utts = determinism_utts if order == "manifest" else determinism_utts[::-1]
    write_manifest(tmp_path / "m.jsonl", utts)
    cfg = AlignConfig(out=str(tmp_path / "align"), report=str(tmp_path / "a.json"), n_jobs=n_jobs, on_failure="drop")
    run_align(tmp_path / "m.jsonl", cfg)
    table = tmp_path / "align" / "segments.h5"
    assert _table_contents(table) == _table_contents(fresh_reference)
    if order == "manifest":  # same order: the whole file is the same bytes
        assert table.read_bytes() == fresh_reference.read_bytes()


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigkilled_align_leaves_no_worker_behind(tiny_manifest: list[Utterance], tmp_path: Path) -> None:
    """`mger align --n-jobs 2` killed outright: its joblib workers end too (PR_SET_PDEATHSIG)."""
    write_manifest(tmp_path / "m.jsonl", tiny_manifest)
    params = tmp_path / "p.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "prepare": {"manifest": str(tmp_path / "m.jsonl")},
                "align": {"out": str(tmp_path / "align"), "report": str(tmp_path / "a.json"), "n_jobs": 2},
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mger.pipeline.cli", "align", "--params", str(params)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, workers = time.time() + 120, set()
    while time.time() < deadline and proc.poll() is None:
        workers = {c for c in _children(proc.pid) if "loky" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")}
        if len(workers) >= 2 and all(Path(f"/proc/{w}").exists() for w in workers):
            time.sleep(0.5)  # let them start aligning
            break
        time.sleep(0.05)
    assert proc.poll() is None and workers, "align ended before it could be killed"
    proc.kill()
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)
    # what the killed run left is whole or absent: a readable segment table and report, or none
    if (tmp_path / "align" / "segments.h5").exists():
        assert len(SegmentTable.read(tmp_path / "align" / "segments.h5").utt_ids) == len(tiny_manifest)
    if (tmp_path / "a.json").exists():
        json.loads((tmp_path / "a.json").read_text())
    for grid in (tmp_path / "align" / "textgrid").glob("*.TextGrid"):
        textgrid.TextGrid.fromFile(str(grid))


def test_pocketsphinx_pronounces_the_written_form_and_labels_the_dictionary_word(tmp_path: Path) -> None:
    """eSpeak reads "Inés" as nine phones and "ines" as four: the aligner uses the written form
    (an entry ``inés``), keeps CMUdict's pronunciation of the folded word as a variant
    (``inés(2)``, ``renée(2)``), and labels the words with the dictionary words."""
    aligner = PocketsphinxAligner()
    added = aligner._ensure_words(written_forms("Inés met Renée"))
    assert added == {"inés": " ".join(pronounce("inés")), "renée": " ".join(pronounce("renée"))}
    assert len(added["inés"].split()) > len(pronounce("ines")) + 3
    dec = aligner._decoder(0)
    assert dec.lookup_word("renée(2)") == dec.lookup_word("renee") == "R AH N EY"
    assert dec.lookup_word("inés(2)") == dec.lookup_word("ines") == "IH N IH S"  # CMUdict's, as a variant
    spoken = speak("Inés met Renée.", Speaker("F", "en-us+f2", 0, 0), Prosody(), None, "", np.random.default_rng(0))
    write_audio(tmp_path / "a.wav", spoken.audio)
    utt = iemocap_row(
        "u", 1, "d", "F", "F", True, str(tmp_path / "a.wav"), 2.0, "Inés met Renée.", "neu", "neu", 3, 3, 3
    )
    result = aligner.align(utt)
    assert [w.label for w in result.words] == ["ines", "met", "renee"]
    assert result.unknown_words == added


def test_fast_speech_without_a_path_is_aligned_at_a_higher_frame_rate(tmp_path: Path) -> None:
    """The development set's en-us-nyc+kaukovalta at 300 wpm: phones shorter than three 10 ms
    frames leave no path at 100 frames/s at any beam; at FAST_FRATE the utterance aligns."""
    from mger.corpus.heldout import DEV_SEED, DEV_SENTENCES, DEV_SHIFT, RATES, speak_utterance, voices

    i = 58
    voice, rate = voices(i + 1, DEV_SHIFT)[i], RATES[(i + DEV_SHIFT) % len(RATES)]
    assert (voice, rate) == ("en-us-nyc+kaukovalta", 300)
    (tmp_path / "wav").mkdir()
    utt, _ = speak_utterance(tmp_path, tmp_path, i, DEV_SENTENCES[i % len(DEV_SENTENCES)], voice, rate, DEV_SEED, "Dev")
    aligner = PocketsphinxAligner()
    forms = written_forms(utt.text)
    aligner._ensure_words(forms)
    text = " ".join(form for _, form in forms)
    assert aligner._align_at(text, read_audio(utt.wav), len(forms), 100) is None
    result = aligner.align(utt)
    assert result.method == "aligned" and "no path at 100 frames/s: aligned at 150 frames/s" in result.notes
    assert [w.label for w in result.words] == [w for w, _ in forms]
    assert all(a.end <= b.start + 1e-9 for a, b in zip(result.words, result.words[1:]))


def test_uniform_fallback_refuses_audio_too_short_to_hold_the_words() -> None:
    """A truncated wav (a few ms for a sentence) is dropped, not given words a fraction of a ms long."""
    from mger.alignment.uniform import MIN_SECONDS_PER_WORD, uniform_alignment

    text = "This is a much longer transcript than the audio could ever hold."
    n = len(normalize_transcript(text))
    enough = np.full(int(MIN_SECONDS_PER_WORD * 16000 * n) + 1, 0.1, np.float32)
    assert uniform_alignment("u", text, enough[:30], "short") is None
    spread = uniform_alignment("u", text, enough, "short")
    assert spread is not None and [w.label for w in spread.words] == normalize_transcript(text)


def test_pocketsphinx_names_an_utterance_without_text() -> None:
    """A row without any text (MSP-Podcast's segment without a transcript: text_source none) fails
    with its own reason, not as a transcript of markers only; the audio is never read."""
    utt = iemocap_row("u", 1, "d", "F", "F", True, "missing.wav", 2.0, "", "neu", "neu", 3, 3, 3)
    result = PocketsphinxAligner().align(dataclasses.replace(utt, text_source="none"))
    assert isinstance(result, AlignmentFailure) and result.reason.startswith("no text (text_source none)")
    assert "markers only" in PocketsphinxAligner().align(utt).reason  # empty gold text: the old reason
