"""``mger predict --asr`` (#33): files without a transcript are transcribed by the transcribe
stage's recognisers (the system's training one by default), and every output row records the
transcript used and where it came from (tiny random models, the tiny synthetic corpus)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from mger.core.audio import read_audio
from mger.core.config import read_params
from mger.core.config_transcribe import TranscribeConfig, WhisperAsrSettings
from mger.core.manifest import read_manifest
from mger.core.transcripts import source_identity, write_source
from mger.features.asr import PocketsphinxRecognizer, WhisperRecognizer, transcribe_files
from mger.models.system import asr_record
from mger.pipeline.cli import main
from tests.test_predict import _params, _run
from tests.tiny_asr import tiny_whisper_asr

WORDY_SEED = 2  # this seed's tiny random Whisper emits a "word" on eSpeak speech (most emit none)


@pytest.fixture(scope="module")
def text_system(tiny_models, aligned, tmp_path_factory) -> dict:
    """Fold 2's exported ``text_word`` system (gold text; word rows: it needs a transcript)."""
    tmp = tmp_path_factory.mktemp("predasr")
    params = _params(tmp, aligned, tiny_models, finetuned=False)
    p = yaml.safe_load(params.read_text())
    p["features"]["speech"]["levels"] = ["utterance"]
    p["train"] |= {"experiments": {"text_word": {"model": "text", "text_level": "word"}}, "seeds": [0]}
    params.write_text(yaml.safe_dump(p))
    _run("extract", "--params", str(params))
    _run("train", "--params", str(params), "--experiment", "text_word")
    system = tmp / "system"
    _run("export", "--params", str(params), "--experiment", "text_word", "--fold", "2", "--out", str(system))
    return {"params": params, "system": system, "tmp": tmp}


