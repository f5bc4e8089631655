"""The csv reader: any corpus listed in one CSV/TSV with named columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mger.core.manifest import read_manifest
from mger.core.reporting import StageError
from mger.corpus.readers import prepare_corpus, reader
from tests.builders import write_tone


def _prepare(tmp_path: Path, table: Path, class_map: object = "all") -> tuple[dict, dict]:
    manifest, report = tmp_path / "m.jsonl", tmp_path / "dq.json"
    prepare_corpus("csv", table, manifest, report, class_map, quiet=True)  # type: ignore[arg-type]
    return {u.utt_id: u for u in read_manifest(manifest)}, json.loads(report.read_text())


def test_csv_rows_with_derived_ids_and_relative_paths(tmp_path: Path) -> None:
    root = tmp_path / "mycorpus"
    for name in ("spk1 a.wav", "spk1_a.wav", "c.wav", "b.wav"):
        write_tone(root / "audio" / name)
    elsewhere = tmp_path / "elsewhere" / "x.wav"
    write_tone(elsewhere, rate=22050)
    (root / "meta.csv").write_text(
        "wav,label,speaker,text,gender,partition,valence,note\n"
        'audio/spk1 a.wav,happy,s1,"hello,  there",female,train,0.5,first\n'
        "audio/spk1_a.wav,happy,s1,again,F,train,,second\n"
        f"{elsewhere},angry,s2,,M,test,high,third\n"
        "audio/missing.wav,sad,s2,gone,M,test,,\n"
        "audio/b.wav,,s3,no label,F,train,,\n"
        "audio/c.wav,sad,s3,odd gender,nonbinary,train,,\n",
        encoding="utf-8",
    )
    rows, dq = _prepare(tmp_path, root / "meta.csv")
    got = {
        uid: (u.label, u.speaker, u.group, u.gender, u.partition, u.text, u.text_source, u.valence, u.extras)
        for uid, u in rows.items()
    }
    assert got == {
        "spk1_a": ("happy", "s1", "s1", "F", "train", "hello, there", "gold", 0.5, {"note": "first"}),
        "spk1_a_2": ("happy", "s1", "s1", "F", "train", "again", "gold", None, {"note": "second"}),
        "x": ("angry", "s2", "s2", "M", "test", "", "none", None, {"note": "third"}),
        "c": ("sad", "s3", "s3", "", "train", "odd gender", "gold", None, {"note": ""}),
    }
    assert Path(rows["spk1_a"].wav).resolve() == (root / "audio" / "spk1 a.wav").resolve()
    assert (rows["x"].corpus, rows["x"].duration) == ("csv", 0.5)
    problems = {(p["item"], p["reason"].split(" (")[0], p["kept"]) for p in dq["problems"]}
    assert problems == {
        ("missing", "audio file missing", False),
        ("b", "label empty", False),
        ("x", "valence 'high' is not a number", True),
        ("c", "gender 'nonbinary' is not F/M/female/male", True),
    }
    assert dq["class_map"] == {"angry": "angry", "happy": "happy", "sad": "sad"}
    assert dq["audio_formats"] == {"16000 Hz, 1 ch": 3, "22050 Hz, 1 ch": 1}
    assert reader("csv").protocol == "speaker_folds"


def test_tsv_and_sniffed_semicolons_with_ids_and_a_custom_map(tmp_path: Path) -> None:
    write_tone(tmp_path / "w" / "1.wav")
    write_tone(tmp_path / "w" / "2.wav")
    for name, sep in (("list.tsv", "\t"), ("list.csv", ";")):
        lines = [["utt_id", "wav", "label", "speaker", "group"], ["u1", "w/1.wav", "joy", "A", "g1"]]
        lines += [["u1", "w/2.wav", "joy", "B", "g2"], ["u2", "w/2.wav", "anger", "B", "g2"]]
        lines += [["../bad", "w/2.wav", "joy", "B", "g2"]]
        text = "\n".join(sep.join(r) for r in lines) + "\n"
        (tmp_path / name).write_text(text, encoding="utf-8-sig" if sep == "\t" else "utf-8")  # Excel's BOM
        rows, dq = _prepare(tmp_path, tmp_path / name, {"joy": "hap"})
        assert {uid: (u.label, u.label_raw, u.group) for uid, u in rows.items()} == {"u1": ("hap", "joy", "g1")}
        drops = {(p["item"], p["reason"]) for p in dq["problems"] if not p["kept"]}
        assert drops == {
            ("u1", "duplicate utt_id"),
            ("u2", "label 'anger' outside the class map"),
            ("../bad", "utt_id contains a path separator"),
        }
        assert dq["class_map"] == {"joy": "hap"}


def test_csv_refusals(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("wav,label,text\na.wav,hap,hi\n", encoding="utf-8")
    with pytest.raises(StageError, match=r"t.csv: corpus table lacks column\(s\) speaker \(header: wav, label, text\)"):
        _prepare(tmp_path, table)
    with pytest.raises(StageError, match=r"is the CSV/TSV file itself, and this is a folder"):
        _prepare(tmp_path, tmp_path)


def test_synth_layout_reads_back(tmp_path: Path) -> None:
    """`mger synth --layout csv` writes what the reader reads: ids, labels, texts."""
    import csv

    from mger.core.config_corpus import SynthConfig
    from mger.corpus.layouts import write_layout

    out = tmp_path / "c"
    n = write_layout(SynthConfig(layout="csv", sessions=2, dialogs_per_session=1, turns_per_dialog=4), out=out)
    rows, dq = _prepare(tmp_path, out / "corpus.csv")
    with (out / "corpus.csv").open(encoding="utf-8") as fh:
        table = {r["utt_id"]: r for r in csv.DictReader(fh)}
    assert len(rows) == len(table) == n == 8 and dq["dropped"] == 0
    for uid, u in rows.items():
        assert (u.label, u.speaker, u.gender, u.text) == tuple(
            table[uid][c] for c in ("label", "speaker", "gender", "text")
        )
        assert u.text_source == "gold" and u.duration > 0.3
