"""``mger cache ls``, ``mger cache verify`` and ``mger cache compare``."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from mger.alignment.table import SegmentTable
from mger.core.manifest import read_manifest
from mger.features.cache import compare_stores, verify_store


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


def cache_verify(path: str | Path, manifest: str | Path | None = None, segments: str | Path | None = None) -> bool:
    """Print the verdict, one line per problem; True if the store is sound.

    With ``manifest``, every manifest utterance must be in the store, except (when the segment
    table ``segments`` exists) the ones alignment dropped: those are counted in a note."""
    expected = _expected_ids(manifest, segments) if manifest else None
    problems = verify_store(path, expected)
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
