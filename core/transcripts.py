"""ASR transcripts (JSONL) and the choice of transcript every text-reading stage makes.

``mger transcribe`` writes one :class:`Transcript` per manifest utterance to
``transcribe.out`` and, beside it, the *ASR manifest* ``transcribe.manifest``: the prepared
manifest with each ``text`` replaced by its ASR transcript, plus a sidecar
``<ASR manifest>.source.json`` (:func:`source_identity`) naming the backend, the model and
the prepared manifest it was made from.

``transcribe.source`` picks the manifest alignment, extraction, fine-tuning, training and the
report read (:func:`text_manifest`): ``gold``, the prepared manifest (as before the stage
existed); ``asr``, the ASR manifest.  Every later reader therefore sees one manifest, and a
store's ``manifest_sha256`` (ids and transcripts) changes with the text; the stores built from
the ASR manifest also carry its identity (:func:`fingerprint_entries`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Iterable, Sequence

from mger.core.config import Params, with_overrides
from mger.core.manifest import Utterance
from mger.core.reporting import StageError, write_json, write_jsonl


@dataclass(frozen=True)
class Transcript:
    """One row of ``transcripts.jsonl``.  ``model``: the model's name (hub id, path or the
    pocketsphinx wheel's model), ``model_id``: its identity (revision and weights hash, or the
    wheel's version); ``note``: why ``text`` is empty (silent or empty audio), else empty."""

    utt_id: str
    text: str
    backend: str
    model: str
    model_id: str
    note: str = ""


TRANSCRIPT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Transcript))


def write_transcripts(path: str | Path, rows: Iterable[Transcript]) -> int:
    """One JSON object per line, atomically; the number written."""
    return write_jsonl(path, rows)


def read_transcripts(path: str | Path) -> dict[str, Transcript]:
    """utt_id → transcript; a damaged line is a :class:`StageError` naming ``file:line``."""
    out: dict[str, Transcript] = {}
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise StageError(f"{where}: not a JSON object ({err.msg}); rerun `mger transcribe`") from None
            if not isinstance(row, dict) or set(row) != set(TRANSCRIPT_FIELDS):
                raise StageError(f"{where}: expected the keys {', '.join(TRANSCRIPT_FIELDS)}; rerun `mger transcribe`")
            if not all(isinstance(v, str) for v in row.values()):
                raise StageError(f"{where}: every value must be a string; rerun `mger transcribe`")
            if row["utt_id"] in out:
                raise StageError(f"{where}: utterance {row['utt_id']} appears twice; rerun `mger transcribe`")
            out[row["utt_id"]] = Transcript(**row)
    return out


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def asr_utterances(utts: Sequence[Utterance], transcripts: dict[str, Transcript], where: str) -> list[Utterance]:
    """``utts`` with their ASR text (``text_source`` asr); an utterance without a transcript is a
    :class:`StageError`."""
    missing = [u.utt_id for u in utts if u.utt_id not in transcripts]
    if missing:
        raise StageError(
            f"{where}: no transcript of {len(missing)} manifest utterance(s) (e.g. {missing[0]}); "
            "rerun `mger transcribe`"
        )
    return [replace(u, text=transcripts[u.utt_id].text, text_source="asr") for u in utts]


def source_path(asr_manifest: str | Path) -> Path:
    """The sidecar naming what the ASR manifest was made from."""
    return Path(f"{asr_manifest}.source.json")


def source_identity(backend: str, model: str, model_id: str, prepared: str | Path) -> dict[str, str]:
    """What the ASR manifest's text is: ``text_source`` asr, the backend, model and its identity,
    and the sha256 of the prepared manifest it was made from (its staleness check)."""
    return {
        "text_source": "asr",
        "asr_backend": backend,
        "asr_model": model,
        "asr_model_id": model_id,
        "prepared_manifest": str(prepared),
        "prepared_manifest_sha256": file_sha256(prepared),
    }


def write_source(asr_manifest: str | Path, identity: dict[str, str]) -> None:
    write_json(source_path(asr_manifest), identity)


def read_source(asr_manifest: str | Path) -> dict[str, str] | None:
    """The ASR manifest's identity, or None for a manifest without one (a prepared manifest)."""
    path = source_path(asr_manifest)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StageError(f"{path}: not readable JSON; rerun `mger transcribe`") from None


def fingerprint_entries(manifest: str | Path) -> dict[str, str]:
    """A store's fingerprint entries for the manifest it was built from: the ASR manifest's
    source, backend and model identity; nothing for a prepared (gold) manifest, so stores of
    gold text keep their fingerprints."""
    identity = read_source(manifest)
    if identity is None:
        return {}
    return {k: identity[k] for k in ("text_source", "asr_backend", "asr_model", "asr_model_id")}


TEXT_SOURCES = ("gold", "asr")  # an experiment's explicit text_source: the store of that transcript


def source_text_store(out: str | Path, source: str) -> Path:
    """The text store of one transcript, whatever the run reads (experiments with ``text_source:
    gold`` or ``asr``, the gold-vs-ASR pair): ``text-gold.h5`` or ``text-asr.h5`` in ``out``."""
    return Path(out) / f"text-{source}.h5"


def prepared_manifest(manifest: str | Path) -> str:
    """The prepared (gold) manifest behind ``manifest``: the one an ASR manifest was made from
    (its sidecar's path, refused unless that file still has the recorded sha256), else itself."""
    identity = read_source(manifest)
    if identity is None:
        return str(manifest)
    prepared = identity.get("prepared_manifest")
    if not prepared or not Path(prepared).is_file() or file_sha256(prepared) != identity["prepared_manifest_sha256"]:
        raise StageError(
            f"{source_path(manifest)}: names no prepared manifest holding what it was made from; "
            "rerun `mger transcribe`"
        )
    return str(prepared)


def manifest_of_store(store: str | Path, manifest: str | Path, asr_manifest: str | Path) -> str:
    """The manifest a store was built from (``manifest``: the run's text): the ASR manifest for
    ``text-asr.h5``, the prepared one for ``text-gold.h5``, else ``manifest``."""
    name = Path(store).name
    if name == source_text_store("", "asr").name:
        return str(asr_manifest)
    return prepared_manifest(manifest) if name == source_text_store("", "gold").name else str(manifest)


def text_manifest(prepared: str | Path, source: str, asr_manifest: str | Path) -> str:
    """The manifest the text-reading stages read under ``transcribe.source``: ``gold``, the
    prepared one; ``asr``, the ASR manifest, refused (one line naming it) when missing or made
    from another prepared manifest than ``prepared`` holds now."""
    if source == "gold":
        return str(prepared)
    identity = read_source(asr_manifest)
    if identity is None or not Path(asr_manifest).is_file():
        raise StageError(f"{asr_manifest}: no ASR manifest (transcribe.source: asr); run `mger transcribe` first")
    if identity.get("prepared_manifest_sha256") != file_sha256(prepared):
        raise StageError(
            f"{asr_manifest}: stale: made from another {prepared} than the current one; rerun `mger transcribe`"
        )
    return str(asr_manifest)


def text_params(params: Params) -> Params:
    """``params`` with ``prepare.manifest`` the manifest of the chosen transcript
    (``transcribe.source``: gold, the prepared one; asr, the ASR manifest of `mger transcribe`),
    so alignment, extraction, fine-tuning, training, the report and the export read one text."""
    t = params.transcribe
    return with_overrides(params, {"prepare.manifest": text_manifest(params.prepare.manifest, t.source, t.manifest)})
