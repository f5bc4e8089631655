"""One registry of corpus readers (``prepare.corpus``) and the one ``prepare`` they share.

A reader is a function ``read(root, class_map, log) -> CorpusRead``: it walks the corpus at
``root`` (refusing, in one line, a tree that is not its layout), builds one
:class:`mger.core.manifest.Utterance` per kept utterance with its labels mapped through
``class_map`` (raw code → class name; codes outside it are dropped and recorded), and records
every dropped or odd file in ``log`` (never skips silently).  It registers once, with its class
maps and its default protocol::

    @register_reader("crema_d", class_maps={"4class": {...}, "6class": {...}}, protocol="speaker_folds")
    def read_crema_d(root: Path, class_map: Mapping[str, str], log: ProblemLog) -> CorpusRead: ...

:func:`prepare_corpus` then writes the manifest and the data-quality report
(``reports/data_quality.json``) the same way for every corpus.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Union

from mger.core.manifest import Utterance, portable_path, write_manifest
from mger.core.reporting import ProblemLog, StageError, write_json

_BUILTINS = (  # the modules that register the built-in readers
    "mger.corpus.iemocap",
    "mger.corpus.msp_podcast",
    "mger.corpus.meld",
    "mger.corpus.crema_d",
    "mger.corpus.ravdess",
    "mger.corpus.csv_corpus",
)


@dataclass
class CorpusRead:
    """What a reader found: the kept utterances and its own report entries (raw label counts,
    unparsed lines, repaired characters, ...), merged into the data-quality report."""

    utterances: list[Utterance]
    details: dict[str, Any] = field(default_factory=dict)


Reader = Callable[[Path, Mapping[str, str], ProblemLog], CorpusRead]


@dataclass(frozen=True)
class ReaderEntry:
    name: str
    read: Reader
    class_maps: dict[str, dict[str, str]]  # named maps (raw code → class); "4class" where it exists
    protocol: str  # the default split.protocol: loso, predefined or speaker_folds


READERS: dict[str, ReaderEntry] = {}


def register_reader(name: str, class_maps: dict[str, dict[str, str]], protocol: str) -> Callable[[Reader], Reader]:
    """Register ``read`` as the reader of ``prepare.corpus: name``."""

    def register(read: Reader) -> Reader:
        if name in READERS and READERS[name].read is not read:
            raise ValueError(f"corpus reader {name!r} is registered twice")
        READERS[name] = ReaderEntry(name, read, class_maps, protocol)
        return read

    return register


def reader(name: str) -> ReaderEntry:
    """The registered reader ``name`` (the built-ins imported on first use)."""
    for module in _BUILTINS:
        if module not in sys.modules:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name != module:
                    raise
    if name not in READERS:
        raise StageError(f"prepare.corpus: {name!r} is not a corpus reader (known: {', '.join(sorted(READERS))})")
    return READERS[name]


def resolve_class_map(entry: ReaderEntry, spec: Union[str, Mapping[str, str]]) -> dict[str, str]:
    """``prepare.class_map``: a named map of this corpus, or an explicit raw code → class mapping."""
    if isinstance(spec, str):
        if spec not in entry.class_maps:
            known = ", ".join(sorted(entry.class_maps))
            raise StageError(f"prepare.class_map: {spec!r} is not a class map of {entry.name} (known: {known})")
        return dict(entry.class_maps[spec])
    return dict(spec)


def _section(
    corpus: str, root: str | Path, mapping: Mapping[str, str], found: CorpusRead, log: ProblemLog
) -> dict[str, Any]:
    """The data-quality report of one corpus read."""
    utterances = found.utterances
    return {
        "corpus": corpus,
        "root": portable_path(Path(root).resolve()),
        "class_map": dict(mapping),
        "kept": len(utterances),
        "dropped": sum(not p.kept for p in log.problems),
        "per_class": dict(sorted(Counter(u.label for u in utterances).items())),
        "per_raw_label_kept": dict(sorted(Counter(u.label_raw for u in utterances).items())),
        "per_group": dict(sorted(Counter(u.group for u in utterances).items())),
        "per_partition": dict(sorted(Counter(u.partition for u in utterances).items())),
        "per_speaker": dict(sorted(Counter(u.speaker for u in utterances).items())),
        "per_text_source": dict(sorted(Counter(u.text_source for u in utterances).items())),
        "hours": round(sum(u.duration for u in utterances) / 3600, 4),
        "problems": log.as_json(),
        **found.details,
    }


def _summary(what: str, utterances: list[Utterance], logs: list[ProblemLog], t0: float, manifest: str | Path) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(Counter(u.label for u in utterances).items()))
    dropped = sum(not p.kept for log in logs for p in log.problems)
    warned = sum(p.kept for log in logs for p in log.problems)
    print(
        f"prepare {what}: kept {len(utterances)} utterances ({counts}); dropped {dropped}, "
        f"{warned} kept with a warning; {time.perf_counter() - t0:.1f}s → {manifest}"
    )


def prepare_corpus(
    corpus: str,
    root: str | Path,
    manifest: str | Path,
    report: str | Path,
    class_map: Union[str, Mapping[str, str]],
    quiet: bool = False,
) -> list[Utterance]:
    """Read the corpus at ``root`` with reader ``corpus``; write the manifest and the data-quality report."""
    t0 = time.perf_counter()
    entry = reader(corpus)
    mapping = resolve_class_map(entry, class_map)
    log = ProblemLog(quiet=quiet)
    root = Path(root).resolve()
    found = entry.read(root, mapping, log)
    utterances = found.utterances
    if not utterances:
        raise StageError(f"{root}: no usable utterance found ({len(log.problems)} problems; see {report})")
    write_manifest(manifest, utterances)
    write_json(report, _section(corpus, root, mapping, found, log))
    _summary(corpus, utterances, [log], t0, manifest)
    return utterances


@dataclass(frozen=True)
class Source:
    """One corpus of a combined prepare (``prepare.corpora``): its reader, root and class map."""

    corpus: str
    root: str | Path
    class_map: Union[str, Mapping[str, str]]


def combined_row(name: str, utt: Utterance) -> Utterance:
    """``utt`` in a combined manifest: its id, speaker and group prefixed ``<name>-`` (ids stay
    file-name-safe; no two corpora share a speaker or a group)."""
    return replace(utt, utt_id=f"{name}-{utt.utt_id}", speaker=f"{name}-{utt.speaker}", group=f"{name}-{utt.group}")


def prepare_corpora(
    sources: Mapping[str, Source],
    manifest: str | Path,
    report: str | Path,
    quiet: bool = False,
) -> list[Utterance]:
    """Read every corpus of ``sources`` (name → :class:`Source`) into one manifest (rows through
    :func:`combined_row`, corpora in name order) and one data-quality report: the totals, and a
    section per corpus under ``corpora`` (as :func:`prepare_corpus` writes for one)."""
    t0 = time.perf_counter()
    if not sources:
        raise StageError("prepare.corpora: no corpus to combine")
    utterances: list[Utterance] = []
    sections: dict[str, dict[str, Any]] = {}
    logs = []
    for name in sorted(sources):
        source = sources[name]
        entry = reader(source.corpus)
        mapping = resolve_class_map(entry, source.class_map)
        log = ProblemLog(quiet=quiet)
        root = Path(source.root).resolve()
        found = entry.read(root, mapping, log)
        if not found.utterances:
            raise StageError(
                f"prepare.corpora.{name}: {root}: no usable utterance found ({len(log.problems)} problems)"
            )
        utterances += [combined_row(name, u) for u in found.utterances]
        sections[name] = _section(source.corpus, root, mapping, found, log)
        logs.append(log)
    write_manifest(manifest, utterances)
    write_json(
        report,
        {
            "corpora": sections,
            "kept": len(utterances),
            "dropped": sum(s["dropped"] for s in sections.values()),
            "per_corpus": {name: s["kept"] for name, s in sections.items()},
            "per_class": dict(sorted(Counter(u.label for u in utterances).items())),
            "hours": round(sum(u.duration for u in utterances) / 3600, 4),
        },
    )
    _summary(" + ".join(sorted(sources)), utterances, logs, t0, manifest)
    return utterances
