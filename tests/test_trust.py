"""What the pipeline must not trust: unsound segment times, silence "aligned", stores built
from an older alignment or manifest, predictions of another run; and two trains of one
experiment at once (issue 30, second pass)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mger.alignment.base import Alignment, Segment
from mger.alignment.evaluate import read_truth
from mger.alignment.pauses import silence_problem
from mger.alignment.stage import run_align
from mger.alignment.table import SegmentTable, SegmentTableError, write_table
from mger.core.audio import write_audio
from mger.core.config import (
    AlignConfig,
    ExperimentSpec,
    FeaturesConfig,
    SpeechFeaturesConfig,
    TextFeaturesConfig,
    params_from_dict,
)
from mger.core.manifest import read_manifest, write_manifest
from mger.core.reporting import StageError
from mger.corpus.espeak import Prosody
from mger.corpus.synth import Speaker, speak
from mger.features.cache import CacheError, StoreLock, file_sha256, write_store
from mger.features.cache_cli import cache_verify, cache_verify_all
from mger.features.fingerprint import check_store_inputs, load_aligned
from mger.models.experiment import run_experiment
from mger.models.fold_inputs import load_store_rows
from mger.models.report import write_report

UTT = "Ses01F_impro01_F000"


def _alignment(words: list[tuple[float, float, str]], duration: float = 1.0, uid: str = UTT) -> Alignment:
    return Alignment(uid, duration, [Segment(a, b, label) for a, b, label in words])


GOOD = [(0.1, 0.4, "hello"), (0.5, 0.9, "there")]


@pytest.mark.parametrize(
    "words, duration, what",
    [
        ([(0.1, 0.4, "hello"), (0.5, float("nan"), "there")], 1.0, "a time that is not finite"),
        ([(0.1, 0.4, "hello"), (0.5, 1e9, "there")], 1.0, "its end past the audio's duration"),
        ([(0.1, 0.4, "hello"), (0.9, 0.5, "there")], 1.0, "its start after its end"),
        ([(0.5, 0.9, "hello"), (0.1, 0.4, "there")], 1.0, "not in order"),
        (GOOD, float("inf"), "duration inf s"),
    ],
)
def test_unsound_times_are_never_written(tmp_path: Path, words, duration: float, what: str) -> None:
    path = tmp_path / "segments.h5"
    good = _alignment(GOOD, uid="Ses01F_impro01_M001")
    with pytest.raises(SegmentTableError, match=rf"segments\.h5: not written: {UTT}: .*{what}"):
        write_table(path, [good, _alignment(words, duration)], "pocketsphinx")
    assert not path.exists()


def _table_with_bad_time(tmp_path: Path, value: float) -> Path:
    """A sound table, then one word's end edited on disk (as a hostile user or a bad tool would)."""
    path = tmp_path / "align" / "segments.h5"
    write_table(path, [_alignment(GOOD, uid="Ses01F_impro01_M001"), _alignment(GOOD)], "pocketsphinx")
    SegmentTable.read(path)
    with h5py.File(path, "r+") as f:
        f["words/end"][3] = value
    return path


