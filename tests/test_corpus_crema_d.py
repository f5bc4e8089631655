"""CREMA-D reader: a hand-made tree in the release's exact layout, read row by row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from mger.core.manifest import read_manifest
from mger.core.reporting import StageError
from mger.corpus.crema_d import SENTENCES
from mger.corpus.readers import prepare_corpus, reader
from tests.builders import write_tone

DEMOGRAPHICS = (
    "\ufeffActorID,Age,Sex,Race,Ethnicity\n"  # the release's file starts with a byte-order mark on some copies
    "1001,51,Male,Caucasian,Not Hispanic\n"
    "1002,21,Female,Caucasian,Not Hispanic\n"
    "1076,25,Female,African American,Not Hispanic\n"
)
KEPT = ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_ITS_SAD_XX", "1002_TIE_NEU_XX", "1003_IWL_ANG_MD"]
OUTSIDE_4CLASS = ["1002_WSI_DIS_XX", "1003_MTI_FEA_LO"]


def build(root: Path, demographics: bool = True) -> Path:
    audio = root / "AudioWAV"
    for stem in KEPT + OUTSIDE_4CLASS + ["1001_XYZ_ANG_XX"]:
        write_tone(audio / f"{stem}.wav", seconds=0.6)
    write_tone(audio / "1001_DFA_ANG.wav")  # no level: not a CREMA-D name
    (audio / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    sf.write(str(audio / "1076_MTI_SAD_XX.wav"), [], 16000, subtype="PCM_16")  # the release's empty file
    if demographics:
        (root / "VideoDemographics.csv").write_text(DEMOGRAPHICS, encoding="utf-8")
    return root


def _prepare(root: Path, tmp_path: Path, class_map: str = "4class") -> tuple[list, dict]:
    manifest, report = tmp_path / "manifest.jsonl", tmp_path / "dq.json"
    prepare_corpus("crema_d", root, manifest, report, class_map, quiet=True)
    return read_manifest(manifest), json.loads(report.read_text())


def test_rows_and_drops(tmp_path: Path) -> None:
    root = build(tmp_path / "CREMA-D")
    rows, rep = _prepare(root, tmp_path)
    assert [u.utt_id for u in rows] == KEPT
    assert [u.label for u in rows] == ["ang", "hap", "sad", "neu", "ang"]
    assert [u.label_raw for u in rows] == ["ANG", "HAP", "SAD", "NEU", "ANG"]
    assert [u.speaker for u in rows] == ["1001", "1001", "1002", "1002", "1003"]
    assert [u.group for u in rows] == [u.speaker for u in rows]
    assert [u.gender for u in rows] == ["M", "M", "F", "F", ""]  # 1003: not in VideoDemographics.csv
    assert [u.text for u in rows] == [
        "Don't forget a jacket",
        "It's eleven o'clock",
        "I think I've seen this before",
        "That is exactly what happened",
        "I would like a new alarm clock",
    ]
    assert {u.text_source for u in rows} == {"prompt"} and {u.corpus for u in rows} == {"crema_d"}
    assert {u.partition for u in rows} == {""} and {u.valence for u in rows} == {None}
    assert [u.extras for u in rows][:2] == [{"sentence": "DFA", "level": "XX"}, {"sentence": "IEO", "level": "HI"}]
    assert rows[0].duration == pytest.approx(0.6)
    assert Path(rows[0].wav) == (root / "AudioWAV" / "1001_DFA_ANG_XX.wav").resolve()
    problems = [(p["item"], p["reason"].split(":")[0].split(" (")[0], p["kept"]) for p in rep["problems"]]
    assert problems == [
        (".DS_Store", "file name is not {actor}_{SENTENCE}_{EMOTION}_{LEVEL}.wav", False),
        ("1001_DFA_ANG.wav", "file name is not {actor}_{SENTENCE}_{EMOTION}_{LEVEL}.wav", False),
        ("1001_XYZ_ANG_XX", "sentence code 'XYZ' is not one of CREMA-D's", False),
        ("1002_WSI_DIS_XX", "label 'DIS' outside the class map", False),
        ("1003", "actor not listed", True),
        ("1003_MTI_FEA_LO", "label 'FEA' outside the class map", False),
        ("1076_MTI_SAD_XX", "audio empty", False),
    ]
    assert (rep["corpus"], rep["kept"], rep["dropped"]) == ("crema_d", 5, 6)
    assert rep["dropped_by_class_map"] == {"DIS": 1, "FEA": 1}
    assert rep["per_level_kept"] == {"HI": 1, "MD": 1, "XX": 3}
    assert rep["per_class"] == {"ang": 2, "hap": 1, "neu": 1, "sad": 1}


def test_6class_keeps_disgust_and_fear(tmp_path: Path) -> None:
    rows, rep = _prepare(build(tmp_path / "c"), tmp_path, "6class")
    assert {u.utt_id: u.label for u in rows if u.label_raw in ("DIS", "FEA")} == {
        "1002_WSI_DIS_XX": "dis",
        "1003_MTI_FEA_LO": "fea",
    }
    assert rep["dropped_by_class_map"] == {} and rep["kept"] == 7


def test_missing_demographics_leaves_genders_empty_and_says_so(tmp_path: Path) -> None:
    rows, rep = _prepare(build(tmp_path / "c", demographics=False), tmp_path)
    assert [u.gender for u in rows] == [""] * 5
    assert rep["problems"][0]["item"] == "VideoDemographics.csv"
    assert rep["problems"][0]["reason"] == "missing: every gender left empty" and rep["problems"][0]["kept"]


def test_registry_entry() -> None:
    entry = reader("crema_d")
    assert entry.protocol == "speaker_folds"
    assert entry.class_maps["4class"] == {"NEU": "neu", "HAP": "hap", "ANG": "ang", "SAD": "sad"}
    assert len(SENTENCES) == 12 and SENTENCES["ITH"] == "I think I have a doctor's appointment"


def test_another_layout_refused_in_one_line(tmp_path: Path) -> None:
    write_tone(tmp_path / "ravdess" / "Actor_01" / "03-01-01-01-01-01-01.wav")
    with pytest.raises(StageError, match=r"ravdess: not a CREMA-D tree \(no AudioWAV/ folder") as err:
        prepare_corpus("crema_d", tmp_path / "ravdess", tmp_path / "m.jsonl", tmp_path / "r.json", "4class")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "m.jsonl").exists()
