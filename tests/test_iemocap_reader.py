"""The corpus reader on a hand-built tree with the quirks real IEMOCAP copies have."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mger.core.audio import read_audio
from mger.core.manifest import MANIFEST_FIELDS, groups, read_manifest
from mger.core.reporting import StageError
from mger.corpus.iemocap import parse_emo_evaluation, parse_transcriptions, speaker_of
from mger.corpus.readers import Source, prepare_corpora, prepare_corpus, reader
from tests.builders import TreeBuilder, write_tone


@pytest.fixture()
def quirky_tree(tmp_path: Path) -> Path:
    root = tmp_path / "IEMOCAP_full_release"
    tb = TreeBuilder(root)
    # Session 1: latin-1 bytes and CRLF endings, an xxx and a fru label, a line without id,
    # a line without timestamp, a 44.1 kHz stereo wav, a corrupt wav, a missing wav.
    d1 = "Ses01F_impro01"
    turns1 = [
        (f"{d1}_F000", "neu", "Excuse me."),
        (f"{d1}_M000", "ang", "Caf\u00e9 is closed!"),
        (f"{d1}_F001", "xxx", "Whatever."),
        (f"{d1}_M001", "fru", "Not again."),
        (f"{d1}_F002", "exc", "Yes!"),
        (f"{d1}_M002", "sad", "I miss her."),
        (f"{d1}_F003", "hap", "Great."),
        (f"{d1}_M003", "neu", "Fine."),
    ]
    lines = [f"{uid} [{i * 2 + 1.0:08.4f}-{i * 2 + 1.5:08.4f}]: {text}" for i, (uid, _, text) in enumerate(turns1)]
    lines[6] = f"{d1}_F003: Great."  # no timestamp
    lines.insert(3, "M: [BREATHING]")  # no utterance id
    lines.insert(0, "")  # extra blank line
    tb.dialog(1, d1, turns1, transcript_lines=lines, encoding="latin-1", newline="\r\n")
    write_tone(tb.wav_path(1, d1, f"{d1}_F002"), rate=44100, channels=2)
    tb.wav_path(1, d1, f"{d1}_M002").write_bytes(b"RIFF\x00\x00garbage, not a wav file")
    tb.wav_path(1, d1, f"{d1}_M003").unlink()
    # Session 2: an empty wav, an empty transcript, a transcript missing, a duplicate id.
    d2 = "Ses02M_script01_1"
    turns2 = [
        (f"{d2}_F000", "neu", "Hello there."),
        (f"{d2}_M000", "sad", "Goodbye."),
        (f"{d2}_F001", "hap", ""),
        (f"{d2}_M001", "ang", "Go away."),
        (f"{d2}_F002", "neu", "Okay."),
    ]
    lines2 = [f"{uid} [000.0000-001.0000]: {text}" for uid, _, text in turns2 if uid != f"{d2}_M001"]
    tb.dialog(2, d2, turns2, transcript_lines=lines2)
    empty = tb.wav_path(2, d2, f"{d2}_F002")
    write_tone(empty, seconds=0.0)
    d3 = "Ses02M_script02_1"
    tb.dialog(2, d3, [(f"{d2}_F000", "neu", "Duplicate."), (f"{d3}_M000", "neu", "Unique.")])
    return root


def _reasons(report: dict) -> dict[str, str]:
    return {p["item"]: p["reason"] for p in report["problems"]}


def test_prepare_on_quirky_tree(quirky_tree: Path, tmp_path: Path) -> None:
    manifest, report_path = tmp_path / "manifest.jsonl", tmp_path / "quality.json"
    utts = prepare_corpus("iemocap", quirky_tree, manifest, report_path, "4class", quiet=True)
    kept = {u.utt_id for u in utts}
    assert kept == {
        "Ses01F_impro01_F000",
        "Ses01F_impro01_M000",
        "Ses01F_impro01_F002",
        "Ses01F_impro01_F003",
        "Ses02M_script01_1_F000",
        "Ses02M_script01_1_M000",
        "Ses02M_script02_1_M000",
    }
    report = json.loads(report_path.read_text())
    reasons = _reasons(report)
    assert reasons["Ses01F_impro01_F001"] == "label 'xxx' outside the class map"
    assert reasons["Ses01F_impro01_M001"] == "label 'fru' outside the class map"
    corrupt = quirky_tree / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M002.wav"
    assert (
        reasons["Ses01F_impro01_M002"].startswith("wav unreadable") and str(corrupt) in reasons["Ses01F_impro01_M002"]
    )
    assert reasons["Ses01F_impro01_M003"] == "wav missing"
    assert "not 16 kHz mono (kept; converted when read)" in reasons["Ses01F_impro01_F002"]
    assert reasons["Ses02M_script01_1_F001"] == "transcript empty"
    assert reasons["Ses02M_script01_1_M001"] == "transcript missing"
    assert reasons["Ses02M_script01_1_F002"] == "wav empty"
    dup = [p for p in report["problems"] if p["reason"] == "duplicate id"]
    assert [p["item"] for p in dup] == ["Ses02M_script01_1_F000"] and "Ses02M_script02_1" in dup[0]["file"]
    assert report["kept"] == 7 and report["dropped"] == 8
    assert report["per_class"] == {"ang": 1, "hap": 2, "neu": 3, "sad": 1}
    assert report["per_group"] == {"Ses01": 4, "Ses02": 3} and report["per_partition"] == {"": 7}
    assert report["corpus"] == "iemocap" and report["per_text_source"] == {"gold": 7}
    assert report["per_raw_label_all"] == {"ang": 2, "exc": 1, "fru": 1, "hap": 2, "neu": 5, "sad": 2, "xxx": 1}
    assert report["unparsed_transcript_lines"][0]["text"] == "M: [BREATHING]"
    # The manifest: exact fields and types, latin-1 decoded, exc merged into hap.
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert all(tuple(r) == MANIFEST_FIELDS for r in rows)
    by_id = {r["utt_id"]: r for r in rows}
    ang = by_id["Ses01F_impro01_M000"]
    assert ang["text"] == "Caf\u00e9 is closed!"
    assert ang["speaker"] == "Ses01_M" and ang["gender"] == "M" and ang["group"] == "Ses01"
    assert (ang["corpus"], ang["partition"], ang["text_source"]) == ("iemocap", "", "gold")
    assert ang["extras"] == {"session": 1, "dialog": "Ses01F_impro01", "improvised": True}
    assert by_id["Ses02M_script01_1_F000"]["extras"]["improvised"] is False
    assert by_id["Ses02M_script01_1_F000"]["speaker"] == "Ses02_F"  # suffix letter, not dialog prefix
    exc = by_id["Ses01F_impro01_F002"]
    assert (exc["label"], exc["label_raw"]) == ("hap", "exc")
    assert by_id["Ses01F_impro01_F003"]["text"] == "Great."
    assert ang["duration"] == pytest.approx(0.5)
    assert Path(ang["wav"]).resolve() == (
        quirky_tree / "Session1/sentences/wav/Ses01F_impro01" / f"{ang['utt_id']}.wav"
    )
    assert (ang["valence"], ang["activation"], ang["dominance"]) == (2.5, 3.0, 3.5)
    # The 44.1 kHz stereo file is converted by the one audio reader.
    audio = read_audio(exc["wav"])
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) == 8000


@pytest.mark.parametrize(
    "class_map, expected",
    [
        ("5class", {"neu": 3, "ang": 1, "exc": 1, "hap": 1, "sad": 1}),
        ("6class", {"neu": 3, "ang": 1, "exc": 1, "hap": 1, "sad": 1, "fru": 1}),
        ({"ang": "negative", "sad": "negative", "hap": "positive", "exc": "positive"}, {"negative": 2, "positive": 2}),
    ],
)
def test_other_class_maps(quirky_tree: Path, tmp_path: Path, class_map, expected) -> None:
    utts = prepare_corpus("iemocap", quirky_tree, tmp_path / "m.jsonl", tmp_path / "q.json", class_map, quiet=True)
    counts: dict[str, int] = {}
    for u in utts:
        counts[u.label] = counts.get(u.label, 0) + 1
    assert counts == expected


def test_prepare_fails_clearly_without_corpus(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="no Session1..SessionN folders"):
        prepare_corpus("iemocap", tmp_path, tmp_path / "m.jsonl", tmp_path / "q.json", "4class", quiet=True)
    with pytest.raises(StageError, match="does not exist"):
        prepare_corpus("iemocap", tmp_path / "nope", tmp_path / "m.jsonl", tmp_path / "q.json", "4class", quiet=True)


def test_parsers_handle_real_format_lines() -> None:
    emo = (
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\r\n\r\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\r\n"
        "C-E2:\tNeutral;\t()\r\nA-E3:\tval 3; act 2; dom  2;\t()\r\n"
    )
    (rec,) = parse_emo_evaluation(emo)
    assert (rec.utt_id, rec.code, rec.start, rec.end, rec.valence) == (
        "Ses01F_impro01_F000",
        "neu",
        6.2901,
        8.2357,
        2.5,
    )
    texts, unparsed = parse_transcriptions(
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\nSes01F_impro01_M000: Yes?\nMXX0 hmm\n"
    )
    assert texts == {"Ses01F_impro01_F000": "Excuse me.", "Ses01F_impro01_M000": "Yes?"}
    assert unparsed == [(3, "MXX0 hmm")]
    assert speaker_of("Ses01M_script01_1_F012", 1) == ("Ses01_F", "F")


def test_synthetic_corpus_through_the_same_reader(tiny_corpus: Path, tmp_path: Path) -> None:
    utts = prepare_corpus("iemocap", tiny_corpus, tmp_path / "m.jsonl", tmp_path / "q.json", "4class", quiet=True)
    report = json.loads((tmp_path / "q.json").read_text())
    assert report["kept"] == len(utts) > 0
    assert all(p["reason"].startswith("label") for p in report["problems"])  # only policy drops
    assert read_manifest(tmp_path / "m.jsonl") == utts
    assert groups(utts) == ["Ses01", "Ses02", "Ses03"]


# --- portable manifest paths, truncated wavs, garbled EmoEvaluation headers --------------------

D1 = "Ses01F_impro01"
TURNS = [(f"{D1}_F000", "neu", "Hello there."), (f"{D1}_M000", "ang", "Go away."), (f"{D1}_F001", "sad", "Oh no.")]


def _rows(manifest: Path) -> dict[str, dict]:
    return {r["utt_id"]: r for r in map(json.loads, manifest.read_text(encoding="utf-8").splitlines())}


def test_manifest_paths_relative_under_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    TreeBuilder(project / "data" / "corpus").dialog(1, D1, TURNS)
    monkeypatch.chdir(project)
    prepare_corpus("iemocap", "data/corpus", "data/m.jsonl", "reports/q.json", "4class", quiet=True)
    wav = _rows(project / "data" / "m.jsonl")[f"{D1}_F000"]["wav"]
    assert wav == f"data/corpus/Session1/sentences/wav/{D1}/{D1}_F000.wav"
    assert json.loads((project / "reports" / "q.json").read_text())["root"] == "data/corpus"
    # A moved project reads its own audio: the original is gone.
    shutil.move(project, tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    utts = read_manifest("data/m.jsonl")
    assert len(read_audio(utts[0].wav)) == 8000


def test_manifest_paths_absolute_outside_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "IEMOCAP_full_release"
    TreeBuilder(corpus).dialog(1, D1, TURNS)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    prepare_corpus("iemocap", corpus, "m.jsonl", "q.json", "4class", quiet=True)
    wav = _rows(tmp_path / "project" / "m.jsonl")[f"{D1}_F000"]["wav"]
    assert wav == str(corpus.resolve() / "Session1/sentences/wav" / D1 / f"{D1}_F000.wav")
    assert json.loads((tmp_path / "project" / "q.json").read_text())["root"] == str(corpus.resolve())


def test_truncated_wavs_are_dropped_with_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tb = TreeBuilder(tmp_path / "corpus")
    tb.dialog(1, D1, TURNS)
    emo = tmp_path / "corpus/Session1/dialog/EmoEvaluation" / f"{D1}.txt"
    emo.write_text(emo.read_text().replace("[1.0000 - 1.5000]", "[1.0000 - 3.0300]"))  # F000: 2.03 s
    cut = tb.wav_path(1, D1, f"{D1}_F000")
    cut.write_bytes(cut.read_bytes()[:100])  # 0.0018 s left
    write_tone(tb.wav_path(1, D1, f"{D1}_M000"), seconds=0.2)  # under half its 0.5 s interval
    write_tone(tb.wav_path(1, D1, f"{D1}_F001"), seconds=0.3)  # over half: kept
    utts = prepare_corpus("iemocap", tmp_path / "corpus", tmp_path / "m.jsonl", tmp_path / "q.json", "4class")
    assert [u.utt_id for u in utts] == [f"{D1}_F001"]
    report = json.loads((tmp_path / "q.json").read_text())
    assert _reasons(report) == {
        f"{D1}_F000": "wav truncated: 0.0018 s of audio for a 2.0300 s EmoEvaluation interval",
        f"{D1}_M000": "wav truncated: 0.2000 s of audio for a 0.5000 s EmoEvaluation interval",
    }
    assert report["dropped"] == 2 and report["problems"][0]["file"] == str(cut)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "wav truncated" in line]
    assert warnings == [
        f"warning: {cut}: wav truncated: 0.0018 s of audio for a 2.0300 s EmoEvaluation interval ({D1}_F000, dropped)",
        f"warning: {tb.wav_path(1, D1, f'{D1}_M000')}: wav truncated: 0.2000 s of audio for a 0.5000 s "
        f"EmoEvaluation interval ({D1}_M000, dropped)",
    ]


def test_garbled_evaluation_header_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    TreeBuilder(tmp_path / "corpus").dialog(1, D1, TURNS)
    emo = tmp_path / "corpus/Session1/dialog/EmoEvaluation" / f"{D1}.txt"
    lines = emo.read_text().splitlines()
    lineno = next(i for i, line in enumerate(lines, 1) if f"{D1}_M000" in line)
    lines[lineno - 1] = f"[18.9 - garbage\t{D1}_M000"
    emo.write_text("\n".join(lines) + "\n")
    utts = prepare_corpus("iemocap", tmp_path / "corpus", tmp_path / "m.jsonl", tmp_path / "q.json", "4class")
    assert [u.utt_id for u in utts] == [f"{D1}_F000", f"{D1}_F001"]
    report = json.loads((tmp_path / "q.json").read_text())
    (problem,) = report["problems"]
    assert (problem["item"], problem["file"], problem["kept"]) == (f"{D1}_M000", str(emo), False)
    assert problem["reason"] == f"line {lineno}: turn header does not parse: '[18.9 - garbage\\t{D1}_M000'"
    assert report["unparsed_evaluation_lines"] == [
        {"file": str(emo), "line": lineno, "text": f"[18.9 - garbage\t{D1}_M000"}
    ]
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert warning.startswith(f"warning: {emo}: line {lineno}: turn header does not parse")


@pytest.mark.parametrize(
    "fault", ["missing", "empty", "no labelled turn", "unreadable", "not a file", "utf-16", "zero bytes"]
)
def test_a_dialog_without_its_emo_evaluation_is_reported_dropped(
    fault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing, empty or unreadable EmoEvaluation file: every utterance its transcript or wav
    folder names is a dropped problem (counted), one warning line for the dialog; others stay."""
    import os

    tb = TreeBuilder(tmp_path / "corpus")
    tb.dialog(1, D1, TURNS)
    d2 = "Ses01F_impro02"
    tb.dialog(1, d2, [(f"{d2}_F000", "neu", "hi"), (f"{d2}_M000", "sad", "bye")])
    emo = tmp_path / "corpus/Session1/dialog/EmoEvaluation" / f"{d2}.txt"
    if fault == "missing":
        emo.unlink()
    elif fault == "empty":
        emo.write_text("\n\n")
    elif fault == "no labelled turn":
        emo.write_text("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\nC-E2:\tNeutral;\t()\n")
    elif fault == "unreadable":
        emo.chmod(0)
        if os.geteuid() == 0:  # root reads it anyway: the OSError a user would meet, injected
            real = Path.read_bytes

            def denied(path: Path) -> bytes:
                if path == emo:
                    raise PermissionError(13, "Permission denied", str(path))
                return real(path)

            monkeypatch.setattr(Path, "read_bytes", denied)
    elif fault == "utf-16":
        emo.write_bytes(emo.read_text().encode("utf-16"))
    elif fault == "zero bytes":
        emo.write_bytes(bytes(2000))
    else:
        emo.unlink()
        emo.mkdir()
    utts = prepare_corpus("iemocap", tmp_path / "corpus", tmp_path / "m.jsonl", tmp_path / "q.json", "4class")
    assert sorted(u.utt_id for u in utts) == sorted(uid for uid, _, _ in TURNS)
    report = json.loads((tmp_path / "q.json").read_text())
    binary = "not text (NUL bytes; zero-filled, or UTF-16 rather than UTF-8)"
    what = {"no labelled turn": "without a labelled turn", "unreadable": "unreadable (Permission denied)"}
    what |= {"utf-16": binary, "zero bytes": binary}
    reason = f"EmoEvaluation file {what.get(fault, fault)}: no label for the dialog's utterances"
    assert [(p["item"], p["file"], p["reason"], p["kept"]) for p in report["problems"]] == [
        (f"{d2}_F000", str(emo), reason, False),
        (f"{d2}_M000", str(emo), reason, False),
    ]
    assert report["dropped"] == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert warnings == [f"warning: {emo}: {reason.split(':')[0]} (2 utterances of {d2}, dropped)"]