@pytest.mark.parametrize("value", [float("nan"), 1e9])
def test_a_table_edited_to_nan_or_huge_times_is_refused_everywhere(tmp_path: Path, value: float, capsys) -> None:
    path = _table_with_bad_time(tmp_path, value)
    message = rf"segments\.h5: {UTT}: word 1 \('there'.*re-run `mger align`"
    with pytest.raises(SegmentTableError, match=message):
        SegmentTable.read(path)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    with pytest.raises(SegmentTableError, match=message):  # extract reads the table first
        load_aligned(manifest, path)
    assert cache_verify(path) is False
    assert "CORRUPT segment table" in capsys.readouterr().out
    truth = tmp_path / "words.jsonl"
    truth.write_text(json.dumps({"utt_id": UTT, "words": [{"word": "hello", "start": 0.1, "end": 0.4}]}) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mger.pipeline.cli", "align-eval", "--truth", str(truth), "--segments", str(path)]
        + ["--out", str(tmp_path / "eval.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and not (tmp_path / "eval.json").exists()
    assert proc.stderr.count("\n") == 1 and f"{path}: {UTT}: word 1" in proc.stderr


@pytest.mark.parametrize("part", ["syllables", "words/start", "method"])
def test_a_table_missing_a_part_is_named(tmp_path: Path, part: str) -> None:
    """A level (or a column) deleted from segments.h5: one line naming the file and the part,
    not h5py's "Unable to synchronously open object"."""
    from mger.core.ragged_h5 import RaggedFormatError

    path = _table_with_bad_time(tmp_path, 0.9)
    with h5py.File(path, "r+") as f:
        del f[part]
    with pytest.raises(RaggedFormatError, match=rf"segments\.h5: not a whole segment table \(.*{part.split('/')[-1]}"):
        SegmentTable.read(path)


def test_levels_an_utterance_borrows_are_counted(tmp_path: Path) -> None:
    """Words only (no phones: the iemocap backend without .phseg): the phone rows are a coarser
    level's, and extract says how many, instead of a phone row silently equal to another row.
    (These alignments have no syllables either: both borrow the words.)"""
    from mger.features.rows import borrowed_levels

    path = tmp_path / "segments.h5"
    write_table(path, [_alignment(GOOD, uid="Ses01F_impro01_M001"), _alignment(GOOD)], "iemocap")
    table = SegmentTable.read(path)
    ids = ["Ses01F_impro01_M001", UTT]
    levels = ["frame", "phone", "syllable", "word", "utterance"]
    assert borrowed_levels(table, ids, levels) == {"phone": 2, "syllable": 2}
    assert borrowed_levels(table, ids, ["word", "utterance"]) == {}


def test_truth_with_non_finite_times_is_refused(tmp_path: Path) -> None:
    truth = tmp_path / "words.jsonl"
    truth.write_text(json.dumps({"utt_id": UTT, "words": [{"word": "hi", "start": 0.1, "end": float("nan")}]}) + "\n")
    with pytest.raises(ValueError, match=rf"words\.jsonl: {UTT}: word 'hi' has times 0\.1-nan"):
        read_truth(truth)


# --- silence and noise are not alignments ---------------------------------------------------------


def _speech(text: str) -> np.ndarray:
    return speak(text, Speaker("F", "en-us+f2", 0, 0), Prosody(), None, "", np.random.default_rng(0)).audio


def test_words_placed_over_silence_are_flagged_and_real_words_are_not() -> None:
    audio = _speech("That was the best day of my life.")
    noise = 10 ** (-60 / 20) * np.random.default_rng(1).standard_normal(2 * len(audio))
    padded = np.concatenate([audio, noise]).astype(np.float32)
    n = len(audio) / 16000
    words = [Segment(0.1 + k * n / 10, 0.1 + (k + 0.8) * n / 10, w) for k, w in enumerate("that was the".split())]
    assert silence_problem(padded, words) is None
    moved = [dataclasses.replace(w, start=w.start + n, end=w.end + n) for w in words]
    assert silence_problem(padded, moved).startswith("words placed over silence (100%")


@pytest.mark.parametrize("on_failure", ["uniform", "drop"])
def test_silent_and_noise_wavs_are_not_aligned(aligned, tmp_path: Path, on_failure: str, capsys) -> None:
    """Real pocketsphinx: digital silence and -60 dBFS noise with a transcript are failures under
    align.on_failure (uniform: marked; drop: left out) and counted; real speech is aligned."""
    good = read_manifest(aligned["manifest"])[:3]
    rng = np.random.default_rng(0)
    silent = {"F900": np.zeros(48000, np.float32), "F901": (1e-3 * rng.standard_normal(48000)).astype(np.float32)}
    bad = []
    for uid, audio in silent.items():
        write_audio(tmp_path / f"{uid}.wav", audio)
        bad.append(dataclasses.replace(good[0], utt_id=f"Ses01F_impro09_{uid}", wav=str(tmp_path / f"{uid}.wav")))
    write_manifest(tmp_path / "m.jsonl", good + bad)
    cfg = AlignConfig(out=str(tmp_path / "align"), report=str(tmp_path / "a.json"), n_jobs=1, on_failure=on_failure)
    report = run_align(tmp_path / "m.jsonl", cfg)
    assert report["aligned"] == 3 and report["silence_or_noise"] == 2
    assert all(f["reason"].startswith("no speech energy") for f in report["failed"])
    table = SegmentTable.read(tmp_path / "align" / "segments.h5")
    methods = dict(zip(table.utt_ids, table.method))
    if on_failure == "uniform":
        assert [methods[b.utt_id] for b in bad] == ["uniform", "uniform"]
    else:
        assert not any(b.utt_id in methods for b in bad)
    assert "(2 failed as silence or noise)" in capsys.readouterr().out


# --- stores built from an older alignment or manifest ---------------------------------------------


def _features(tiny_models: dict[str, str], out: Path | str) -> FeaturesConfig:
    speech = SpeechFeaturesConfig(model=tiny_models["speech"])
    return FeaturesConfig(out=str(out), shard_size=4, speech=speech, text=TextFeaturesConfig(model=tiny_models["text"]))


def _shifted_table(src: Path, dst: Path) -> Path:
    """``src`` aligned again with other settings: one word's end moved by 10 ms."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        f["words/end"][0] = f["words/end"][0] - 0.01
    return dst


def test_store_inputs_match_or_the_store_is_refused(reference_store, aligned, tmp_path: Path) -> None:
    store, manifest, segments = reference_store["speech"], aligned["manifest"], aligned["segments"]
    check_store_inputs(store, manifest, segments)
    check_store_inputs(reference_store["text"], manifest, segments)
    moved = _shifted_table(segments, tmp_path / "moved" / "segments.h5")
    with pytest.raises(CacheError, match=r"speech\.h5: stale: built from another segment table .*`mger extract`"):
        check_store_inputs(store, manifest, moved)
    utts = read_manifest(manifest)
    write_manifest(tmp_path / "m.jsonl", [dataclasses.replace(utts[0], text=utts[0].text + " Really.")] + utts[1:])
    with pytest.raises(CacheError, match=r"text\.h5: stale: built from other transcripts than .*m\.jsonl"):
        check_store_inputs(reference_store["text"], tmp_path / "m.jsonl", segments)
    write_store(tmp_path / "old.h5", ["a"], {"word": [np.zeros((1, 2))]}, {"fingerprint": json.dumps({"levels": []})})
    with pytest.raises(CacheError, match=r"old\.h5: no segments_sha256 recorded \(built by an older mger\)"):
        check_store_inputs(tmp_path / "old.h5", manifest, segments)


PROBE = ExperimentSpec(model="probe", probe="speech", speech_levels=["utterance"])


def _params(tiny_models, reference_store, aligned, root: Path):
    align = root / "align"
    align.mkdir(parents=True, exist_ok=True)
    shutil.copy(aligned["segments"], align / "segments.h5")
    return params_from_dict(
        {
            "prepare": {"manifest": str(aligned["manifest"])},
            "align": {"out": str(align), "report": str(aligned["segments"].parent.parent / "a.json")},
            "features": dataclasses.asdict(_features(tiny_models, reference_store["speech"].parent)),
            "train": {
                "seeds": [0],
                "metrics_dir": str(root / "metrics"),
                "epochs_dir": str(root / "epochs"),
                "predictions_dir": str(root / "predictions"),
                "experiments": {"probe": dataclasses.asdict(PROBE), "probe_text": {"model": "probe", "probe": "text"}},
            },
            "report": {"out": str(root / "r.md"), "figures": str(root / "fig"), "metrics": str(root / "metrics.json")},
        }
    )


def _train(params, name: str) -> dict:
    segments = Path(params.align.out) / "segments.h5"
    spec = params.train.experiments[name]
    return run_experiment(name, spec, params.train, params.features, params.prepare.manifest, segments=segments)


@pytest.fixture(scope="module")
def trained_probes(tiny_models, reference_store, aligned, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("trust")
    params = _params(tiny_models, reference_store, aligned, root)
    results = {name: _train(params, name) for name in params.train.experiments}
    return {"params": params, "root": root, "results": results}


def test_train_refuses_a_store_of_an_older_alignment(trained_probes, tmp_path: Path) -> None:
    params = trained_probes["params"]
    moved = _shifted_table(Path(params.align.out) / "segments.h5", tmp_path / "align" / "segments.h5")
    train = dataclasses.replace(params.train, metrics_dir=str(tmp_path / "m"))
    with pytest.raises(CacheError, match=r"speech\.h5: stale: built from another segment table"):
        run_experiment("probe", PROBE, train, params.features, params.prepare.manifest, segments=moved)
    assert not (tmp_path / "m" / "probe.json").exists()


def test_metrics_commit_their_predictions_and_the_report_checks(trained_probes) -> None:
    params, root = trained_probes["params"], trained_probes["root"]
    saved = json.loads((root / "metrics" / "probe.json").read_text())
    assert saved["predictions_sha256"] == file_sha256(root / "predictions" / "probe.csv")
    assert saved["epochs_sha256"] == file_sha256(root / "epochs" / "probe.csv")
    write_report(params)
    headline = json.loads((root / "metrics.json").read_text())
    assert headline["probe"] == {
        "test_ua": round(100 * saved["ua"]["mean"], 2),
        "test_wa": round(100 * saved["wa"]["mean"], 2),
        "val_ua": round(100 * saved["validation"]["ua"]["mean"], 2),
    }
    assert headline["best_by_validation"]["experiment"] in ("probe", "probe_text")
    assert "(marked), 0 dropped; 0 of the failures were silence or noise" in (root / "r.md").read_text()
    # another run's predictions beside these metrics (a train killed between its two writes)
    pred = root / "predictions" / "probe.csv"
    original = pred.read_text()
    pred.write_text(original.replace(",0.", ",1.", 1))
    try:
        with pytest.raises(StageError, match=r"probe\.csv: not the predictions written with .*probe\.json"):
            write_report(params)
    finally:
        pred.write_text(original)


def test_report_refuses_predictions_labelled_otherwise_than_the_manifest(trained_probes, tmp_path: Path) -> None:
    """`mger prepare` again with other labels (same utterances, so the stores stay valid): a row
    trained before is scored against the old truth, so the report refuses it in one line."""
    params = trained_probes["params"]
    utts = read_manifest(params.prepare.manifest)
    first = utts[0]
    other = next(u.label for u in utts if u.label != first.label)
    relabelled = tmp_path / "manifest.jsonl"
    write_manifest(relabelled, [dataclasses.replace(first, label=other), *utts[1:]])
    moved = dataclasses.replace(params, prepare=dataclasses.replace(params.prepare, manifest=str(relabelled)))
    message = rf"probe\.csv: {first.utt_id} is labelled {first.label} there but labelled {other} in .*manifest\.jsonl"
    with pytest.raises(StageError, match=message):
        write_report(moved)
    write_manifest(relabelled, utts)
    write_report(moved)  # the manifest the rows were trained on: fine


def test_report_refuses_metrics_of_a_store_built_before_the_current_alignment(trained_probes) -> None:
    params = trained_probes["params"]
    table = Path(params.align.out) / "segments.h5"
    original = table.read_bytes()
    _shifted_table(table, table.with_name("moved.h5")).replace(table)
    try:
        with pytest.raises(StageError, match=r"probe\.json: trained on a stale store: .*speech\.h5: stale"):
            write_report(params)
        assert cache_verify_all(params) is False
    finally:
        table.write_bytes(original)
    assert cache_verify_all(params) is True


def test_report_of_a_subset(trained_probes) -> None:
    params, root = trained_probes["params"], trained_probes["root"]
    write_report(params, ["probe_text"])
    rows = [line for line in (root / "r.md").read_text().splitlines() if line.startswith("| probe")]
    assert rows and all(line.startswith("| probe_text |") for line in rows)
    assert set(json.loads((root / "metrics.json").read_text())) == {"best_by_validation", "probe_text"}
    with pytest.raises(StageError, match=r"--experiment nope: not an experiment of train\.experiments"):
        write_report(params, ["nope"])


def test_a_second_train_of_one_experiment_stops_in_one_line(trained_probes) -> None:
    params = trained_probes["params"]
    lock = StoreLock(Path(params.train.metrics_dir) / "probe.json")
    assert lock.acquire()
    before = (Path(params.train.metrics_dir) / "probe.json").read_bytes()
    try:
        with pytest.raises(CacheError, match=r"probe\.json is being written by pid \d+; wait for it to finish"):
            _train(params, "probe")
    finally:
        lock.release()
    assert (Path(params.train.metrics_dir) / "probe.json").read_bytes() == before


@pytest.mark.parametrize("listed, fix", [(["word", "syllable"], "`mger extract` rebuilds it"), (["word"], "add it")])
def test_a_missing_level_says_what_to_do(tmp_path: Path, listed: list[str], fix: str) -> None:
    ids = ["a", "b"]
    attrs = {"fingerprint": json.dumps({"levels": listed})}
    write_store(tmp_path / "speech.h5", ids, {"word": [np.zeros((2, 3))] * 2}, attrs)
    with pytest.raises(StageError, match=rf"speech\.h5: no level 'syllable' \(it has word\); .*{fix}"):
        load_store_rows(["speech:syllable"], {"speech": tmp_path / "speech.h5"}, ids, 1)
