"""The utterance manifest (JSONL).

One :class:`Utterance` per kept utterance; the manifest is what every later stage reads
instead of walking the corpus again.  Folds and validation speakers: :mod:`mger.core.splits`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePath
from typing import Any, Iterable, Optional, Sequence

from mger.core.reporting import write_jsonl

TEXT_SOURCES = ("gold", "prompt", "asr", "none")  # where a row's text comes from
AUDIO_SUFFIXES = (".wav", ".flac", ".mp4")  # what read_audio decodes (mp4: MELD's clips, through PyAV)


@dataclass(frozen=True)
class Utterance:
    """One manifest row, whatever the corpus. Field names and order are part of the format.

    ``group`` is the unit leave-one-group-out folds on (IEMOCAP: its session, ``Ses01``);
    ``partition`` the corpus's own split name where it has one (MSP-Podcast ``Train``, MELD
    ``dev``), else empty; ``gender`` ``F``, ``M`` or empty when unknown; ``text_source`` one of
    :data:`TEXT_SOURCES`; the dimensional ratings are None where the corpus has none;
    ``extras`` holds corpus-specific fields (IEMOCAP: ``session``, ``dialog``, ``improvised``).
    """

    utt_id: str
    corpus: str
    wav: str
    duration: float
    speaker: str
    gender: str
    text: str
    text_source: str
    label: str
    label_raw: str
    group: str
    partition: str
    valence: Optional[float]
    activation: Optional[float]
    dominance: Optional[float]
    extras: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    def extra(self, name: str, default: Any = None) -> Any:
        """A corpus-specific field (``extras``), or ``default``."""
        return self.extras.get(name, default)


MANIFEST_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Utterance))


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> int:
    """Write one JSON object per line, atomically (the old manifest stays whole if writing
    fails); return the number written."""
    return write_jsonl(path, utterances)


def portable_path(path: str | Path) -> str:
    """``path`` relative to the working directory (the project root, where ``mger`` and ``dvc``
    run) when it lies under it, else absolute: a copied or moved project then reads its own
    files, and a corpus elsewhere (a real IEMOCAP folder) is still found."""
    cwd = Path.cwd()
    for candidate in (Path(os.path.abspath(path)), Path(path).resolve()):
        for base in (cwd, cwd.resolve()):
            if candidate.is_relative_to(base):
                return str(candidate.relative_to(base))
    return str(Path(path).resolve())


_ID_CHARS = re.compile(r"[A-Za-z0-9_.+-]+")


def utt_id_problem(utt_id: str) -> str | None:
    """Why ``utt_id`` cannot name a file inside a folder (wav, TextGrid, features), or None: the
    one rule for ids, applied by ``mger prepare`` and by every manifest read."""
    if not utt_id:
        return "is empty"
    if "/" in utt_id or "\\" in utt_id:
        return "contains a path separator"
    if utt_id.startswith("."):
        return "starts with '.'"
    if ".." in utt_id:
        return "contains '..'"
    if not _ID_CHARS.fullmatch(utt_id):
        return "has characters other than letters, digits and _ . + -"
    if not utt_id[0].isalnum():
        return "does not start with a letter or digit"
    return None


def wav_problem(wav: str) -> str | None:
    """Why a manifest ``wav`` cannot be a corpus file ``mger prepare`` wrote, or None: prepare
    writes ``.wav`` paths relative to the project folder or absolute, never with ``..``, so a
    path that climbs out of its folder (``../../x.wav``) or names another kind of file
    (``/etc/passwd``) is refused where the manifest is read."""
    if not wav:
        return "is empty"
    if ".." in PurePath(wav.replace("\\", "/")).parts:
        return "climbs out of its folder ('..')"
    if PurePath(wav).suffix.lower() not in AUDIO_SUFFIXES:
        return f"is not an audio file mger reads ({', '.join(AUDIO_SUFFIXES)})"
    return None


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a manifest written by :func:`write_manifest`.  Relative ``wav`` paths are relative to
    the working directory (see :func:`portable_path`)."""
    path = Path(path)
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            out.append(_row(line, f"{path}:{lineno}"))
    return out


_TYPES = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (float, int),
    "Optional[float]": (float, int, type(None)),
    "dict[str, Any]": (dict,),
}
_FIELD_TYPES: dict[str, tuple[type, ...]] = {f.name: _TYPES[f.type] for f in fields(Utterance)}
OLD_FIELDS = ("session", "dialog", "improvised")  # the IEMOCAP-only manifest of mger before corpus-neutral rows


def _row(line: str, where: str) -> Utterance:
    """One manifest line; a truncated line, a missing field or a wrongly typed value is a
    ValueError naming ``file:line`` and the field."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{where}: not a complete JSON object ({err.msg} at column {err.colno}); "
            "the manifest is damaged: rerun `mger prepare`"
        ) from None
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}; rerun `mger prepare`")
    missing = set(MANIFEST_FIELDS) - set(row)
    if missing and set(OLD_FIELDS) <= set(row):
        raise ValueError(
            f"{where}: a manifest of an older mger (IEMOCAP-only fields, no corpus or group); re-run `mger prepare`"
        )
    if missing:
        raise ValueError(f"{where}: manifest row lacks {', '.join(sorted(missing))}")
    for name, types in _FIELD_TYPES.items():
        value = row[name]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise ValueError(
                f"{where}: {name} is {value!r}, expected {types[0].__name__}; fix the line or rerun `mger prepare`"
            )
    problem = utt_id_problem(row["utt_id"])
    if row["text_source"] not in TEXT_SOURCES:
        raise ValueError(f"{where}: text_source is {row['text_source']!r}, not one of {', '.join(TEXT_SOURCES)}")
    if problem:
        raise ValueError(
            f"{where}: utt_id {row['utt_id']!r} {problem}: ids name files (TextGrid, features); "
            "fix the line or rerun `mger prepare`"
        )
    problem = wav_problem(row["wav"])
    if problem:
        raise ValueError(
            f"{where}: wav {row['wav']!r} {problem}: a manifest wav is a corpus file `mger prepare` wrote; "
            "fix the line or rerun `mger prepare`"
        )
    return Utterance(**{k: row[k] for k in MANIFEST_FIELDS})


def repeated_ids(utterances: Sequence[Utterance]) -> list[str]:
    """The utterance ids that appear more than once, in the order of their second appearance."""
    seen: set[str] = set()
    twice: dict[str, None] = {}
    for u in utterances:
        if u.utt_id in seen:
            twice.setdefault(u.utt_id)
        seen.add(u.utt_id)
    return list(twice)


def groups(utterances: Sequence[Utterance]) -> list[str]:
    """The sorted groups present (what leave-one-group-out folds on)."""
    return sorted({u.group for u in utterances})