@pytest.fixture(scope="module")
def wavs(aligned, tmp_path_factory) -> dict[str, Path]:
    """Two eSpeak utterances of the tiny corpus, outside its layout, and a silent wav."""
    out = tmp_path_factory.mktemp("wavs")
    utts = read_manifest(aligned["manifest"])[:2]
    paths = {}
    for k, u in enumerate(utts):
        paths[f"speech{k}"] = out / f"speech{k}.wav"
        sf.write(paths[f"speech{k}"], read_audio(u.wav), 16000)
    paths["silent"] = out / "silent.wav"
    sf.write(paths["silent"], np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    return paths


def _predict(system: Path, *argv: str, out: Path) -> list[dict]:
    assert main(["predict", str(system), *argv, "--out", str(out), "--device", "cpu"]) == 0
    if out.suffix == ".json":
        return json.loads(out.read_text())["predictions"]
    return list(csv.DictReader(out.open()))


def test_asr_pocketsphinx_transcribes_files_without_a_transcript(text_system, wavs, tmp_path) -> None:
    """Given transcripts win; the others are pocketsphinx's, recorded per row with their source."""
    files = [str(wavs["speech0"]), str(wavs["speech1"])]
    want = [text for text, _ in transcribe_files(PocketsphinxRecognizer(), files)]
    assert all(want)  # eSpeak speech: pocketsphinx hears words
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,text\n{files[0]},\n{files[1]},hello there\n")
    argv = (str(listing), "--asr", "--asr-backend", "pocketsphinx")
    rows = _predict(text_system["system"], *argv, out=tmp_path / "p.csv")
    assert [r["name"] for r in rows] == files
    assert not any(r["error"] for r in rows) and all(r["label"] for r in rows)
    assert (rows[0]["text"], rows[0]["text_source"]) == (want[0], "asr:pocketsphinx")
    assert (rows[1]["text"], rows[1]["text_source"]) == ("hello there", "given")


def test_asr_silent_audio_is_an_empty_transcript_row_with_the_note(text_system, wavs, tmp_path) -> None:
    """A silent wav: empty transcript, the recogniser's note, the text system's one-line error; the
    batch goes on and the speech file is predicted."""
    out = tmp_path / "p.json"
    rows = _predict(text_system["system"], str(wavs["silent"]), str(wavs["speech0"]), "--asr", out=out)
    silent, speech = rows
    assert silent["text"] == "" and silent["text_source"] == "asr:pocketsphinx" and silent["probs"] is None
    assert "asr: silent audio" in silent["note"] and "needs" in silent["error"] and "silent.wav" in silent["error"]
    assert speech["error"] is None and speech["text"] and speech["text_source"] == "asr:pocketsphinx"
    assert json.loads(out.read_text())["system"]["asr"] is None  # a system of gold text


def test_asr_whisper_model_is_used_when_asked(text_system, wavs, tmp_path, capsys) -> None:
    """--asr-model (a tiny random Whisper folder): its transcripts are the rows' text."""
    model = tiny_whisper_asr(tmp_path / "whisper", seed=WORDY_SEED)
    rec = WhisperRecognizer(TranscribeConfig(backend="whisper", device="cpu", whisper=WhisperAsrSettings(model=model)))
    want = transcribe_files(rec, [str(wavs["speech0"])])[0]
    assert want[0]  # a word, so the text system predicts
    argv = ("--asr", "--asr-model", model, "--params", str(text_system["params"]))  # params: transcribe defaults
    rows = _predict(text_system["system"], str(wavs["speech0"]), *argv, out=tmp_path / "w.csv")
    assert rows[0]["text_source"] == "asr:whisper" and rows[0]["text"] == want[0]
    assert "asr (whisper, " + model in capsys.readouterr().err


def _with_asr_record(system: Path, params_path: Path, rec, folder: Path, aligned) -> Path:
    """A copy of ``system`` whose system.json records ``rec`` as its training recogniser, the
    record made by export's own :func:`asr_record` from a real ASR-manifest sidecar."""
    manifest = folder / "manifest-asr.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    write_source(manifest, source_identity(rec.backend, rec.model, rec.model_id, aligned["manifest"]))
    p = yaml.safe_load(params_path.read_text())
    p["features"]["speech"]["levels"] = ["utterance"]
    p["transcribe"] = {"source": "asr", "manifest": str(manifest), "backend": rec.backend}
    if rec.backend == "whisper":
        p["transcribe"]["whisper"] = {"model": rec.model}
    (folder / "p.yaml").write_text(yaml.safe_dump(p))
    params = read_params(str(folder / "p.yaml"))
    copy = folder / "system"
    shutil.copytree(system, copy)
    meta = json.loads((copy / "system.json").read_text())
    spec = params.train.all_experiments["text_word"]
    (copy / "system.json").write_text(json.dumps(meta | {"text_source": "asr", "asr": asr_record(params, spec)}))
    return copy


def test_default_recogniser_is_the_training_one_and_another_is_warned(text_system, wavs, aligned, tmp_path, capsys):
    """A system trained on Whisper text reads Whisper text by default (params say pocketsphinx);
    asking for pocketsphinx then warns in one line naming both recognisers."""
    model = tiny_whisper_asr(tmp_path / "whisper", seed=WORDY_SEED)
    rec = WhisperRecognizer(TranscribeConfig(backend="whisper", device="cpu", whisper=WhisperAsrSettings(model=model)))
    system = _with_asr_record(text_system["system"], text_system["params"], rec, tmp_path / "asr", aligned)
    assert json.loads((system / "system.json").read_text())["asr"]["model_id"] == rec.model_id
    capsys.readouterr()
    wav = str(wavs["speech0"])
    rows = _predict(system, wav, "--asr", "--params", str(text_system["params"]), out=tmp_path / "a.csv")
    assert rows[0]["text_source"] == "asr:whisper" and "warning: --asr" not in capsys.readouterr().err
    rows = _predict(system, wav, "--asr", "--asr-backend", "pocketsphinx", out=tmp_path / "b.csv")
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: --asr")]
    assert rows[0]["text_source"] == "asr:pocketsphinx" and len(err) == 1
    assert f"whisper {model} ({rec.model_id})" in err[0] and "transcribing with pocketsphinx" in err[0]


def test_asr_flags_need_asr(text_system, wavs, tmp_path) -> None:
    argv = ["predict", str(text_system["system"]), str(wavs["speech0"]), "--text", "hi", "--asr-backend", "whisper"]
    assert main([*argv, "--out", str(tmp_path / "x.csv")]) == 1
    assert not (tmp_path / "x.csv").exists()


def test_export_under_asr_text_records_the_recogniser(aligned, tiny_models, tmp_path) -> None:
    """transcribe.source asr: align, extract and train read the ASR manifest, and the export (the
    same manifest) records text_source asr and the recogniser named by the ASR manifest's sidecar."""
    from tests.test_transcribe import _asr_outputs

    cfg = _asr_outputs(aligned["manifest"], tmp_path / "asr")  # a deterministic "recogniser": test drop-two v1
    params = _params(tmp_path, aligned, tiny_models, finetuned=False)
    p = yaml.safe_load(params.read_text())
    p["align"]["out"] = str(tmp_path / "align")
    p["align"]["report"] = str(tmp_path / "align.json")
    p["features"]["speech"]["levels"] = ["utterance"]
    p["transcribe"] = {"source": "asr", "out": cfg.out, "manifest": cfg.manifest, "report": cfg.report}
    p["train"] |= {"experiments": {"text_word": {"model": "text", "text_level": "word"}}, "seeds": [0]}
    params.write_text(yaml.safe_dump(p))
    for argv in (["align"], ["extract"], ["train", "--experiment", "text_word"]):
        _run(*argv, "--params", str(params))
    system = tmp_path / "system"
    _run("export", "--params", str(params), "--experiment", "text_word", "--out", str(system))
    meta = json.loads((system / "system.json").read_text())
    assert meta["text_source"] == "asr" and meta["stores"]["text"]["identity"]["asr_model_id"] == "v1"
    assert {k: meta["asr"][k] for k in ("backend", "model", "model_id")} == {
        "backend": "test",
        "model": "drop-two",
        "model_id": "v1",
    }
