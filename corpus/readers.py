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
from dataclasses import dataclass, field
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
    by_class = Counter(u.label for u in utterances)
    dropped = sum(not p.kept for p in log.problems)
    write_json(
        report,
        {
            "corpus": corpus,
            "root": portable_path(root),
            "class_map": mapping,
            "kept": len(utterances),
            "dropped": dropped,
            "per_class": dict(sorted(by_class.items())),
            "per_raw_label_kept": dict(sorted(Counter(u.label_raw for u in utterances).items())),
            "per_group": dict(sorted(Counter(u.group for u in utterances).items())),
            "per_partition": dict(sorted(Counter(u.partition for u in utterances).items())),
            "per_speaker": dict(sorted(Counter(u.speaker for u in utterances).items())),
            "per_text_source": dict(sorted(Counter(u.text_source for u in utterances).items())),
            "hours": round(sum(u.duration for u in utterances) / 3600, 4),
            "problems": log.as_json(),
            **found.details,
        },
    )
    counts = ", ".join(f"{k} {v}" for k, v in sorted(by_class.items()))
    print(
        f"prepare {corpus}: kept {len(utterances)} utterances ({counts}); dropped {dropped}, "
        f"{sum(p.kept for p in log.problems)} kept with a warning; {time.perf_counter() - t0:.1f}s → {manifest}"
    )
    return utterances
