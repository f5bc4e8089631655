"""The MELD reader on a hand-built MELD.Raw tree (real mp4 clips through PyAV)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from mger.core.audio import read_audio
from mger.core.manifest import read_manifest
from mger.core.reporting import StageError
from mger.corpus.meld import repair_text, write_clip
from mger.corpus.readers import prepare_corpus, reader
from tests.builders import write_tone

HEADER = [
    "Sr No.",
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
]


def _tone(seconds: float = 0.3, hz: float = 440.0, rate: int = 16000) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def _csv_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows([HEADER, *rows])
    return buf.getvalue().encode("utf-8")


def _row(n: int, text: str, speaker: str, emotion: str, dia: int, utt: int) -> list[str]:
    return [str(n), text, speaker, emotion, "neutral", str(dia), str(utt), "3", "7", "00:16:16,059", "00:16:21,731"]


@pytest.fixture()
def meld_tree(tmp_path: Path) -> Path:
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    train = _csv_bytes(
        [
            _row(1, "Oh my God, heRAW92s lost it.", "Chandler", "joy", 0, 0),
            _row(2, "You must\u00e2\u20ac\u2122ve had your hands full.", "Joey", "neutral", 0, 1),
            _row(3, "\u00c2\u2019Really?", "Joey", "surprise", 0, 2),
            _row(4, "No\x92.", "Monica", "Neutral", 1, 0),
            _row(5, "Get out!", "Ross", "anger", 1, 1),
            _row(6, "I miss him.", "Rachel", "sadness", 1, 2),
        ]
    ).replace(b"RAW92", b"\x92")  # a raw Windows-1252 byte: that line is not UTF-8
    (root / "train_sent_emo.csv").write_bytes(train)
    dev = _csv_bytes([_row(1, "Let\u2019s go.", "Phoebe", "anger", 0, 0), _row(2, "Ahh!", "Phoebe", "fear", 0, 1)])
    (root / "dev_sent_emo.csv").write_bytes(dev)
    clips = root / "train_splits"
    write_clip(clips / "dia0_utt0.mp4", _tone())
    write_clip(clips / "dia0_utt1.mp4", _tone())
    write_clip(clips / "dia0_utt2.mp4", _tone())
    write_tone(root / "train_wav" / "dia1_utt0.wav", seconds=0.5)  # extracted wav, no mp4
    (clips / "dia1_utt2.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real clip")
    write_clip(root / "dev" / "dev_splits_complete" / "dia0_utt0.mp4", _tone(), video=True)  # one level down
    write_clip(root / "dev" / "dev_splits_complete" / "dia0_utt1.mp4", _tone())
    return root


def test_read_audio_decodes_an_mp4_clip(tmp_path: Path) -> None:
    path = tmp_path / "dia0_utt0.mp4"
    write_clip(path, _tone(1.0, hz=440.0, rate=22050), sample_rate=22050, video=True)
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 16000 <= audio.size <= 16000 + 2048 * 16000 // 22050 + 1  # AAC adds its priming/padding frames
    mid = audio[2000:14000]
    peak_hz = np.argmax(np.abs(np.fft.rfft(mid * np.hanning(mid.size)))) * 16000 / mid.size
    assert abs(peak_hz - 440) < 3 and np.max(np.abs(mid)) == pytest.approx(0.4, abs=0.05)


def test_repair_text_counts_each_repair() -> None:
    assert repair_text("must\x92ve") == ("must\u2019ve", {"windows-1252": 1})
    assert repair_text("he\u00e2\u20ac\u2122s") == ("he\u2019s", {"mojibake": 1})
    assert repair_text("\u00c2\u2019Really") == ("\u2019Really", {"mojibake": 1})
    assert repair_text("caf\u00e9 na\u00efve") == ("caf\u00e9 na\u00efve", {})


def test_meld_rows_4class(tmp_path: Path, meld_tree: Path) -> None:
    manifest, report = tmp_path / "m.jsonl", tmp_path / "dq.json"
    prepare_corpus("meld", meld_tree, manifest, report, "4class", quiet=True)
    rows = {u.utt_id: u for u in read_manifest(manifest)}
    got = {
        uid: (u.label, u.label_raw, u.speaker, u.gender, u.group, u.partition, u.text, u.text_source, Path(u.wav).name)
        for uid, u in rows.items()
    }
    ahead = "Oh my God, he\u2019s lost it."
    assert got == {
        "train_dia0_utt0": ("hap", "joy", "Chandler", "", "train_dia0", "train", ahead, "gold", "dia0_utt0.mp4"),
        "train_dia0_utt1": (
            "neu",
            "neutral",
            "Joey",
            "",
            "train_dia0",
            "train",
            "You must\u2019ve had your hands full.",
            "gold",
            "dia0_utt1.mp4",
        ),
        "train_dia1_utt0": (
            "neu",
            "neutral",
            "Monica",
            "",
            "train_dia1",
            "train",
            "No\u2019.",
            "gold",
            "dia1_utt0.wav",
        ),
        "dev_dia0_utt0": ("ang", "anger", "Phoebe", "", "dev_dia0", "dev", "Let\u2019s go.", "gold", "dia0_utt0.mp4"),
    }
    assert rows["train_dia1_utt0"].duration == 0.5
    assert 0.3 <= rows["dev_dia0_utt0"].duration < 0.45  # decoded: the tone plus AAC priming
    assert rows["train_dia0_utt0"].extras["start"] == "00:16:16,059"
    dq = json.loads(report.read_text())
    drops = {(p["item"], p["reason"].split(" (")[0]) for p in dq["problems"] if not p["kept"]}
    assert drops == {
        ("train_dia0_utt2", "Emotion 'surprise' outside the class map"),
        ("train_dia1_utt1", "audio file missing"),
        ("train_dia1_utt2", "audio unreadable"),
        ("dev_dia0_utt1", "Emotion 'fear' outside the class map"),
        ("test", "label table missing: no test partition"),
    }
    assert dq["text_repairs"]["counts"] == {
        "lines not UTF-8 (read as windows-1252)": 1,
        "mojibake": 1,
        "windows-1252": 1,
    }
    assert [r["utt_id"] for r in dq["text_repairs"]["rows"]] == [
        "train_dia0_utt0",
        "train_dia0_utt1",
        "train_dia1_utt0",
    ]
    assert dq["audio_source"] == {"mp4": 3, "wav": 1}
    assert dq["per_partition"] == {"dev": 1, "train": 3}


def test_meld_full_map_and_refusals(tmp_path: Path, meld_tree: Path) -> None:
    manifest, report = tmp_path / "m.jsonl", tmp_path / "dq.json"
    prepare_corpus("meld", meld_tree, manifest, report, "7class", quiet=True)
    labels = {u.utt_id: u.label for u in read_manifest(manifest)}
    assert labels["train_dia0_utt2"] == "sur" and labels["dev_dia0_utt1"] == "fea"
    assert reader("meld").protocol == "predefined"
    with pytest.raises(StageError, match=r"empty: not a MELD tree \(no train_sent_emo.csv"):
        (tmp_path / "empty").mkdir()
        prepare_corpus("meld", tmp_path / "empty", manifest, report, "4class", quiet=True)
    (meld_tree / "dev_sent_emo.csv").write_text("Sr No.,Utterance,Speaker\n1,Hi,Joey\n", encoding="utf-8")
    with pytest.raises(StageError, match=r"dev_sent_emo.csv: MELD label table lacks column\(s\) Emotion, Sentiment"):
        prepare_corpus("meld", meld_tree, manifest, report, "4class", quiet=True)


def test_synth_layout_reads_back(tmp_path: Path) -> None:
    """`mger synth --layout meld` writes mp4 clips and CSVs the reader reads: ids, labels, texts
    (the mis-encoded apostrophes repaired)."""
    from mger.core.config_corpus import SynthConfig
    from mger.corpus.layouts import write_layout

    out = tmp_path / "meld"
    n = write_layout(SynthConfig(layout="meld", sessions=2, dialogs_per_session=1, turns_per_dialog=8), out=out)
    manifest, report = tmp_path / "m.jsonl", tmp_path / "dq.json"
    prepare_corpus("meld", out, manifest, report, "7class", quiet=True)
    rows = {u.utt_id: u for u in read_manifest(manifest)}
    written = {}
    for split in ("train", "dev", "test"):
        with (out / f"{split}_sent_emo.csv").open(encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                written[f"{split}_dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}"] = r
    assert set(rows) == set(written) and n == 16
    assert {u.partition for u in rows.values()} == {"train", "dev", "test"}
    full = reader("meld").class_maps["7class"]
    for uid, u in rows.items():
        raw = written[uid]["Utterance"].replace("\x92", "'").replace("\u00e2\u20ac\u2122", "'")
        assert (u.label, u.speaker, u.text.replace("\u2019", "'")) == (
            full[written[uid]["Emotion"]],
            written[uid]["Speaker"],
            raw,
        )
        assert u.wav.endswith(".mp4") and u.duration > 0.3
