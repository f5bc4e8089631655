"""RAVDESS reader: a hand-made tree in the release's exact layout, read row by row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mger.core.manifest import read_manifest
from mger.core.reporting import StageError
from mger.corpus.readers import prepare_corpus, reader
from tests.builders import write_tone

KEPT = ["03-01-01-01-01-01-01", "03-01-05-02-02-02-01", "03-01-03-01-02-01-02", "03-01-04-02-01-02-02"]


def build(root: Path) -> Path:
    a1, a2 = root / "Actor_01", root / "Actor_02"
    for stem in ("03-01-01-01-01-01-01", "03-01-05-02-02-02-01", "03-01-02-01-01-01-01", "03-02-03-01-01-01-01"):
        write_tone(a1 / f"{stem}.wav", seconds=0.5)
    for name in ("01-01-03-01-01-01-01.mp4", "02-01-03-01-01-01-01.mp4"):  # the video archives, unpacked alongside
        (a1 / name).write_bytes(b"\0\0\0\x18ftypmp42")
    for stem in ("03-01-03-01-02-01-02", "03-01-04-02-01-02-02", "03-01-09-01-01-01-02", "03-01-04-01-01-01-03"):
        write_tone(a2 / f"{stem}.wav", seconds=0.7, rate=48000, channels=2)
    write_tone(a2 / "03-01-04-01-01-01-02 copy.wav")
    (root / "README.md").write_text("RAVDESS\n")
    return root


def _prepare(root: Path, tmp_path: Path, class_map: str = "4class") -> tuple[list, dict]:
    manifest, report = tmp_path / "manifest.jsonl", tmp_path / "dq.json"
    prepare_corpus("ravdess", root, manifest, report, class_map, quiet=True)
    return read_manifest(manifest), json.loads(report.read_text())


def test_rows_and_drops(tmp_path: Path) -> None:
    root = build(tmp_path / "RAVDESS")
    rows, rep = _prepare(root, tmp_path)
    assert [u.utt_id for u in rows] == KEPT
    assert [u.label for u in rows] == ["neu", "ang", "hap", "sad"]
    assert [u.label_raw for u in rows] == ["neutral", "angry", "happy", "sad"]
    assert [u.speaker for u in rows] == ["01", "01", "02", "02"]
    assert [u.group for u in rows] == [u.speaker for u in rows]
    assert [u.gender for u in rows] == ["M", "M", "F", "F"]  # odd actors male
    kids, dogs = "Kids are talking by the door", "Dogs are sitting by the door"
    assert [u.text for u in rows] == [kids, dogs, dogs, kids]
    assert {u.text_source for u in rows} == {"prompt"} and {u.corpus for u in rows} == {"ravdess"}
    assert {u.partition for u in rows} == {""} and {u.activation for u in rows} == {None}
    assert rows[1].extras == {"intensity": "strong", "statement": "02", "repetition": "02"}
    assert [u.duration for u in rows] == pytest.approx([0.5, 0.5, 0.7, 0.7])
    assert Path(rows[2].wav) == (root / "Actor_02" / "03-01-03-01-02-01-02.wav").resolve()
    problems = [(p["item"], p["reason"], p["kept"]) for p in rep["problems"]]
    assert problems == [
        ("README.md", "not an Actor_XX folder (not read)", False),
        ("01-01-03-01-01-01-01", "video file (audio-video speech): skipped, mger reads audio-only speech", False),
        ("02-01-03-01-01-01-01", "video file (video-only speech): skipped, mger reads audio-only speech", False),
        ("03-01-02-01-01-01-01", "label 'calm' outside the class map", False),
        ("03-02-03-01-01-01-01", "song file (audio-only song): skipped, mger reads audio-only speech", False),
        (
            "03-01-04-01-01-01-02 copy.wav",
            "file name is not MM-VV-EE-II-SS-RR-AA.wav (e.g. 03-01-06-01-02-01-01.wav)",
            False,
        ),
        ("03-01-04-01-01-01-03", "actor field 03 differs from its folder Actor_02", False),
        ("03-01-09-01-01-01-02", "emotion field '09' is not one of RAVDESS's (01 02 03 04 05 06 07 08)", False),
    ]
    assert (rep["corpus"], rep["kept"], rep["dropped"]) == ("ravdess", 4, 8)
    assert rep["skipped"] == {"song": 1, "video": 2}
    assert rep["dropped_by_class_map"] == {"calm": 1}
    assert rep["audio_formats"] == {"16000 Hz, 1 ch": 2, "48000 Hz, 2 ch": 2}


def test_8class_keeps_calm(tmp_path: Path) -> None:
    rows, rep = _prepare(build(tmp_path / "r"), tmp_path, "8class")
    assert {u.utt_id: u.label for u in rows}["03-01-02-01-01-01-01"] == "cal"
    assert rep["dropped_by_class_map"] == {} and rep["kept"] == 5


def test_registry_entry() -> None:
    entry = reader("ravdess")
    assert entry.protocol == "speaker_folds"
    assert entry.class_maps["4class"] == {"neutral": "neu", "happy": "hap", "angry": "ang", "sad": "sad"}
    assert len(entry.class_maps["8class"]) == 8


def test_another_layout_refused_in_one_line(tmp_path: Path) -> None:
    write_tone(tmp_path / "crema" / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    with pytest.raises(StageError, match=r"crema: not a RAVDESS tree \(no Actor_XX/ folders") as err:
        prepare_corpus("ravdess", tmp_path / "crema", tmp_path / "m.jsonl", tmp_path / "r.json", "4class")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "m.jsonl").exists()
