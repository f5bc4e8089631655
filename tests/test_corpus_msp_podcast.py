"""The MSP-Podcast reader on a hand-built tree in the release's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mger.core.manifest import read_manifest
from mger.core.reporting import StageError
from mger.corpus.readers import prepare_corpus, reader
from tests.builders import write_tone

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
ROWS = [
    # FileName stem, EmoClass, Act, Val, Dom, SpkrID, Gender, Split_Set, transcript (None: no file)
    ("MSP-PODCAST_0001_0008", "A", "5.8", "2.2", "5.4", "127", "Male", "Train", "why would you do that"),
    ("MSP-PODCAST_0001_0019", "N", "4.0", "4.2", "4.0", "127", "Male", "Train", None),
    ("MSP-PODCAST_0002_0033", "H", "4.6", "5.8", "4.2", "Unknown", "Unknown", "Development", "that's great\n"),
    ("MSP-PODCAST_0003_0001", "S", "2.4", "2.0", "3.0", "1023", "Female", "Test1", "i miss them"),
    ("MSP-PODCAST_0003_0002", "S", "2.0", "1.8", "2.6", "1023", "Female", "Test2", ""),
    ("MSP-PODCAST_0004_0002", "O", "4.0", "4.0", "4.0", "88", "Female", "Train", None),
    ("MSP-PODCAST_0004_0003", "X", "4.0", "4.0", "4.0", "88", "Female", "Train", None),
    ("MSP-PODCAST_0005_0001", "U", "5.0", "4.4", "4.0", "88", "Female", "Test1", None),
    ("MSP-PODCAST_0006_0001", "C", "4.2", "3.0", "5.0", "88", "Female", "Train", None),  # wav missing
    ("MSP-PODCAST_0006_0002", "N", "4.2", "3.0", "5.0", "88", "Female", "Train", None),  # wav corrupt
]


@pytest.fixture()
def msp_tree(tmp_path: Path) -> Path:
    root = tmp_path / "MSP-Podcast"
    lines = [HEADER]
    for stem, code, act, val, dom, spk, gender, split, transcript in ROWS:
        lines.append(f"{stem}.wav,{code},{act},{val},{dom},{spk},{gender},{split}")
        if stem != "MSP-PODCAST_0006_0001":
            write_tone(root / "Audios" / f"{stem}.wav", seconds=0.5)
        if transcript is not None:
            (root / "Transcripts").mkdir(parents=True, exist_ok=True)
            (root / "Transcripts" / f"{stem}.txt").write_text(transcript, encoding="utf-8")
    (root / "Audios" / "MSP-PODCAST_0006_0002.wav").write_bytes(b"RIFF\x00\x00not a wav")
    write_tone(root / "Audios" / "MSP-PODCAST_0009_0001.wav")  # no label row
    (root / "Labels").mkdir()
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _prepare(tmp_path: Path, root: Path, class_map: str) -> tuple[dict, dict]:
    manifest, report = tmp_path / "m.jsonl", tmp_path / "dq.json"
    prepare_corpus("msp_podcast", root, manifest, report, class_map, quiet=True)
    rows = {u.utt_id: u for u in read_manifest(manifest)}
    return rows, json.loads(report.read_text())


def test_msp_podcast_rows_4class(tmp_path: Path, msp_tree: Path) -> None:
    rows, dq = _prepare(tmp_path, msp_tree, "4class")
    got = {
        uid: (u.label, u.label_raw, u.speaker, u.group, u.gender, u.partition, u.text, u.text_source)
        for uid, u in rows.items()
    }
    assert got == {
        "MSP-PODCAST_0001_0008": ("ang", "A", "127", "127", "M", "Train", "why would you do that", "asr"),
        "MSP-PODCAST_0001_0019": ("neu", "N", "127", "127", "M", "Train", "", "none"),
        "MSP-PODCAST_0002_0033": ("hap", "H", "unknown", "unknown", "", "Development", "that's great", "asr"),
        "MSP-PODCAST_0003_0001": ("sad", "S", "1023", "1023", "F", "Test1", "i miss them", "asr"),
        "MSP-PODCAST_0003_0002": ("sad", "S", "1023", "1023", "F", "Test2", "", "none"),
    }
    u = rows["MSP-PODCAST_0001_0008"]
    assert (u.corpus, u.activation, u.valence, u.dominance, u.duration) == ("msp_podcast", 5.8, 2.2, 5.4, 0.5)
    assert Path(u.wav).resolve() == (msp_tree / "Audios" / "MSP-PODCAST_0001_0008.wav").resolve()
    drops = {(p["item"], p["reason"].split(" (")[0]) for p in dq["problems"] if not p["kept"]}
    assert drops == {
        ("MSP-PODCAST_0004_0002", "EmoClass 'O'"),
        ("MSP-PODCAST_0004_0003", "EmoClass 'X'"),
        ("MSP-PODCAST_0005_0001", "EmoClass 'U' outside the class map"),
        ("MSP-PODCAST_0006_0001", "EmoClass 'C' outside the class map"),
        ("MSP-PODCAST_0006_0002", "audio unreadable"),
        ("MSP-PODCAST_0009_0001", "wav without a row in Labels/labels_consensus.csv"),
    }
    assert dq["dropped"] == 6 and dq["kept"] == 5
    assert dq["per_raw_label_all"] == {"A": 1, "C": 1, "H": 1, "N": 2, "O": 1, "S": 2, "U": 1, "X": 1}
    assert dq["per_partition"] == {"Development": 1, "Test1": 1, "Test2": 1, "Train": 2}
    assert any(p["kept"] and "SpkrID 'Unknown'" in p["reason"] for p in dq["problems"])


def test_msp_podcast_full_map_keeps_surprise_and_drops_a_missing_wav(tmp_path: Path, msp_tree: Path) -> None:
    rows, dq = _prepare(tmp_path, msp_tree, "8class")
    assert rows["MSP-PODCAST_0005_0001"].label == "sur"
    assert "MSP-PODCAST_0006_0001" not in rows
    missing = [p for p in dq["problems"] if p["item"] == "MSP-PODCAST_0006_0001"]
    assert [p["reason"] for p in missing] == ["audio file missing"]
    assert not ({"O", "X"} & set(reader("msp_podcast").class_maps["8class"]))
    assert reader("msp_podcast").protocol == "predefined"


def test_msp_podcast_refuses_other_trees(tmp_path: Path, msp_tree: Path) -> None:
    other = tmp_path / "other"
    (other / "Audios").mkdir(parents=True)
    with pytest.raises(StageError, match=r"other: not an MSP-Podcast tree \(no Labels/labels_consensus.csv\)"):
        prepare_corpus("msp_podcast", other, tmp_path / "m.jsonl", tmp_path / "dq.json", "4class", quiet=True)
    labels = msp_tree / "Labels" / "labels_consensus.csv"
    labels.write_text(HEADER.replace(",SpkrID", "") + "\n", encoding="utf-8")
    with pytest.raises(StageError, match=r"labels_consensus.csv: MSP-Podcast label table lacks column\(s\) SpkrID"):
        prepare_corpus("msp_podcast", msp_tree, tmp_path / "m.jsonl", tmp_path / "dq.json", "4class", quiet=True)


def test_synth_layout_reads_back(tmp_path: Path) -> None:
    """`mger synth --layout msp_podcast` writes what the reader reads: ids, labels, texts."""
    import csv

    from mger.core.config_corpus import SynthConfig
    from mger.corpus.layouts import write_layout

    out = tmp_path / "msp"
    n = write_layout(SynthConfig(layout="msp_podcast", sessions=2, dialogs_per_session=1, turns_per_dialog=4), out=out)
    rows, dq = _prepare(tmp_path, out, "8class")
    with (out / "Labels" / "labels_consensus.csv").open(encoding="utf-8") as fh:
        table = {r["FileName"][:-4]: r for r in csv.DictReader(fh)}
    assert len(table) == n == 8
    expected = {uid for uid, r in table.items() if r["EmoClass"] not in ("O", "X")}
    assert set(rows) == expected and dq["dropped"] == len(table) - len(expected)
    full = reader("msp_podcast").class_maps["8class"]
    for uid, u in rows.items():
        transcript = out / "Transcripts" / f"{uid}.txt"
        text = transcript.read_text(encoding="utf-8").strip() if transcript.exists() else ""
        assert (u.label, u.text, u.text_source) == (full[table[uid]["EmoClass"]], text, "asr" if text else "none")
        assert u.speaker == table[uid]["SpkrID"].replace("Unknown", "unknown") and u.duration > 0.3
    assert {u.partition for u in rows.values()} <= {"Train", "Development", "Test1"}
