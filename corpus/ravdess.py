"""Reader for RAVDESS (Livingstone & Russo 2018), real or synthetic (``prepare.corpus: ravdess``).

Layout read (the Zenodo release's ``Audio_Speech_Actors_01-24.zip``, optionally with the song
and video archives unpacked into the same folders)::

    <root>/Actor_XX/MM-VV-EE-II-SS-RR-AA.wav      e.g. Actor_01/03-01-06-01-02-01-01.wav

The seven two-digit fields of a file name: modality (01 full audio-video, 02 video-only,
03 audio-only), vocal channel (01 speech, 02 song), emotion (01 neutral, 02 calm, 03 happy,
04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised), intensity (01 normal, 02 strong;
neutral has normal only), statement (01 "Kids are talking by the door", 02 "Dogs are sitting
by the door"), repetition, actor (01..24; odd male, even female).  Audio-only speech files
are kept: ``utt_id`` the file's stem, ``speaker`` and ``group`` the actor (``01``),
``gender`` from the actor's parity, ``text`` the statement (``text_source: prompt``),
``label_raw`` the emotion's name, ``extras`` intensity, statement, repetition.  Song and video
files are skipped and counted (each listed in the data-quality report, not printed one by
one); a file whose name does not parse, whose actor field differs from its folder, or whose
audio is unusable is dropped and recorded.  Default protocol: ``speaker_folds``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Mapping

from mger.core.audio import AudioInfo
from mger.core.manifest import Utterance, portable_path
from mger.core.reporting import ProblemLog, StageError
from mger.corpus.audio_files import checked_audio, format_counts
from mger.corpus.readers import CorpusRead, register_reader

EMOTIONS: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
INTENSITIES: dict[str, str] = {"01": "normal", "02": "strong"}
STATEMENTS: dict[str, str] = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
MODALITIES: dict[str, str] = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
CHANNELS: dict[str, str] = {"01": "speech", "02": "song"}
CLASS_MAPS: dict[str, dict[str, str]] = {
    "4class": {"neutral": "neu", "happy": "hap", "angry": "ang", "sad": "sad"},  # IEMOCAP's 4class names
    "8class": {
        "neutral": "neu",
        "calm": "cal",
        "happy": "hap",
        "sad": "sad",
        "angry": "ang",
        "fearful": "fea",
        "disgust": "dis",
        "surprised": "sur",
    },
}
_ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.(wav|mp4)$")
_FIELDS = ("modality", "channel", "emotion", "intensity", "statement", "repetition", "actor")


def _actor_dirs(root: Path, log: ProblemLog) -> list[Path]:
    """The ``Actor_XX`` folders; other entries of ``root`` are recorded, not read."""
    if not root.is_dir():
        raise StageError(f"{root}: not a folder; check prepare.root")
    dirs = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and _ACTOR_DIR.match(entry.name):
            dirs.append(entry)
        else:  # listed, not printed: synth's marker and truth/, a README, the zips...
            log.add(entry.name, entry, "not an Actor_XX folder (not read)", echo=False)
    if not dirs:
        raise StageError(
            f"{root}: not a RAVDESS tree (no Actor_XX/ folders of MM-VV-EE-II-SS-RR-AA.wav files); "
            "check prepare.root and prepare.corpus"
        )
    return dirs


def parse_name(path: Path, log: ProblemLog, skipped: Counter[str]) -> dict[str, str] | None:
    """The seven fields of a kept file's name, or None: a song or video file is counted in
    ``skipped`` and listed quietly; a bad name or code is recorded and dropped."""
    m = _NAME.match(path.name)
    if m is None:
        log.add(path.name, path, "file name is not MM-VV-EE-II-SS-RR-AA.wav (e.g. 03-01-06-01-02-01-01.wav)")
        return None
    f = dict(zip(_FIELDS, m.groups()[:7]))
    for name, known in (
        ("modality", MODALITIES),
        ("channel", CHANNELS),
        ("emotion", EMOTIONS),
        ("intensity", INTENSITIES),
        ("statement", STATEMENTS),
    ):
        if f[name] not in known:
            log.add(path.stem, path, f"{name} field {f[name]!r} is not one of RAVDESS's ({' '.join(known)})")
            return None
    kind = "video" if f["modality"] != "03" or m[8] == "mp4" else "song" if f["channel"] == "02" else ""
    if kind:
        skipped[kind] += 1
        what = f"{MODALITIES[f['modality']]} {CHANNELS[f['channel']]}"
        log.add(path.stem, path, f"{kind} file ({what}): skipped, mger reads audio-only speech", echo=False)
        return None
    return f


@register_reader("ravdess", class_maps=CLASS_MAPS, protocol="speaker_folds")
def read_ravdess(root: Path, class_map: Mapping[str, str], log: ProblemLog) -> CorpusRead:
    """Every audio-only speech wav of a RAVDESS tree → one :class:`Utterance`; see the module doc."""
    out: list[Utterance] = []
    infos: list[AudioInfo] = []
    skipped: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    for actor_dir in _actor_dirs(root, log):
        for path in sorted(actor_dir.iterdir()):
            if not path.is_file():
                log.add(path.name, path, f"not a file (a folder inside {actor_dir.name}/ is not read)")
                continue
            f = parse_name(path, log, skipped)
            if f is None:
                continue
            if f["actor"] != actor_dir.name[-2:]:
                log.add(path.stem, path, f"actor field {f['actor']} differs from its folder {actor_dir.name}")
                continue
            emotion = EMOTIONS[f["emotion"]]
            if emotion not in class_map:
                outside[emotion] += 1
                log.add(path.stem, path, f"label {emotion!r} outside the class map", echo=False)
                continue
            info = checked_audio(path.stem, path, log)
            if info is None:
                continue
            if emotion == "neutral" and f["intensity"] == "02":
                log.add(path.stem, path, "neutral at strong intensity (RAVDESS has none)", kept=True)
            infos.append(info)
            out.append(_utterance(path, f, info, class_map))
    details = {
        "skipped": {"song": skipped["song"], "video": skipped["video"]},
        "dropped_by_class_map": dict(sorted(outside.items())),
        "audio_formats": format_counts(infos),
    }
    return CorpusRead(out, details)


def _utterance(path: Path, f: dict[str, str], info: AudioInfo, class_map: Mapping[str, str]) -> Utterance:
    emotion = EMOTIONS[f["emotion"]]
    return Utterance(
        utt_id=path.stem,
        corpus="ravdess",
        wav=portable_path(path),
        duration=round(info.duration, 4),
        speaker=f["actor"],
        gender="M" if int(f["actor"]) % 2 else "F",
        text=STATEMENTS[f["statement"]],
        text_source="prompt",
        label=class_map[emotion],
        label_raw=emotion,
        group=f["actor"],
        partition="",
        valence=None,
        activation=None,
        dominance=None,
        extras={
            "intensity": INTENSITIES[f["intensity"]],
            "statement": f["statement"],
            "repetition": f["repetition"],
        },
    )