def test_a_dialog_named_by_nothing_but_an_empty_emo_evaluation_is_reported(tmp_path: Path) -> None:
    TreeBuilder(tmp_path / "corpus").dialog(1, D1, TURNS)
    emo = tmp_path / "corpus/Session1/dialog/EmoEvaluation/Ses01F_impro09.txt"
    emo.write_text("")
    (emo.parent / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # hidden: not a dialog
    prepare_corpus("iemocap", tmp_path / "corpus", tmp_path / "m.jsonl", tmp_path / "q.json", "4class", quiet=True)
    report = json.loads((tmp_path / "q.json").read_text())
    assert [(p["item"], p["file"]) for p in report["problems"]] == [("Ses01F_impro09", str(emo))]
    assert report["problems"][0]["reason"].startswith("EmoEvaluation file empty, and no transcript or wav names")
    assert report["dropped"] == 1


def test_a_wav_holding_nan_is_dropped_with_a_problem(tmp_path: Path) -> None:
    """NaN or inf samples (only a float wav holds them): dropped at prepare, recorded, counted;
    a float wav of finite samples is kept."""
    import soundfile as sf

    tb = TreeBuilder(tmp_path / "corpus")
    tb.dialog(1, D1, TURNS)
    for uid, bad in ((f"{D1}_M000", np.nan), (f"{D1}_F001", None)):
        wav = tb.wav_path(1, D1, uid)
        audio = read_audio(wav)
        if bad is not None:
            audio[100:110] = bad
        sf.write(str(wav), audio, 16000, subtype="FLOAT")
    utts = prepare_corpus(
        "iemocap", tmp_path / "corpus", tmp_path / "m.jsonl", tmp_path / "q.json", "4class", quiet=True
    )
    assert [u.utt_id for u in utts] == [f"{D1}_F000", f"{D1}_F001"]
    report = json.loads((tmp_path / "q.json").read_text())
    assert _reasons(report) == {f"{D1}_M000": "wav holds NaN or inf samples"} and report["dropped"] == 1
    assert report["problems"][0]["file"] == str(tb.wav_path(1, D1, f"{D1}_M000"))


# --- prepare.corpus through the registry; several corpora in one manifest ---------------------


def test_iemocap_is_a_registered_reader_with_its_class_maps(tmp_path: Path) -> None:
    entry = reader("iemocap")
    assert entry.protocol == "loso" and sorted(entry.class_maps) == ["4class", "5class", "6class"]
    assert entry.class_maps["4class"]["exc"] == "hap"
    TreeBuilder(tmp_path / "corpus").dialog(1, D1, TURNS)
    with pytest.raises(StageError, match=r"prepare.class_map: '7class' is not a class map of iemocap \(known: 4class"):
        prepare_corpus("iemocap", tmp_path / "corpus", tmp_path / "m.jsonl", tmp_path / "q.json", "7class")
    with pytest.raises(StageError, match=r"prepare.corpus: 'iemocapp' is not a corpus reader \(known: .*iemocap"):
        prepare_corpus("iemocapp", tmp_path / "corpus", tmp_path / "m.jsonl", tmp_path / "q.json", "4class")


def test_two_corpora_combine_into_one_manifest_and_one_report(tmp_path: Path) -> None:
    """prepare.corpora: every row's id, speaker and group prefixed with its corpus's name (ids stay
    file-name-safe), one data-quality section per corpus with its own drops."""
    TreeBuilder(tmp_path / "a").dialog(1, D1, TURNS)
    d2 = "Ses02M_script01_1"
    TreeBuilder(tmp_path / "b").dialog(2, d2, [(f"{d2}_F000", "hap", "Yes."), (f"{d2}_M000", "xxx", "Hm.")])
    sources = {
        "lab_b": Source("iemocap", tmp_path / "b", "4class"),
        "lab_a": Source("iemocap", tmp_path / "a", {"neu": "neu", "ang": "ang"}),
    }
    utts = prepare_corpora(sources, tmp_path / "m.jsonl", tmp_path / "q.json", quiet=True)
    assert [u.utt_id for u in utts] == [f"lab_a-{D1}_F000", f"lab_a-{D1}_M000", f"lab_b-{d2}_F000"]
    assert read_manifest(tmp_path / "m.jsonl") == utts  # every id passes the manifest's id rule
    assert [(u.speaker, u.group, u.corpus) for u in utts] == [
        ("lab_a-Ses01_F", "lab_a-Ses01", "iemocap"),
        ("lab_a-Ses01_M", "lab_a-Ses01", "iemocap"),
        ("lab_b-Ses02_F", "lab_b-Ses02", "iemocap"),
    ]
    assert utts[2].extras == {"session": 2, "dialog": d2, "improvised": False}
    report = json.loads((tmp_path / "q.json").read_text())
    assert report["kept"] == 3 and report["dropped"] == 2 and report["per_corpus"] == {"lab_a": 2, "lab_b": 1}
    assert report["per_class"] == {"ang": 1, "hap": 1, "neu": 1}
    a, b = report["corpora"]["lab_a"], report["corpora"]["lab_b"]
    assert a["class_map"] == {"neu": "neu", "ang": "ang"} and b["class_map"]["exc"] == "hap"
    assert _reasons(a) == {f"{D1}_F001": "label 'sad' outside the class map"}
    assert _reasons(b) == {f"{d2}_M000": "label 'xxx' outside the class map"}
    assert b["per_group"] == {"Ses02": 1} and b["per_raw_label_all"] == {"hap": 1, "xxx": 1}


def test_prepare_cli_reads_prepare_corpus_and_prepare_corpora(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mger.pipeline.cli import main

    TreeBuilder(tmp_path / "a").dialog(1, D1, TURNS)
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "--corpus", "iemocap", "--root", "a", "--out", "one.jsonl", "--report", "one.json"]) == 0
    assert [u.utt_id for u in read_manifest("one.jsonl")] == [u for u, _, _ in TURNS]
    params = {
        "prepare": {"manifest": "m.jsonl", "report": "q.json", "corpora": {"x": {"corpus": "iemocap", "root": "a"}}}
    }
    Path("p.yaml").write_text(json.dumps(params))
    assert main(["prepare", "--params", "p.yaml"]) == 0
    assert [u.utt_id for u in read_manifest("m.jsonl")] == [f"x-{u}" for u, _, _ in TURNS]
    assert main(["prepare", "--corpus", "nope", "--root", "a", "--params", "p.yaml"]) == 1
