"""The store's lock / parts / merge protocol.

A store is built in parts of ``features.shard_size`` utterances, each committed atomically as
``<store>.parts/part-NNNNN.h5``; ``<store>.parts/fingerprint.json`` says which settings the
parts are of.  Store state is only read or changed under the store's lock
(:class:`mger.features.cache.StoreLock`): a whole run holds it exclusively; a shard run
(``--shard i/N``) sets the parts folder up exclusively, then holds it shared while adding
parts (other shard runs of the same settings may join, nothing else), and the run that finds
every part present merges them under the exclusive lock (:func:`merge_parts`)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from mger.core.manifest import Utterance
from mger.core.reporting import write_text_atomic
from mger.features.cache import CacheError, StoreLock, fingerprint_diff, merge_stores, read_fingerprint, verify_store

SETUP_WAIT_S = 60.0  # how long a shard run waits out another run's exclusive set-up or merge


def parts_dir(store: Path) -> Path:
    """The folder of ``store``'s parts."""
    return Path(f"{store}.parts")


def part_paths(store: Path, n_parts: int) -> list[Path]:
    """The files of ``store``'s ``n_parts`` parts, in order."""
    return [parts_dir(store) / f"part-{p:05d}.h5" for p in range(n_parts)]


def split_parts(utts: Sequence[Utterance], size: int) -> list[list[Utterance]]:
    """``utts`` in consecutive parts of ``size`` (one empty part for no utterance)."""
    return [list(utts[s : s + size]) for s in range(0, len(utts), size)] or [[]]


def claim(
    kind: str, store: Path, fp: dict, no_rebuild: bool, shard: tuple[int, int] | None, n_utts: int
) -> StoreLock | None:
    """Lock ``store`` and make its parts folder hold parts of ``fp`` only; None (lock released)
    when the store is up to date.  A whole run keeps the exclusive lock and is refused at once
    if another run holds it; a shard run sets up exclusively, then holds the lock shared (other
    shard runs of the same settings may join, nothing else), waiting up to
    :data:`SETUP_WAIT_S` for another run's set-up or merge."""
    lock = StoreLock(store)
    deadline = time.monotonic() + (SETUP_WAIT_S if shard is not None else 0.0)
    while True:
        if lock.acquire():
            if _set_up(kind, store, fp, no_rebuild, n_utts, lock):
                return None
            if shard is None:
                return lock
            lock.release()
        elif shard is None:
            raise lock.busy()
        if lock.acquire(shared=True):
            problem = _parts_problem(store, fp)
            if problem is None:
                return lock
            lock.release()
            if not lock.acquire():  # shard runs of other settings hold the store
                raise CacheError(
                    f"{store}: other shard runs are computing {problem}; wait for them to "
                    "finish, or stop them, before extracting with these settings"
                )
            lock.release()  # nobody holds it any more: set it up again
            if time.monotonic() >= deadline:
                raise lock.busy()
        elif time.monotonic() >= deadline:
            raise lock.busy()
        else:
            time.sleep(0.2)


def _set_up(kind: str, store: Path, fp: dict, no_rebuild: bool, n_utts: int, lock: StoreLock) -> bool:
    """Under the exclusive ``lock``: True (lock released) if the store is up to date, else the
    parts folder is made ready for ``fp``."""
    try:
        if _up_to_date(kind, store, fp, no_rebuild, n_utts):
            if parts_dir(store).exists() and _parts_problem(store, fp) is None:
                shutil.rmtree(parts_dir(store))  # left by a run killed after its merge
            lock.release()
            return True
        _reset_parts(store, fp)
        return False
    except BaseException:
        lock.release()
        raise


def _up_to_date(kind: str, store: Path, fp: dict, no_rebuild: bool, n_utts: int) -> bool:
    """True if ``store`` was built from ``fp`` and verifies sound; else says why it is rebuilt
    (or raises, with ``no_rebuild``)."""
    if not store.exists():
        return False
    old = read_fingerprint(store)
    if old == fp:
        t0 = time.perf_counter()
        problems = verify_store(store)
        if not problems:
            print(
                f"extract {kind}: {store} is up to date ({n_utts} utterances; verified in "
                f"{time.perf_counter() - t0:.1f}s)"
            )
            return True
        diff = [
            f"the store fails verification: {problems[0]}"
            + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
        ]
    else:
        diff = fingerprint_diff(old, fp) if old else ["no readable fingerprint"]
    if no_rebuild:
        raise CacheError(
            f"{store} was built from something else or is damaged ({'; '.join(diff)}); "
            "rerun without --no-rebuild to rebuild it"
        )
    print(f"extract {kind}: rebuilding {store} ({'; '.join(diff)})", file=sys.stderr)
    return False


def _parts_problem(store: Path, fp: dict) -> str | None:
    """Why the parts folder is not parts of ``fp`` (None: it is)."""
    fp_file = parts_dir(store) / "fingerprint.json"
    try:
        old = json.loads(fp_file.read_text())
    except (OSError, ValueError):
        return "parts without a readable fingerprint.json"
    return None if old == fp else f"parts of other settings ({'; '.join(fingerprint_diff(old, fp))})"


def _reset_parts(store: Path, fp: dict) -> None:
    """Under the exclusive lock: drop parts of other settings; record ``fp`` for the parts."""
    folder = parts_dir(store)
    if folder.exists() and _parts_problem(store, fp):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "fingerprint.json", json.dumps(fp, sort_keys=True))


def lock_for_merge(kind: str, store: Path, fp: dict, n_parts: int, shard: tuple[int, int]) -> StoreLock | None:
    """After a shard run: the exclusive lock if every part of ``fp`` is present to merge, else
    None with a line saying what is left."""
    paths = part_paths(store, n_parts)
    present = sum(p.exists() for p in paths)
    lock = StoreLock(store)
    if present == n_parts and lock.acquire():
        if _parts_problem(store, fp) is None and all(p.exists() for p in paths):
            return lock
        lock.release()
    left = "another run holds the store now" if present == n_parts else "run the remaining shards"
    print(
        f"extract {kind}: shard {shard[0]}/{shard[1]} done; {present} of {n_parts} parts present — "
        f"{left}, then `mger extract` merges"
    )
    return None


def merge_parts(store: Path, n_parts: int, attrs: dict) -> None:
    """Under the exclusive lock: the parts merged into ``store`` (atomic), then the parts folder removed."""
    merge_stores(part_paths(store, n_parts), store, attrs)
    shutil.rmtree(parts_dir(store))
