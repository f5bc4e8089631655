"""Reader for MSP-Podcast (release 1.x layout).

Layout read::

    <root>/Audios/<FileName>                 one 16 kHz wav per segment (MSP-PODCAST_0001_0008.wav)
    <root>/Labels/labels_consensus.csv       FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
    <root>/Transcripts/<stem>.txt            automatic transcript, where the release has one

``EmoClass`` codes: A angry, S sad, H happy, U surprise, F fear, D disgust, C contempt,
N neutral, O other, X no agreement; O and X are in no class map, so they are dropped and
counted.  ``Split_Set`` (Train, Development, Test1, Test2) is the row's ``partition``;
``SpkrID`` its speaker and group (``Unknown`` → speaker ``unknown``, kept and noted);
``Gender`` Male/Female → M/F; ``EmoAct``/``EmoVal``/``EmoDom`` the dimensional ratings
(1-7).  Transcripts are automatic: ``text_source: asr``; a segment without one has text ""
and ``text_source: none``.  Dropped (recorded in the data-quality report): a label row
whose wav is missing, unreadable or empty, an O/X or unmapped class, a duplicate or
unusable FileName, and a wav in ``Audios`` that no label row names.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Mapping

from mger.core.audio import AudioInfo
from mger.core.manifest import Utterance, portable_path, utt_id_problem
from mger.core.reporting import ProblemLog, StageError
from mger.corpus.audio_files import checked_audio, format_counts
from mger.corpus.readers import CorpusRead, register_reader
from mger.corpus.tables import decode_lines, read_table

COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
FULL = {"A": "ang", "S": "sad", "H": "hap", "U": "sur", "F": "fea", "D": "dis", "C": "con", "N": "neu"}
CLASS_MAPS = {
    "4class": {"N": "neu", "H": "hap", "A": "ang", "S": "sad"},
    "8class": dict(FULL),  # every agreed class; O (other) and X (no agreement) dropped by every map
}
PARTITIONS = ("Train", "Development", "Test1", "Test2")
_GENDERS = {"male": "M", "female": "F"}


@register_reader("msp_podcast", class_maps=CLASS_MAPS, protocol="predefined")
def read_msp_podcast(root: Path, class_map: Mapping[str, str], log: ProblemLog) -> CorpusRead:
    """Read the MSP-Podcast tree at ``root`` (see the module docstring)."""
    labels = root / "Labels" / "labels_consensus.csv"
    audios = root / "Audios"
    if not root.is_dir():
        raise StageError(f"{root}: corpus root does not exist or is not a folder")
    if not labels.is_file() or not audios.is_dir():
        missing = [str(p.relative_to(root)) for p in (labels, audios) if not p.exists()] or [str(labels)]
        raise StageError(
            f"{root}: not an MSP-Podcast tree (no {', '.join(missing)}); point prepare.root at the folder "
            "holding Audios/ and Labels/labels_consensus.csv"
        )
    table = read_table(labels, COLUMNS, "MSP-Podcast label table", delimiter=",")
    for lineno in table.ragged_lines:
        log.add(f"line {lineno}", labels, "row with more or fewer fields than the header (read as far as it goes)")
    raw_codes: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    seen: set[str] = set()
    infos: list[AudioInfo] = []
    out = []
    for lineno, row in table.rows:
        name = row["FileName"]
        uid = Path(name).stem
        where = f"{labels}:{lineno}"
        problem = utt_id_problem(uid) or ("is not a .wav name" if Path(name).suffix.lower() != ".wav" else None)
        if problem:
            log.add(name or f"line {lineno}", where, f"FileName {name!r} {problem}")
            continue
        if uid in seen:
            log.add(uid, where, "duplicate FileName")
            continue
        seen.add(uid)
        code = row["EmoClass"]
        raw_codes[code] += 1
        if code not in class_map:
            what = {"O": "other", "X": "no agreement"}.get(code, "")
            log.add(uid, where, f"EmoClass {code!r}{f' ({what})' if what else ''} outside the class map", echo=False)
            continue
        info = checked_audio(uid, audios / name, log)
        if info is None:
            continue
        infos.append(info)
        out.append(_utterance(root, uid, audios / name, info.duration, row, class_map[code], where, log, notes))
    for wav in sorted(audios.glob("*.wav")):
        if wav.stem not in seen and not wav.name.startswith("."):
            log.add(wav.stem, wav, "wav without a row in Labels/labels_consensus.csv", echo=False)
    if notes["unknown_speaker"]:
        log.add(
            f"{notes['unknown_speaker']} utterances",
            labels,
            "SpkrID 'Unknown': kept with speaker 'unknown' (one speaker to speaker-independent folds)",
            kept=True,
        )
    details = {
        "per_raw_label_all": dict(sorted(raw_codes.items())),
        "audio_formats": format_counts(infos),
        "msp_podcast_notes": dict(sorted(notes.items())),
    }
    return CorpusRead(out, details)


def _rating(value: str, column: str, uid: str, where: str, log: ProblemLog) -> float | None:
    try:
        return float(value)
    except ValueError:
        log.add(uid, where, f"{column} {value!r} is not a number (kept without it)", kept=True, echo=False)
        return None


def _utterance(
    root: Path,
    uid: str,
    wav: Path,
    duration: float,
    row: Mapping[str, str],
    label: str,
    where: str,
    log: ProblemLog,
    notes: Counter[str],
) -> Utterance:
    speaker = row["SpkrID"]
    if not speaker or speaker.lower() == "unknown":
        speaker = "unknown"
        notes["unknown_speaker"] += 1
    gender = _GENDERS.get(row["Gender"].lower(), "")
    notes["gender_unknown"] += not gender
    partition = row["Split_Set"]
    if partition not in PARTITIONS:
        log.add(
            uid,
            where,
            f"Split_Set {partition!r} is not one of {', '.join(PARTITIONS)} (kept as is)",
            kept=True,
            echo=False,
        )
    transcript = root / "Transcripts" / f"{uid}.txt"
    text = " ".join(decode_lines(transcript.read_bytes())[0].split()) if transcript.is_file() else ""
    notes["no_transcript"] += not text
    return Utterance(
        utt_id=uid,
        corpus="msp_podcast",
        wav=portable_path(wav),
        duration=round(duration, 4),
        speaker=speaker,
        gender=gender,
        text=text,
        text_source="asr" if text else "none",
        label=label,
        label_raw=row["EmoClass"],
        group=speaker,
        partition=partition,
        valence=_rating(row["EmoVal"], "EmoVal", uid, where, log),
        activation=_rating(row["EmoAct"], "EmoAct", uid, where, log),
        dominance=_rating(row["EmoDom"], "EmoDom", uid, where, log),
    )
