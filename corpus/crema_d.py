"""Reader for CREMA-D (Cao et al. 2014), real or synthetic (``prepare.corpus: crema_d``).

Layout read (the dataset's GitHub release)::

    <root>/AudioWAV/{actor}_{SENTENCE}_{EMOTION}_{LEVEL}.wav   e.g. 1001_DFA_ANG_XX.wav
    <root>/VideoDemographics.csv                              ActorID,Age,Sex,Race,Ethnicity

Actors 1001..1091; emotions ANG DIS FEA HAP NEU SAD; levels LO MD HI (the sentence ``IEO``
only) and XX (unspecified); every actor reads the 12 prompts below, so ``text`` is the prompt
(``text_source: prompt``).  One row per file: ``utt_id`` the file's stem, ``speaker`` and
``group`` the actor, ``gender`` from ``VideoDemographics.csv`` (``Sex`` Male/Female; empty,
and recorded, where the file or the actor's row is missing), ``label_raw`` the emotion code,
``extras`` the sentence code and the level.  Default protocol: ``speaker_folds`` (no official
split).  Every file that is not a well-named wav, or whose audio is missing, empty or
unreadable, is recorded in the data-quality report and dropped.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Mapping

from mger.core.audio import AudioInfo
from mger.core.manifest import Utterance, portable_path
from mger.core.reporting import ProblemLog, StageError
from mger.corpus.audio_files import checked_audio, format_counts
from mger.corpus.readers import CorpusRead, register_reader

# The 12 sentence codes and their prompts, as the dataset's README lists them.
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
EMOTIONS: dict[str, str] = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
LEVELS: dict[str, str] = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
CLASS_MAPS: dict[str, dict[str, str]] = {
    "4class": {"NEU": "neu", "HAP": "hap", "ANG": "ang", "SAD": "sad"},  # IEMOCAP's 4class names
    "6class": {"NEU": "neu", "HAP": "hap", "ANG": "ang", "SAD": "sad", "DIS": "dis", "FEA": "fea"},
}
AUDIO_DIR = "AudioWAV"
DEMOGRAPHICS = "VideoDemographics.csv"
_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})\.wav$")
_SEX = {"male": "M", "female": "F"}


def read_demographics(root: Path, log: ProblemLog) -> dict[str, str]:
    """Actor id → ``F``/``M`` from ``VideoDemographics.csv``; a missing file, header or
    unknown ``Sex`` value is recorded (genders left empty), never fatal."""
    path = root / DEMOGRAPHICS
    if not path.is_file():
        log.add(DEMOGRAPHICS, path, "missing: every gender left empty", kept=True)
        return {}
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        header = [h.strip() for h in reader.fieldnames or []]
    if not {"ActorID", "Sex"} <= set(header):
        log.add(DEMOGRAPHICS, path, f"header {header} lacks ActorID or Sex: every gender left empty", kept=True)
        return {}
    genders: dict[str, str] = {}
    for lineno, row in enumerate(rows, 2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        sex = _SEX.get(row["Sex"].lower())
        if sex is None:
            reason = f"line {lineno}: Sex {row['Sex']!r} is not Male/Female: gender empty"
            log.add(row["ActorID"], path, reason, kept=True)
            continue
        genders[row["ActorID"]] = sex
    return genders


def _parse(path: Path, log: ProblemLog) -> re.Match[str] | None:
    """The file name's fields, or None (recorded) when it is not a CREMA-D name."""
    m = _NAME.match(path.name)
    if m is None:
        log.add(path.name, path, "file name is not {actor}_{SENTENCE}_{EMOTION}_{LEVEL}.wav (e.g. 1001_DFA_ANG_XX.wav)")
        return None
    for field, known in (("sentence", SENTENCES), ("emotion", EMOTIONS), ("level", LEVELS)):
        if m[field] not in known:
            log.add(path.stem, path, f"{field} code {m[field]!r} is not one of CREMA-D's ({' '.join(known)})")
            return None
    return m


@register_reader("crema_d", class_maps=CLASS_MAPS, protocol="speaker_folds")
def read_crema_d(root: Path, class_map: Mapping[str, str], log: ProblemLog) -> CorpusRead:
    """Every ``AudioWAV/*.wav`` of a CREMA-D tree → one :class:`Utterance`; see the module doc."""
    audio_dir = root / AUDIO_DIR
    if not audio_dir.is_dir():
        raise StageError(
            f"{root}: not a CREMA-D tree (no {AUDIO_DIR}/ folder of {{actor}}_{{SENTENCE}}_{{EMOTION}}_{{LEVEL}}.wav "
            "files); check prepare.root and prepare.corpus"
        )
    genders = read_demographics(root, log)
    unknown_actors: set[str] = set()
    out: list[Utterance] = []
    infos: list[AudioInfo] = []
    outside: Counter[str] = Counter()
    for path in sorted(audio_dir.iterdir()):
        m = _parse(path, log) if path.is_file() else None
        if not path.is_file():
            log.add(path.name, path, f"not a file (a folder inside {AUDIO_DIR}/ is not read)")
        if m is None:
            continue
        if m["emotion"] not in class_map:
            outside[m["emotion"]] += 1
            log.add(path.stem, path, f"label {m['emotion']!r} outside the class map", echo=False)
            continue
        info = checked_audio(path.stem, path, log)
        if info is None:
            continue
        actor = m["actor"]
        if genders and actor not in genders and actor not in unknown_actors:
            unknown_actors.add(actor)
            log.add(actor, root / DEMOGRAPHICS, "actor not listed: gender empty", kept=True)
        infos.append(info)
        out.append(_utterance(path, m, info, genders.get(actor, ""), class_map))
    details = {
        "per_level_kept": dict(sorted(Counter(u.extras["level"] for u in out).items())),
        "dropped_by_class_map": dict(sorted(outside.items())),
        "audio_formats": format_counts(infos),
    }
    return CorpusRead(out, details)


def _utterance(path: Path, m: re.Match[str], info: AudioInfo, gender: str, class_map: Mapping[str, str]) -> Utterance:
    return Utterance(
        utt_id=path.stem,
        corpus="crema_d",
        wav=portable_path(path),
        duration=round(info.duration, 4),
        speaker=m["actor"],
        gender=gender,
        text=SENTENCES[m["sentence"]],
        text_source="prompt",
        label=class_map[m["emotion"]],
        label_raw=m["emotion"],
        group=m["actor"],
        partition="",
        valence=None,
        activation=None,
        dominance=None,
        extras={"sentence": m["sentence"], "level": m["level"]},
    )
