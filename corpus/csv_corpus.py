"""Reader for any corpus listed in one CSV/TSV file (``prepare.corpus: csv``).

``prepare.root`` is the table itself (a file).  Its delimiter is a tab for ``.tsv``/``.tab``,
else sniffed from the header (, ; tab |).  Columns, by name:

- required: ``wav`` (relative paths resolved against the table's folder), ``label``, ``speaker``;
- optional: ``text`` (→ ``text_source: gold``; a row with empty text, or no column: ``none``),
  ``group`` (default: the speaker), ``partition``, ``gender`` (F/M, female/male; else ""),
  ``utt_id`` (default: the wav's stem made file-name-safe, ``_2``, ``_3``... when it repeats),
  ``valence``/``activation``/``dominance`` (numbers).  Any other column goes to ``extras``.

Class map ``all`` keeps every label as it is (the report's ``class_map`` lists the labels
found); a custom mapping (``prepare.class_map: {raw: class}``) drops the labels outside it.
Dropped and recorded: a row whose audio is missing or unreadable, an empty label or speaker,
an unusable or duplicate ``utt_id``, a label outside a custom map.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

from mger.core.audio import AudioInfo
from mger.core.manifest import AUDIO_SUFFIXES, Utterance, portable_path, utt_id_problem
from mger.core.reporting import ProblemLog, StageError
from mger.corpus.audio_files import checked_audio, format_counts
from mger.corpus.readers import CorpusRead, register_reader
from mger.corpus.tables import read_table

REQUIRED = ("wav", "label", "speaker")
OPTIONAL = ("text", "group", "partition", "gender", "utt_id", "valence", "activation", "dominance")
_GENDERS = {"f": "F", "female": "F", "w": "F", "woman": "F", "m": "M", "male": "M", "man": "M"}
_UNKNOWN_GENDERS = {"", "unknown", "u", "na", "n/a", "none", "?"}
ALL: dict[str, str] = {}  # the "all" map: empty stands for "every label as it is"


@register_reader("csv", class_maps={"all": ALL}, protocol="speaker_folds")
def read_csv_corpus(root: Path, class_map: Mapping[str, str], log: ProblemLog) -> CorpusRead:
    """Read the corpus the table ``root`` lists (see the module docstring)."""
    if not root.is_file():
        what = "a folder" if root.is_dir() else "missing"
        raise StageError(f"{root}: prepare.root of a csv corpus is the CSV/TSV file itself, and this is {what}")
    table = read_table(root, REQUIRED, "corpus table")
    for lineno in table.ragged_lines:
        log.add(f"line {lineno}", root, "row with more or fewer fields than the header (read as far as it goes)")
    identity = not class_map
    extra_columns = [c for c in table.columns if c not in REQUIRED + OPTIONAL]
    seen: set[str] = set()
    raw: Counter[str] = Counter()
    infos: list[AudioInfo] = []
    out = []
    for lineno, row in table.rows:
        where = f"{root}:{lineno}"
        uid = _utt_id(row, seen, where, log)
        if uid is None:
            continue
        label, speaker = row["label"], row["speaker"]
        if not label or not speaker:
            log.add(uid, where, f"{'label' if not label else 'speaker'} empty")
            continue
        raw[label] += 1
        if not identity and label not in class_map:
            log.add(uid, where, f"label {label!r} outside the class map", echo=False)
            continue
        info = _audio(uid, root, row["wav"], where, log)
        if info is None:
            continue
        infos.append(info)
        wav = Path(row["wav"]) if Path(row["wav"]).is_absolute() else root.parent / row["wav"]
        mapped = label if identity else class_map[label]
        out.append(_utterance(uid, wav, info.duration, row, mapped, where, log, extra_columns))
    details: dict[str, Any] = {"per_raw_label_all": dict(sorted(raw.items())), "audio_formats": format_counts(infos)}
    if identity:
        details["class_map"] = {label: label for label in sorted(raw)}
    return CorpusRead(out, details)


def _audio(uid: str, root: Path, wav: str, where: str, log: ProblemLog) -> AudioInfo | None:
    """The checked audio of a row's ``wav`` (relative to the table's folder), or None (recorded)."""
    if not wav:
        log.add(uid, where, "wav empty")
        return None
    path = Path(wav) if Path(wav).is_absolute() else root.parent / wav
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        log.add(uid, path, f"not an audio file mger reads ({', '.join(AUDIO_SUFFIXES)})")
        return None
    return checked_audio(uid, path, log)


def _safe_id(stem: str) -> str:
    """A file-name-safe id from a wav stem (see :func:`mger.core.manifest.utt_id_problem`)."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", stem).replace("..", "_")
    safe = re.sub(r"^[^A-Za-z0-9]+", "", safe)
    return safe or "utt"


def _utt_id(row: Mapping[str, str], seen: set[str], where: str, log: ProblemLog) -> str | None:
    """The row's id: its ``utt_id`` (checked; a duplicate dropped), else the wav's stem made safe
    and unique (``_2``, ``_3``...)."""
    given = row.get("utt_id", "")
    if given:
        problem = utt_id_problem(given)
        if problem or given in seen:
            log.add(given, where, f"utt_id {problem}" if problem else "duplicate utt_id")
            return None
        seen.add(given)
        return given
    base = _safe_id(Path(row["wav"]).stem)
    uid, n = base, 1
    while uid in seen:
        n += 1
        uid = f"{base}_{n}"
    seen.add(uid)
    return uid


def _number(row: Mapping[str, str], column: str, uid: str, where: str, log: ProblemLog) -> float | None:
    value = row.get(column, "")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        log.add(uid, where, f"{column} {value!r} is not a number (kept without it)", kept=True, echo=False)
        return None


def _gender(value: str, uid: str, where: str, log: ProblemLog) -> str:
    key = value.strip().lower()
    if key not in _GENDERS and key not in _UNKNOWN_GENDERS:
        log.add(uid, where, f"gender {value!r} is not F/M/female/male (kept as unknown)", kept=True, echo=False)
    return _GENDERS.get(key, "")


def _utterance(
    uid: str,
    wav: Path,
    duration: float,
    row: Mapping[str, str],
    label: str,
    where: str,
    log: ProblemLog,
    extra_columns: list[str],
) -> Utterance:
    text = " ".join(row.get("text", "").split())
    return Utterance(
        utt_id=uid,
        corpus="csv",
        wav=portable_path(wav),
        duration=round(duration, 4),
        speaker=row["speaker"],
        gender=_gender(row.get("gender", ""), uid, where, log),
        text=text,
        text_source="gold" if text else "none",
        label=label,
        label_raw=row["label"],
        group=row.get("group") or row["speaker"],
        partition=row.get("partition", ""),
        valence=_number(row, "valence", uid, where, log),
        activation=_number(row, "activation", uid, where, log),
        dominance=_number(row, "dominance", uid, where, log),
        extras={c: row[c] for c in extra_columns},
    )
