"""``mger cache ls``, ``mger cache verify`` and ``mger cache compare``.

``mger cache verify`` without a path checks the segment table (its times:
:func:`mger.alignment.table.table_problem`) and every store of these params: the stores of
``features.out`` (speech, text, each of ``features.extra_speech``), their alignment-free files
under ``features.audio_out`` (every manifest utterance) and the fine-tuned stores
of each fold that has them, each also against the current segment table and manifest
(:func:`mger.features.fingerprint.check_store_inputs`); one line per problem, exit 1 if any.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from mger.alignment.table import SegmentTable
from mger.core.config import Params
from mger.core.manifest import read_manifest
from mger.core.transcripts import TEXT_SOURCES, manifest_of_store, source_text_store
from mger.features.cache import CacheError, compare_stores, verify_store
from mger.features.fingerprint import check_store_inputs
from mger.features.store_paths import frozen_store_files


def cache_ls(folder: str | Path) -> list[Path]:
    """Print one line per store under ``folder``."""
    stores = sorted(Path(folder).glob("**/*.h5"))
    stores = [p for p in stores if ".parts" not in str(p)]
    if not stores:
        print(f"no feature stores under {folder}")
    for path in stores:
        try:
            with h5py.File(path, "r") as f:
                a = f.attrs
                levels = ", ".join(f"{lv} {f[lv]['data'].shape[0]}" for lv in f if lv != "utt_ids")
                print(
                    f"{path}  {a.get('kind', '?')}  model={a.get('model', '?')}  layer={a.get('layer', '?')}  "
                    f"utts={len(f['utt_ids'])}  rows: {levels}  {path.stat().st_size / 2**20:.1f} MiB  "
                    f"created {a.get('created', '?')}"
                )
        except (OSError, KeyError) as err:
            print(f"{path}  UNREADABLE ({err})")
    return stores


def cache_verify(
    path: str | Path,
    manifest: str | Path | None = None,
    segments: str | Path | None = None,
    inputs: tuple[str | Path, str | Path] | None = None,
) -> bool:
    """Print the verdict, one line per problem; True if the store (or segment table) is sound.

    With ``manifest``, every manifest utterance must be in the store, except (when the segment
    table ``segments`` exists) the ones alignment dropped: those are counted in a note.  With
    ``inputs`` (manifest, segment table), where both exist, the store must have been built from
    them (:func:`mger.features.fingerprint.check_store_inputs`)."""
    if _is_segment_table(path):
        return verify_table(path)
    expected = _expected_ids(manifest, segments) if manifest else None
    problems = verify_store(path, expected)
    if not problems and inputs and all(Path(p).is_file() for p in inputs):
        try:
            check_store_inputs(path, *inputs)
        except (CacheError, ValueError) as err:
            problems.append(str(err).removeprefix(f"{path}: "))
    if problems:
        for p in problems:
            print(f"{path}: {p}")
        print(f"{path}: CORRUPT or incomplete ({len(problems)} problems)")
        return False
    with h5py.File(path, "r") as f:
        fp = json.loads(f.attrs["fingerprint"])
        print(
            f"{path}: OK ({len(f['utt_ids'])} utterances, levels {', '.join(fp['levels'])}; "
            "checksums, offsets and values verified)"
        )
    return True


def _is_segment_table(path: str | Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "duration" in f and "words" in f
    except OSError:
        return False


def verify_table(path: str | Path) -> bool:
    """Print the segment table's verdict (offsets, times); True if sound."""
    try:
        table = SegmentTable.read(path)
    except (OSError, KeyError, ValueError) as err:
        print(str(err) if str(path) in str(err) else f"{path}: {err}")
        print(f"{path}: CORRUPT segment table")
        return False
    print(f"{path}: OK ({len(table.utt_ids)} utterances; offsets and times verified)")
    return True


def cache_verify_all(params: Params, manifest: str | Path | None = None, segments: str | Path | None = None) -> bool:
    """Verify the segment table and every store of ``params`` (see the module docstring); True if all are sound."""
    segments = Path(segments or f"{params.align.out}/segments.h5")
    manifest = Path(manifest or params.prepare.manifest)
    ok = verify_table(segments) if segments.is_file() else _missing(segments, "mger align")
    inputs = (manifest, segments) if ok and manifest.is_file() else None
    named = [source_text_store(params.features.out, source) for source in TEXT_SOURCES]  # text_source gold, asr
    frozen = frozen_store_files(params.features) + [p for p in named if p.is_file()]
    finetuned = sorted(
        p
        for name in params.finetune.variant_names  # every fine-tuning variant's folder (fold-k/<variant>/)
        for fold in params.finetune.folds
        for p in params.finetune.variant(name).features_dir(fold).glob("*.h5")
        if p.is_file()
    )
    for store in frozen + finetuned:
        free = store.parent == Path(params.features.audio_out)  # an alignment-free file: every utterance
        if not store.is_file():
            ok = _missing(store, "mger extract --audio" if free else "mger extract") and ok
            continue
        built_from = Path(manifest_of_store(store, manifest, params.transcribe.manifest))  # a named transcript's
        read = built_from if built_from.is_file() else None
        ok = cache_verify(store, read, None if free else segments, inputs and (built_from, segments)) and ok
    print(
        f"cache verify: {'all sound' if ok else 'PROBLEMS above'} ({segments}, {len(frozen)} stores of "
        f"{params.features.out} and {params.features.audio_out}, {len(finetuned)} fine-tuned stores)"
    )
    return ok


def _missing(path: Path, fix: str) -> bool:
    print(f"{path}: no such file; run `{fix}` (or `dvc repro`)")
    return False


def _expected_ids(manifest: str | Path, segments: str | Path | None) -> list[str]:
    ids = [u.utt_id for u in read_manifest(manifest)]
    if segments is None or not Path(segments).exists():
        return ids
    aligned = set(SegmentTable.read(segments).utt_ids)
    dropped = [u for u in ids if u not in aligned]
    if dropped:
        print(
            f"note: {len(dropped)} manifest utterances have no alignment in {segments} (e.g. {dropped[0]}); "
            "dropped by align, so not expected in the store"
        )
    return [u for u in ids if u in aligned]


def cache_compare(test: str | Path, ref: str | Path) -> dict[str, tuple[float, float]]:
    """Print, per level, how far ``test``'s rows are from ``ref``'s."""
    result = compare_stores(test, ref)
    print(f"{test} vs {ref}:")
    for level, (cos, dev) in result.items():
        print(f"  {level:<10s} worst row cosine {cos:.4f}, mean relative deviation {dev:.2%}")
    return result
