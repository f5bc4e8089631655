"""``mger export`` / ``mger predict`` / ``mger.load_system``: a system predicts new audio as the
evaluation predicted it (tiny random models, the tiny synthetic corpus)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

import mger
from mger.core.audio import read_audio
from mger.core.manifest import read_manifest
from mger.core.splits import final_split, fold_split
from mger.models.predictions import read_predictions
from mger.pipeline.cli import main

FOLD = 2
EXPERIMENTS = {
    "late": {"model": "late", "speech_levels": ["word"], "late_weights": "fitted"},
    "probe_both": {"model": "probe", "probe": "both", "speech_levels": ["utterance"], "text_level": "token"},
    "audio_utt": {"model": "audio", "speech_levels": ["utterance"]},
    "text_word": {"model": "text", "text_level": "word"},
}
FT_EXPERIMENTS = {"ft_coatt": {"model": "coattention", "speech_levels": ["word"]}}


def _params(tmp: Path, aligned: dict[str, Path], tiny_models: dict[str, str], finetuned: bool) -> Path:
    params = {
        "prepare": {"manifest": str(aligned["manifest"])},
        "align": {"backend": "iemocap", "out": str(aligned["segments"].parent), "n_jobs": 1},
        "features": {
            "out": str(tmp / "features"),
            "shard_size": 8,
            "n_jobs": 1,
            "speech": {"model": tiny_models["speech"], "levels": ["frame", "phone", "syllable", "word", "utterance"]},
            "text": {"model": tiny_models["text"]},
            "extra_speech": {},
        },
        "finetune": {
            "out": str(tmp / "ft"),
            "features_out": str(tmp / "ftf"),
            "reports": str(tmp / "ftr"),
            "folds": [1, 2, 3],
            "epochs": 1,
            "patience": 1,
            "batch_size": 4,
            "lr": 1e-3,
            "max_train_seconds": 1.0,
            "text": True,
        },
        "train": {
            "epochs": 3,
            "patience": 3,
            "hidden": 16,
            "heads": 2,
            "layers": 1,
            "seeds": [0, 1],
            "n_jobs": 1,
            "device": "cpu",
            "metrics_dir": str(tmp / "metrics"),
            "epochs_dir": str(tmp / "epochs"),
            "predictions_dir": str(tmp / "predictions"),
            "experiments": {} if finetuned else EXPERIMENTS,
            "finetuned_experiments": FT_EXPERIMENTS if finetuned else {},
        },
    }
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _run(*argv: str) -> None:
    assert main(list(argv)) == 0, argv


@pytest.fixture(scope="module")
def frozen(tiny_models, aligned, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("frozen")
    params = str(_params(tmp, aligned, tiny_models, finetuned=False))
    _run("extract", "--params", params)
    for name in EXPERIMENTS:
        _run("train", "--params", params, "--experiment", name)
    return {"params": params, "tmp": tmp}


def _test_wavs(aligned: dict[str, Path], fold: int) -> tuple[list, Path]:
    utts = read_manifest(aligned["manifest"])
    split = fold_split(utts, fold)
    test = [utts[i] for i in split.test]
    return test, aligned["manifest"]


def _predict_fold(tmp: Path, system: Path, aligned: dict[str, Path], fold: int, out_name: str) -> dict[str, dict]:
    test, manifest = _test_wavs(aligned, fold)
    listing = tmp / f"{out_name}-list.csv"
    with listing.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "text"])
        for u in test:
            w.writerow([str(Path(u.wav).resolve()), u.text])
    out = tmp / f"{out_name}.csv"
    _run("predict", str(system), str(listing), "--out", str(out), "--device", "cpu")
    rows = list(csv.DictReader(out.open()))
    assert not any(r["error"] for r in rows), [r["error"] for r in rows if r["error"]]
    by_wav = {str(Path(u.wav).resolve()): u.utt_id for u in test}
    return {by_wav[r["name"]]: r for r in rows}


def _expected(pred_csv: Path, fold: int) -> dict[str, np.ndarray]:
    """utterance → its fold's probabilities averaged over seeds (the system's output)."""
    pred = read_predictions(pred_csv)
    keep = pred.fold == fold
    out: dict[str, list[np.ndarray]] = {}
    for u, p in zip(pred.utt_ids[keep], pred.probs[keep]):
        out.setdefault(str(u), []).append(p)
    return {u: np.mean(ps, 0) for u, ps in out.items()}


@pytest.mark.parametrize("name", ["late", "probe_both", "text_word"])
def test_exported_fold_system_predicts_as_the_evaluation_did(frozen, aligned, name: str) -> None:
    tmp = frozen["tmp"]
    system = tmp / "systems" / f"{name}-fold{FOLD}"
    _run("export", "--params", frozen["params"], "--experiment", name, "--fold", str(FOLD), "--out", str(system))
    meta = json.loads((system / "system.json").read_text())
    assert meta["fold"] == FOLD and meta["mger_version"] == mger.__version__ and meta["seeds"] == [0, 1]
    assert meta["check"]["rows_compared"] > 0 and meta["check"]["max_abs_diff"] < 1e-5
    assert "speech" not in meta["stores"] or meta["stores"]["speech"]["identity"]["weights_sha256"]
    assert not list(system.rglob("*.pkl")) and not list(system.rglob("*.pt"))
    got = _predict_fold(tmp, system, aligned, FOLD, f"pred-{name}")
    want = _expected(tmp / "predictions" / f"{name}.csv", FOLD)
    assert set(got) == set(want)
    classes = meta["classes"]
    for u, row in got.items():
        probs = np.array([float(row[f"p_{c}"]) for c in classes])
        assert np.abs(probs - want[u]).max() < 1e-4, (u, probs, want[u])


@pytest.fixture(scope="module")
def finetuned_run(tiny_models, aligned, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("finetuned")
    params = str(_params(tmp, aligned, tiny_models, finetuned=True))
    _run("extract", "--params", params)
    for fold in (1, 2, 3):
        _run("finetune", "--params", params, "--fold", str(fold))
        _run("extract", "--params", params, "--fold", str(fold))
    _run("train", "--params", params, "--experiment", "ft_coatt")
    return {"params": params, "tmp": tmp}


def test_exported_finetuned_fold_system_predicts_as_the_evaluation_did(finetuned_run, aligned) -> None:
    tmp = finetuned_run["tmp"]
    system = tmp / "systems" / "ft"
    _run(
        "export",
        "--params",
        finetuned_run["params"],
        "--experiment",
        "ft_coatt",
        "--fold",
        str(FOLD),
        "--out",
        str(system),
    )
    meta = json.loads((system / "system.json").read_text())
    assert meta["stores"]["speech"]["settings"]["model"] == "encoders/speech"  # the fold's encoder, copied
    assert (system / "encoders" / "speech").is_dir() and (system / "encoders" / "text").is_dir()
    got = _predict_fold(tmp, system, aligned, FOLD, "pred-ft")
    want = _expected(tmp / "predictions" / "ft_coatt.csv", FOLD)
    classes = meta["classes"]
    assert set(got) == set(want)
    for u, row in got.items():
        assert np.abs(np.array([float(row[f"p_{c}"]) for c in classes]) - want[u]).max() < 1e-4


def test_final_split_validates_on_speakers_of_every_session(aligned) -> None:
    utts = read_manifest(aligned["manifest"])
    split = final_split(utts, 0)
    assert not split.test and sorted(split.train + split.val) == list(range(len(utts)))
    assert not {utts[i].speaker for i in split.train} & set(split.val_speakers)


def test_final_system_export_and_python_api(frozen, aligned) -> None:
    tmp = frozen["tmp"]
    system = tmp / "systems" / "late-final"
    _run("export", "--params", frozen["params"], "--experiment", "late", "--out", str(system))
    meta = json.loads((system / "system.json").read_text())
    assert meta["fold"] is None and meta["split"]["n_train"] + meta["split"]["n_val"] == len(
        read_manifest(aligned["manifest"])
    )
    utt = read_manifest(aligned["manifest"])[0]
    loaded = mger.load_system(system, device="cpu")
    from_path = loaded.predict(utt.wav, text=utt.text)
    assert set(from_path) == set(meta["classes"]) and abs(sum(from_path.values()) - 1) < 1e-5
    # samples given as an array are predicted as the same samples in a file (outside the corpus
    # layout both: the iemocap backend finds no .wdseg and the uniform fallback aligns both alike)
    wave = read_audio(utt.wav)
    sf.write(tmp / "copy.wav", wave, 16000, subtype="FLOAT")
    from_copy = loaded.predict(tmp / "copy.wav", text=utt.text)
    from_array = loaded.predict(wave, text=utt.text)
    assert all(abs(from_array[c] - from_copy[c]) < 1e-6 for c in from_copy)
    with pytest.raises(Exception, match="give a transcript"):
        loaded.predict(utt.wav)


def test_bad_files_and_refusals(frozen, aligned, tmp_path) -> None:
    tmp = frozen["tmp"]
    system = tmp / "systems" / "text_word-fold2"
    if not system.is_dir():
        _run("export", "--params", frozen["params"], "--experiment", "text_word", "--fold", "2", "--out", str(system))
    utt = read_manifest(aligned["manifest"])[0]
    folder = tmp_path / "in"
    folder.mkdir()
    wave = read_audio(utt.wav)
    sf.write(
        folder / "a_stereo_44k.wav",
        np.stack([np.interp(np.arange(0, len(wave), 16000 / 44100), np.arange(len(wave)), wave)] * 2, 1),
        44100,
    )
    (folder / "b_broken.wav").write_bytes(b"RIFF not a wav")
    out = tmp_path / "p.json"
    assert main(["predict", str(system), str(folder), "--text", utt.text, "--out", str(out), "--device", "cpu"]) == 0
    rows = json.loads(out.read_text())["predictions"]
    assert [Path(r["name"]).name for r in rows] == ["a_stereo_44k.wav", "b_broken.wav"]
    assert rows[0]["error"] is None and rows[1]["error"] and "b_broken.wav" in rows[1]["error"]
    # a text system refuses audio alone, in one line naming the file
    assert main(["predict", str(system), str(folder / "a_stereo_44k.wav"), "--out", str(tmp_path / "q.csv")]) == 1
    row = next(csv.DictReader((tmp_path / "q.csv").open()))
    assert "needs a transcript" in row["error"] and "\n" not in row["error"]
    # another mger version, or a changed encoder: refused in one line naming the difference
    other = tmp_path / "other"
    shutil.copytree(system, other)
    meta = json.loads((other / "system.json").read_text())
    (other / "system.json").write_text(json.dumps(meta | {"mger_version": "0.0.1"}))
    with pytest.raises(Exception, match="exported by mger 0.0.1, this is mger"):
        mger.load_system(other)
    meta["stores"]["text"]["identity"]["weights_sha256"] = "0" * 64
    (other / "system.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="weights sha256 .* exported with 000000000000"):
        mger.load_system(other, device="cpu").predict(utt.wav, text=utt.text)


def test_long_recording_is_split_at_pauses_and_predicted_per_segment(frozen, aligned, tmp_path) -> None:
    tmp = frozen["tmp"]
    system = tmp / "systems" / "audio_utt-fold2"
    _run("export", "--params", frozen["params"], "--experiment", "audio_utt", "--fold", "2", "--out", str(system))
    pause = np.zeros(int(0.8 * 16000), np.float32)
    pieces, spans, t = [], [], 0.0
    for u in read_manifest(aligned["manifest"]) * 4:
        w = read_audio(u.wav)
        pieces += [w, pause]
        spans.append((t, t + len(w) / 16000))
        t += (len(w) + len(pause)) / 16000
        if t >= 60:
            break
    wav = tmp_path / "long.wav"
    sf.write(wav, np.concatenate(pieces), 16000)
    assert t >= 60
    out = tmp_path / "long.csv"
    _run("predict", str(system), str(wav), "--out", str(out), "--device", "cpu", "--max-seconds", "20")
    rows = list(csv.DictReader(out.open()))
    assert all(not r["error"] for r in rows) and len(rows) >= 3
    starts, ends = [float(r["start"]) for r in rows], [float(r["end"]) for r in rows]
    assert starts == sorted(starts) and all(e - s <= 20 + 1e-6 for s, e in zip(starts, ends)) and ends[-1] <= t
    assert "split by" in rows[0]["note"]
    # the segments follow the utterances: most start within 0.3 s of one
    near = sum(min(abs(s - a) for a, _ in spans) < 0.3 for s in starts)
    assert near >= 0.8 * len(rows), (starts, spans)
    for r in rows:
        assert abs(sum(float(v) for k, v in r.items() if k.startswith("p_")) - 1) < 1e-4
    with pytest.raises(Exception, match="reads speech; text alone"):  # an audio system refuses text alone
        mger.load_system(system, device="cpu").predict(None, text="hello there")


def test_long_recording_with_one_transcript_gives_each_segment_its_words(frozen, aligned, tmp_path) -> None:
    tmp = frozen["tmp"]
    system = tmp / "systems" / "text_word-fold2"
    if not system.is_dir():
        _run("export", "--params", frozen["params"], "--experiment", "text_word", "--fold", "2", "--out", str(system))
    utts = read_manifest(aligned["manifest"])[:8]
    pause = np.zeros(int(0.8 * 16000), np.float32)
    wav = tmp_path / "long.wav"
    sf.write(wav, np.concatenate([x for u in utts for x in (read_audio(u.wav), pause)]), 16000)
    out = tmp_path / "long.json"
    text = " ".join(u.text for u in utts)
    _run("predict", str(system), str(wav), "--text", text, "--out", str(out), "--device", "cpu", "--max-seconds", "6")
    rows = json.loads(out.read_text())["predictions"]
    assert len(rows) >= 4 and all(r["start"] is not None for r in rows)  # 8 utterances, 6 s at most each
    done = [r for r in rows if r["error"] is None]
    assert done and all(r["text"] for r in done)
    words = " ".join(r["text"] for r in done).split()
    assert 0.5 * len(text.split()) <= len(words) <= 1.2 * len(text.split())  # the aligner may split a token
