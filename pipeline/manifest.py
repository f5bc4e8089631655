"""The utterance manifest (JSONL).

One :class:`Utterance` per kept utterance; the manifest is what every later stage reads
instead of walking the corpus again.  Folds and validation speakers: :mod:`pipeline.splits`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Utterance:
    """One manifest row. Field names and order are part of the format."""

    utt_id: str
    session: int
    dialog: str
    speaker: str
    gender: str
    improvised: bool
    wav: str
    duration: float
    text: str
    label: str
    label_raw: str
    valence: float
    activation: float
    dominance: float


MANIFEST_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Utterance))


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> int:
    """Write one JSON object per line; return the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for utt in utterances:
            fh.write(json.dumps(asdict(utt), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a manifest written by :func:`write_manifest`."""
    path = Path(path)
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = set(MANIFEST_FIELDS) - set(row)
            if missing:
                raise ValueError(f"{path}:{lineno}: manifest row lacks {', '.join(sorted(missing))}")
            out.append(Utterance(**{k: row[k] for k in MANIFEST_FIELDS}))
    return out


def sessions(utterances: Sequence[Utterance]) -> list[int]:
    """The sorted session numbers present."""
    return sorted({u.session for u in utterances})
