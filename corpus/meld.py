"""Reader for MELD (the MELD.Raw release) and the writer of its mp4 clips.

Layout read::

    <root>/{train,dev,test}_sent_emo.csv     Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,
                                             Utterance_ID,Season,Episode,StartTime,EndTime
    <root>/train_splits/dia{D}_utt{U}.mp4                 the release's clip folders; each is also
    <root>/dev_splits_complete/dia{D}_utt{U}.mp4          looked for one level down, as the split's
    <root>/output_repeated_splits_test/dia{D}_utt{U}.mp4  tarball unpacks (<root>/train/train_splits)
    <root>/{train,dev,test}_wav/dia{D}_utt{U}.wav         optional: wavs extracted from the clips

Audio: our convention is that an extracted wav ``<split>_wav/dia{D}_utt{U}.wav`` is used
when it exists, else the clip's mp4 (decoded by PyAV in :func:`mger.core.audio.read_audio`;
the manifest ``wav`` is then the .mp4 path).  Duration is that of the decoded audio.

Rows: ``utt_id`` ``{split}_dia{D}_utt{U}`` (ids repeat across splits), ``partition`` the
split, ``group`` ``{split}_dia{D}`` (the dialogue), ``speaker`` the Speaker column, gender
unknown (""), ``text`` the Utterance (``text_source: gold``) with its mis-encoded characters
repaired (:func:`repair_text`; counted in the data-quality report's ``text_repairs``).
Dropped and recorded: a row whose clip is missing or undecodable, an emotion outside the class
map, a duplicate (split, dialogue, utterance), a row whose ids do not parse, an empty text.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mger.core.manifest import Utterance, portable_path
from mger.core.reporting import ProblemLog, StageError
from mger.corpus.audio_files import checked_audio
from mger.corpus.readers import CorpusRead, register_reader
from mger.corpus.tables import read_table

COLUMNS = (
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
)
SPLITS = ("train", "dev", "test")
CLIP_FOLDERS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
CLASS_MAPS = {
    "4class": {"neutral": "neu", "joy": "hap", "anger": "ang", "sadness": "sad"},
    "7class": {
        "neutral": "neu",
        "joy": "hap",
        "anger": "ang",
        "sadness": "sad",
        "surprise": "sur",
        "fear": "fea",
        "disgust": "dis",
    },
}

# Windows-1252 bytes 0x80-0x9F as characters (five are undefined there: left as they are).
_CP1252_HIGH = {
    chr(b): bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}
_CONTINUATION = "".join(sorted({chr(c) for c in range(0x80, 0xC0)} | set(_CP1252_HIGH.values()) - {"\u0081"}))
# UTF-8 read as Windows-1252 (or latin-1): a lead byte Â..ô then 1-3 continuation bytes.
_MOJIBAKE = re.compile(f"[\u00c2-\u00f4][{re.escape(_CONTINUATION)}]{{1,3}}")


def _as_byte(ch: str) -> int:
    try:
        return ch.encode("cp1252")[0]
    except UnicodeEncodeError:
        return ord(ch)  # U+0080..U+00FF read as latin-1


def repair_text(text: str) -> tuple[str, Counter[str]]:
    """``text`` with MELD's mis-encodings repaired, and what was repaired: ``mojibake`` (UTF-8
    read as Windows-1252, ``â€™``/``Â’`` → ’) and ``windows-1252`` (a C1 control character
    that is a Windows-1252 byte, ``\\x92`` → ’)."""
    counts: Counter[str] = Counter()

    def fix(m: re.Match[str]) -> str:
        try:
            fixed = bytes(_as_byte(c) for c in m.group(0)).decode("utf-8")
        except (UnicodeDecodeError, ValueError):
            return m.group(0)
        counts["mojibake"] += 1
        return "".join(_CP1252_HIGH.get(c, c) for c in fixed)  # Â’ → \x92 → ’: one repair

    text = _MOJIBAKE.sub(fix, text)
    out = []
    for ch in text:
        if ch in _CP1252_HIGH:
            counts["windows-1252"] += 1
            ch = _CP1252_HIGH[ch]
        out.append(ch)
    return "".join(out), counts


def clip_path(root: Path, split: str, dialogue: int, utterance: int) -> Path:
    """Where a row's audio is: the extracted wav when it exists, else the clip's mp4 (in the
    release folder at the root or one level down), else the expected mp4 path (missing)."""
    name = f"dia{dialogue}_utt{utterance}"
    wav = root / f"{split}_wav" / f"{name}.wav"
    if wav.is_file():
        return wav
    folder = CLIP_FOLDERS[split]
    candidates = [root / folder / f"{name}.mp4", root / split / folder / f"{name}.mp4"]
    return next((c for c in candidates if c.is_file()), candidates[0])


@register_reader("meld", class_maps=CLASS_MAPS, protocol="predefined")
def read_meld(root: Path, class_map: Mapping[str, str], log: ProblemLog) -> CorpusRead:
    """Read the MELD tree at ``root`` (see the module docstring)."""
    if not root.is_dir():
        raise StageError(f"{root}: corpus root does not exist or is not a folder")
    tables = {s: root / f"{s}_sent_emo.csv" for s in SPLITS}
    if not any(p.is_file() for p in tables.values()):
        raise StageError(
            f"{root}: not a MELD tree (no train_sent_emo.csv, dev_sent_emo.csv or test_sent_emo.csv); "
            "point prepare.root at MELD.Raw"
        )
    state = _State()
    out: list[Utterance] = []
    for split, path in tables.items():
        if not path.is_file():
            log.add(split, path, f"label table missing: no {split} partition")
            continue
        out.extend(_read_split(root, split, path, class_map, log, state))
    details: dict[str, Any] = {
        "per_raw_label_all": dict(sorted(state.raw.items())),
        "text_repairs": {"counts": dict(sorted(state.repairs.items())), "rows": state.repaired_rows},
        "audio_source": dict(sorted(state.audio_source.items())),
    }
    return CorpusRead(out, details)


class _State:
    """What the reader counts across the three splits (raw emotions, repairs, audio sources, ids)."""

    def __init__(self) -> None:
        self.raw: Counter[str] = Counter()
        self.repairs: Counter[str] = Counter()
        self.repaired_rows: list[dict[str, str]] = []
        self.audio_source: Counter[str] = Counter()
        self.seen: set[str] = set()


def _read_split(
    root: Path, split: str, path: Path, class_map: Mapping[str, str], log: ProblemLog, state: _State
) -> list[Utterance]:
    table = read_table(path, COLUMNS, "MELD label table", delimiter=",")
    state.repairs["lines not UTF-8 (read as windows-1252)"] += len(table.cp1252_lines)
    for lineno in table.ragged_lines:
        log.add(f"line {lineno}", path, "row with more or fewer fields than the header (read as far as it goes)")
    out = []
    not_utf8 = set(table.cp1252_lines)
    for lineno, row in table.rows:
        where = f"{path}:{lineno}"
        try:
            dialogue, utterance = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
        except ValueError:
            log.add(f"line {lineno}", where, f"Dialogue_ID {row['Dialogue_ID']!r} / Utterance_ID not integers")
            continue
        uid = f"{split}_dia{dialogue}_utt{utterance}"
        if uid in state.seen:
            log.add(uid, where, "duplicate Dialogue_ID/Utterance_ID")
            continue
        state.seen.add(uid)
        emotion = row["Emotion"].strip().lower()
        state.raw[emotion] += 1
        if emotion not in class_map:
            log.add(uid, where, f"Emotion {emotion!r} outside the class map", echo=False)
            continue
        text, counts = repair_text(row["Utterance"])
        text = " ".join(text.split())
        if counts or lineno in not_utf8:
            state.repairs.update(counts)
            state.repaired_rows.append({"utt_id": uid, "file": where, "raw": row["Utterance"], "repaired": text})
        if not text:
            log.add(uid, where, "Utterance (the text) empty")
            continue
        audio = clip_path(root, split, dialogue, utterance)
        info = checked_audio(uid, audio, log)
        if info is None:
            continue
        state.audio_source[audio.suffix.lstrip(".")] += 1
        out.append(_utterance(uid, split, dialogue, audio, info.duration, row, text, class_map[emotion], emotion))
    return out


def _utterance(
    uid: str,
    split: str,
    dialogue: int,
    audio: Path,
    duration: float,
    row: Mapping[str, str],
    text: str,
    label: str,
    emotion: str,
) -> Utterance:
    return Utterance(
        utt_id=uid,
        corpus="meld",
        wav=portable_path(audio),
        duration=round(duration, 4),
        speaker=row["Speaker"],
        gender="",
        text=text,
        text_source="gold",
        label=label,
        label_raw=emotion,
        group=f"{split}_dia{dialogue}",
        partition=split,
        valence=None,
        activation=None,
        dominance=None,
        extras={
            "sentiment": row["Sentiment"],
            "season": row["Season"],
            "episode": row["Episode"],
            "start": row["StartTime"],
            "end": row["EndTime"],
            "sr_no": row["Sr No."],
        },
    )


def write_clip(path: Path, samples: np.ndarray, sample_rate: int = 16000, video: bool = False) -> None:
    """Write mono audio (float in [-1, 1]) as an AAC track in an mp4, as MELD's clips are; with
    ``video`` a tiny black 16x16 MPEG-4 video track too (real clips have one).  Shape: (time,)."""
    import av  # imported here: only mp4 clips need it

    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)[None, :]
    with av.open(str(path), "w", format="mp4") as out:
        vstream = out.add_stream("mpeg4", rate=10) if video else None
        if vstream is not None:
            vstream.width, vstream.height, vstream.pix_fmt = 16, 16, "yuv420p"
        astream = out.add_stream("aac", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sample_rate
        for packet in [*astream.encode(frame), *astream.encode(None)]:
            out.mux(packet)
        if vstream is not None:
            black = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            frames = max(1, round(len(samples) / sample_rate * 10))
            for packet in [p for _ in range(frames) for p in vstream.encode(black)] + list(vstream.encode(None)):
                out.mux(packet)
