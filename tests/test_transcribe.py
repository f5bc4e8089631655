"""`mger transcribe` (#33): transcripts, the ASR manifest, WER, and text.source through the pipeline."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from mger.core.config_transcribe import TranscribeConfig
from mger.core.manifest import read_manifest, write_manifest
from mger.core.reporting import StageError
from mger.core.transcripts import Transcript, read_transcripts, text_manifest, write_transcripts
from mger.models.wer import utterance_errors, wer_table
from mger.pipeline.cli import main
from mger.pipeline.transcribe import run_transcribe
from tests.test_dvc_pipeline import _run, scratch_repo  # noqa: F401  (the scratch DVC repo fixture)
from tests.tiny_asr import tiny_whisper_asr


def _cfg(tmp: Path, **kw) -> TranscribeConfig:
    return TranscribeConfig(
        out=str(tmp / "transcripts.jsonl"),
        manifest=str(tmp / "manifest-asr.jsonl"),
        report=str(tmp / "transcribe.json"),
        n_jobs=1,
        **kw,
    )


@pytest.fixture(scope="module")
def small_manifest(aligned: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three utterances of the tiny corpus, an empty wav and a silent one."""
    out = tmp_path_factory.mktemp("asr")
    utts = read_manifest(aligned["manifest"])[:3]
    empty, silent = out / "empty.wav", out / "silent.wav"
    sf.write(str(empty), np.zeros(0, np.float32), 16000, subtype="PCM_16")
    sf.write(str(silent), np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    extra = [
        replace(utts[0], utt_id="Ses01F_empty", wav=str(empty), duration=0.0),
        replace(utts[0], utt_id="Ses01F_silent", wav=str(silent), duration=1.0),
    ]
    write_manifest(out / "manifest.jsonl", utts + extra)
    return out / "manifest.jsonl"


def test_transcripts_round_trip_and_a_damaged_line_is_named(tmp_path: Path) -> None:
    rows = [Transcript("a", "hello there", "pocketsphinx", "m", "id1"), Transcript("b", "", "whisper", "m", "i", "x")]
    write_transcripts(tmp_path / "t.jsonl", rows)
    assert list(read_transcripts(tmp_path / "t.jsonl").values()) == rows
    (tmp_path / "t.jsonl").write_text((tmp_path / "t.jsonl").read_text() + '{"utt_id": "c"\n')
    with pytest.raises(StageError, match=r"t.jsonl:3: not a JSON object"):
        read_transcripts(tmp_path / "t.jsonl")


def test_wer_counts_and_groups() -> None:
    # normalised alike: case, punctuation and markers do not count; numbers are spelled out
    assert utterance_errors("Hello, World! [LAUGHTER]", "hello world")["word_errors"] == 0
    assert utterance_errors("I paid 20 dollars", "i paid twenty")["word_errors"] == 1  # one deletion
    rows = [
        {"ref": "a b c d", "hyp": "a b c d", "speaker": "s1", "emotion": "hap", "group": "g1", "partition": "Train"},
        {
            "ref": "a b",
            "hyp": "x",
            "speaker": "s2",
            "emotion": "hap",
            "group": "g2",
            "partition": "Test1",
        },  # 1 sub + 1 del
        {"ref": "", "hyp": "a", "speaker": "s2", "emotion": "sad", "group": "g2", "partition": "Test1"},  # not scored
    ]
    t = wer_table(rows)
    assert t["by_group"]["g2"]["wer"] == pytest.approx(1.0) and t["by_partition"]["Train"]["wer"] == 0
    assert "by_corpus" not in t  # one corpus (none named): its overall row is the corpus's
    two = wer_table([{**r, "corpus": c} for r, c in zip(rows, ("crema_d", "iemocap", "iemocap"))])
    assert two["by_corpus"]["crema_d"]["wer"] == 0 and two["by_corpus"]["iemocap"]["wer"] == pytest.approx(1.0)
    assert "by_partition" not in wer_table([{**r, "partition": ""} for r in rows])  # a corpus without partitions
    assert t["overall"]["wer"] == pytest.approx(2 / 6) and t["overall"]["no_gold_words"] == 1
    assert t["by_speaker"]["s1"]["wer"] == 0 and t["by_speaker"]["s2"]["wer"] == pytest.approx(1.0)
    lo, hi = t["overall"]["wer_ci95"]
    assert 0 <= lo <= 2 / 6 <= hi <= 1
    assert t["by_emotion"]["sad"]["wer"] is None


def test_pocketsphinx_stage_writes_transcripts_manifest_and_report(small_manifest: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    report = run_transcribe(small_manifest, cfg)
    rows = read_transcripts(cfg.out)
    gold = read_manifest(small_manifest)
    assert list(rows) == [u.utt_id for u in gold]
    assert {r.backend for r in rows.values()} == {"pocketsphinx"}
    assert all(rows[u.utt_id].text for u in gold[:3])  # speech gets words
    # empty and silent audio: empty transcripts, recorded with their reason, never a crash
    assert rows["Ses01F_empty"].text == "" and rows["Ses01F_empty"].note.startswith("empty audio")
    assert rows["Ses01F_silent"].text == "" and rows["Ses01F_silent"].note.startswith("silent audio")
    assert {e["utt_id"] for e in report["empty"]} == {"Ses01F_empty", "Ses01F_silent"} and report["n_empty"] == 2
    # the report's WER is against the gold text (the empty and silent ones count as deletions of theirs)
    expected = wer_table(
        [{"ref": u.text, "hyp": rows[u.utt_id].text, "speaker": "", "emotion": "", "group": ""} for u in gold]
    )
    assert report["wer"]["overall"]["wer"] == pytest.approx(expected["overall"]["wer"])
    assert (
        0
        < wer_table(
            [{"ref": u.text, "hyp": rows[u.utt_id].text, "speaker": "", "emotion": "", "group": ""} for u in gold[:3]]
        )["overall"]["wer"]
        < 0.6
    )  # eSpeak's speech: mostly right, not all
    assert set(report["wer"]["by_group"]) == {u.group for u in gold}
    assert json.loads(Path(cfg.report).read_text())["model_id"] == rows[gold[0].utt_id].model_id
    asr = read_manifest(cfg.manifest)
    assert [u.text for u in asr] == [rows[u.utt_id].text for u in gold]
    assert {u.text_source for u in asr} == {"asr"}
    blank = {"text": "", "text_source": ""}
    assert [replace(u, **blank) for u in asr] == [replace(u, **blank) for u in gold]  # only the text differs


def test_text_manifest_chooses_and_refuses_a_stale_asr_manifest(small_manifest: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    with pytest.raises(StageError, match="no ASR manifest"):
        text_manifest(small_manifest, "asr", cfg.manifest)
    prepared = tmp_path / "prepared.jsonl"
    prepared.write_bytes(small_manifest.read_bytes())
    write_manifest(prepared, read_manifest(prepared)[:1])  # one short utterance: fast
    run_transcribe(prepared, cfg)
    assert text_manifest(prepared, "gold", cfg.manifest) == str(prepared)
    assert text_manifest(prepared, "asr", cfg.manifest) == cfg.manifest
    write_manifest(prepared, read_manifest(small_manifest)[:2])  # prepare ran again since
    with pytest.raises(StageError, match="stale: made from another"):
        text_manifest(prepared, "asr", cfg.manifest)


def test_text_source_asr_reaches_alignment_and_the_text_store(
    tiny_corpus: Path, tiny_models: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare → transcribe → align → extract text under transcribe.source asr (the CLI, as DVC runs it)."""
    from mger.alignment.table import SegmentTable
    from mger.features.cache import read_fingerprint

    monkeypatch.chdir(tmp_path)
    params = {
        "prepare": {"root": str(tiny_corpus), "manifest": "data/manifest.jsonl", "report": "reports/q.json"},
        "transcribe": {"source": "asr", "n_jobs": 1},
        "align": {"backend": "pocketsphinx", "n_jobs": 1},
        "features": {"speech": {"model": tiny_models["speech"]}, "text": {"model": tiny_models["text"]}, "n_jobs": 1},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["prepare"]) == 0
    write_manifest("data/manifest.jsonl", read_manifest("data/manifest.jsonl")[:3])
    assert main(["align"]) == 1  # source asr before transcribing: one line naming the missing ASR manifest
    assert main(["transcribe"]) == 0
    assert main(["align"]) == 0
    asr = {u.utt_id: u.text for u in read_manifest("data/manifest-asr.jsonl")}
    table = SegmentTable.read("data/align/segments.h5")
    from mger.alignment.normalize import normalize_transcript

    for utt_id in table.utt_ids:  # the aligner read the ASR words
        assert [w.label for w in table.segments("word", utt_id)] == normalize_transcript(asr[utt_id])
    assert main(["extract", "--kind", "text"]) == 0
    fp = read_fingerprint("data/features/text.h5")
    source = json.loads(Path("data/manifest-asr.jsonl.source.json").read_text())
    assert fp["text_source"] == "asr" and fp["asr_model_id"] == source["asr_model_id"]


def test_a_corpus_without_transcripts_runs_on_asr_text(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows without any text (text_source none: a user's own recordings, MSP-Podcast segments
    without a transcript) fail alignment on their text; under transcribe.source asr they are
    transcribed and aligned to the ASR words; the report has no WER to give."""
    from mger.alignment.table import SegmentTable

    monkeypatch.chdir(tmp_path)
    params = {
        "prepare": {"root": str(tiny_corpus), "manifest": "data/manifest.jsonl", "report": "reports/q.json"},
        "transcribe": {"source": "gold", "n_jobs": 1},
        "align": {"backend": "pocketsphinx", "n_jobs": 1, "on_failure": "drop"},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["prepare"]) == 0
    textless = [replace(u, text="", text_source="none") for u in read_manifest("data/manifest.jsonl")[:3]]
    write_manifest("data/manifest.jsonl", textless)
    assert main(["align"]) == 1  # gold: nothing to align any of them to
    assert main(["transcribe"]) == 0
    report = json.loads(Path("reports/transcribe.json").read_text())
    assert report["n_utterances"] == 3 and report["wer"] is None  # no gold text to score: no WER, said so
    params["transcribe"]["source"] = "asr"
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert main(["align"]) == 0
    table = SegmentTable.read("data/align/segments.h5")
    asr = read_manifest("data/manifest-asr.jsonl")
    assert {u.text_source for u in asr} == {"asr"} and table.utt_ids == [u.utt_id for u in asr]
    assert all(table.segments("word", u.utt_id) for u in asr)


def test_gold_stores_carry_no_text_source(reference_store: dict[str, Path]) -> None:
    """A store of the prepared (gold) manifest keeps the fingerprint it had before the ASR stage."""
    from mger.features.cache import read_fingerprint

    assert "text_source" not in read_fingerprint(reference_store["text"])


def test_dvc_stages_reading_the_transcript() -> None:
    """Exactly the stages that read text depend on transcribe.source; transcribe itself does not
    (switching the source re-runs no ASR), nor do prepare, the demo model or the alignment checks."""
    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]

    def params_of(stage: dict) -> list:
        return (stage.get("do") or stage).get("params", [])

    reading = {name for name, s in stages.items() if "transcribe.source" in params_of(s)}
    assert reading == {"align", "extract", "finetune", "extract_ft", "train", "report"}
    assert not any(str(p).startswith("transcribe") and p != "transcribe.source" for p in params_of(stages["align"]))
    assert "${transcribe.out}" in stages["transcribe"]["outs"]


def _asr_outputs(prepared: Path, tmp: Path) -> TranscribeConfig:
    """The transcribe stage's outputs for ``prepared`` as the stage writes them (its own functions),
    with a deterministic ASR: every transcript loses its last two words, so the ASR text differs."""
    from mger.core.reporting import write_json
    from mger.core.transcripts import source_identity, write_source

    cfg = _cfg(tmp)
    gold = read_manifest(prepared)
    asr = [replace(u, text=" ".join(u.text.split()[:-2])) for u in gold]
    write_transcripts(cfg.out, [Transcript(u.utt_id, u.text, "test", "drop-two", "v1") for u in asr])
    write_manifest(cfg.manifest, asr)
    write_source(cfg.manifest, source_identity("test", "drop-two", "v1", prepared))
    scored = [
        {"ref": g.text, "hyp": a.text, "speaker": g.speaker, "emotion": g.label, "group": g.group}
        for g, a in zip(gold, asr)
    ]
    write_json(
        cfg.report, {"backend": "test", "model": "drop-two", "model_id": "v1", "n_empty": 0, "wer": wer_table(scored)}
    )
    return cfg


@pytest.mark.parametrize("source", ["gold", "asr"])
def test_gold_vs_asr_pair_in_the_report(
    aligned: dict[str, Path], tiny_models: dict[str, str], tmp_path: Path, source: str
) -> None:
    """Experiments naming a transcript (text_source gold, asr) read its own text store under either
    transcribe.source, the unnamed one reads the run's; the report shows the WER table and the pair
    (gold vs ASR, same model, the named rows) with its paired test and interval."""
    from mger.features.cache import FeatureStore, read_fingerprint

    cfg = _asr_outputs(aligned["manifest"], tmp_path)
    params = {
        "prepare": {"manifest": str(aligned["manifest"])},
        "align": {"out": str(aligned["segments"].parent)},
        "transcribe": {"source": source, "out": cfg.out, "manifest": cfg.manifest, "report": cfg.report},
        "features": {
            "out": str(tmp_path / "features"),
            "speech": {"model": tiny_models["speech"], "levels": ["utterance"]},
            "text": {"model": tiny_models["text"]},
            "n_jobs": 1,
        },
        "train": {
            "epochs": 1,
            "seeds": [0],
            "metrics_dir": str(tmp_path / "metrics"),
            "epochs_dir": str(tmp_path / "ep"),
            "predictions_dir": str(tmp_path / "pred"),
            "experiments": {
                "text": {"model": "text"},
                "text_gold": {"model": "text", "text_source": "gold"},
                "text_asr": {"model": "text", "text_source": "asr"},
            },
        },
        "report": {
            "out": str(tmp_path / "r.md"),
            "figures": str(tmp_path / "fig"),
            "metrics": str(tmp_path / "m.json"),
        },
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    assert main(["extract", "--params", str(path)]) == 0
    feats = tmp_path / "features"
    asr_fp, gold_fp = read_fingerprint(feats / "text-asr.h5"), read_fingerprint(feats / "text-gold.h5")
    assert asr_fp["asr_model_id"] == "v1" and "text_source" not in gold_fp
    assert asr_fp["manifest_sha256"] != gold_fp["manifest_sha256"]
    run_fp = read_fingerprint(feats / "text.h5")  # the run's text: the store of its source's transcript
    assert run_fp["manifest_sha256"] == (gold_fp if source == "gold" else asr_fp)["manifest_sha256"]
    uid = FeatureStore(feats / "text.h5").utt_ids[0]
    same = feats / f"text-{source}.h5"
    assert (FeatureStore(feats / "text.h5").rows("token", uid) == FeatureStore(same).rows("token", uid)).all()
    assert main(["cache", "verify", "--params", str(path)]) == 0  # every store, each against its own manifest
    assert main(["cache", "verify", str(feats / "text-gold.h5"), "--params", str(path)]) == 0
    assert main(["train", "--experiment", "all", "--params", str(path)]) == 0
    read = {n: json.loads((tmp_path / "metrics" / f"{n}.json").read_text()) for n in ("text", "text_gold", "text_asr")}
    assert [read[n]["text_source"] for n in ("text", "text_gold", "text_asr")] == [source, "gold", "asr"]
    assert read["text_gold"]["provenance"]["stores"]["1"]["text"]["path"].endswith("text-gold.h5")
    assert main(["report", "--params", str(path)]) == 0
    report = (tmp_path / "r.md").read_text()
    assert "## Transcripts (ASR vs gold text)" in report and "| speaker | Ses01_F |" in report
    assert "| text_asr | text only (token) | frozen (ASR text) |" in report  # never taken for a gold row
    pairs = [line for line in report.splitlines() if re.match(r"\| text\w* \| text\w* \| [-+]", line)]
    assert [p.split("|")[1:3] for p in pairs] == [[" text_gold ", " text_asr "]]  # the named rows, once
    row = pairs[0].split("|")
    assert re.fullmatch(r"\[[-+]\d+\.\d\d, [-+]\d+\.\d\d\]", row[4].strip())  # the Δ's 95% CI
    assert re.fullmatch(r"< 0\.001|[01]\.\d{3}", row[5].strip())  # the paired test's p (UA)


def test_chunks_cover_long_audio_in_order() -> None:
    from mger.features.asr import chunk_waves

    waves = [np.arange(40000, dtype=np.float32), np.zeros(100, np.float32)]
    chunks, owners = chunk_waves(waves, 1.0)
    assert owners == [0, 0, 0, 1] and [len(c) for c in chunks] == [16000, 16000, 8000, 100]
    assert np.array_equal(np.concatenate(chunks[:3]), waves[0])


def test_whisper_backend_end_to_end_on_a_tiny_model(small_manifest: Path, tmp_path: Path) -> None:
    """transcribe.backend whisper on tiny random models: transcripts written for every utterance
    (long audio in 1 s chunks, batched), empty and silent audio recorded; another model's
    weights change the ASR identity every store built from its text carries."""
    from mger.core.config_transcribe import WhisperAsrSettings
    from mger.core.transcripts import fingerprint_entries

    identities = []
    for seed in (0, 1):
        model = tiny_whisper_asr(tmp_path / f"whisper-{seed}", seed)
        settings = WhisperAsrSettings(model=model, batch_size=3, chunk_seconds=1.0, max_new_tokens=8)
        cfg = replace(_cfg(tmp_path / f"run-{seed}", backend="whisper", device="cpu"), whisper=settings)
        report = run_transcribe(small_manifest, cfg)
        rows = read_transcripts(cfg.out)
        assert list(rows) == [u.utt_id for u in read_manifest(small_manifest)]
        assert {r.backend for r in rows.values()} == {"whisper"} and report["model"] == model
        assert rows["Ses01F_silent"].note.startswith("silent audio") and report["n_empty"] >= 2
        assert all(r.note or r.text for r in rows.values())  # an empty transcript always says why
        identities.append(fingerprint_entries(cfg.manifest))
    assert identities[0]["asr_backend"] == "whisper" and identities[0]["asr_model_id"] != identities[1]["asr_model_id"]


def test_switching_the_text_source_marks_only_the_stages_reading_text(scratch_repo: Path) -> None:  # noqa: F811
    """A real `dvc repro` up to the alignment, its checks and the eGeMAPS functionals; then
    transcribe.source asr: `dvc status` lists the alignment (changed param) and neither the ASR
    stage, prepare, synth, the demo model nor the functionals (extract_audio)."""
    import subprocess
    import sys

    params = yaml.safe_load((scratch_repo / "params.yaml").read_text())
    params["synth"].update(turns_per_dialog=3)
    params["transcribe"]["n_jobs"] = 1
    params["align"]["n_jobs"] = 1
    (scratch_repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run([sys.executable, "-m", "dvc", "repro", "align_eval", "demo_model", "extract_audio"], scratch_repo)
    assert "Running stage 'transcribe'" in out and "Running stage 'align'" in out
    assert (scratch_repo / "data" / "features-audio" / "speech-egemaps.h5").is_file()
    assert json.loads((scratch_repo / "reports" / "transcribe.json").read_text())["wer"]["overall"]["wer"] is not None
    params["transcribe"]["source"] = "asr"
    (scratch_repo / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=scratch_repo, capture_output=True, text=True, check=True
    )
    status = json.loads(proc.stdout)
    assert {"changed deps": {"params.yaml": {"transcribe.source": "modified"}}} in status["align"]
    assert not {"synth", "prepare", "transcribe", "demo_model", "align_eval", "extract_audio"} & set(status)
    assert "transcribe:" in (scratch_repo / "dvc.lock").read_text()  # ran once; the switch keeps it


def test_pocketsphinx_transcripts_do_not_depend_on_n_jobs(small_manifest: Path, tmp_path: Path) -> None:
    """Each utterance is decoded as by a fresh decoder: one process in order, or two workers whose
    decoders saw other utterances before, give the same transcripts."""
    from mger.pipeline.transcribe import run_recognizer

    utts = read_manifest(small_manifest)[:3]
    one = run_recognizer(utts[::-1], _cfg(tmp_path))[::-1]
    two = run_recognizer(utts, replace(_cfg(tmp_path), n_jobs=2), chunk_size=1)
    assert [r.text for r in one] == [r.text for r in two] and all(r.text for r in one)


def test_an_asr_text_row_reads_tokens_of_frozen_features_only() -> None:
    from mger.core.config import ExperimentSpec
    from mger.models.experiment import check_text_source

    check_text_source("t", ExperimentSpec(model="text", text_source="asr"), "m.jsonl")
    with pytest.raises(StageError, match="train.experiments.t: text_source asr needs text_level token"):
        check_text_source("t", ExperimentSpec(model="text", text_level="word", text_source="asr"), "m.jsonl")
    with pytest.raises(StageError, match="needs the ASR manifest"):
        check_text_source("t", ExperimentSpec(model="text", text_source="asr"), None)
