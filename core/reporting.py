"""Reports and the failure policy shared by every stage.

A problem with one item (an utterance, a file) becomes a :class:`Problem`: it is printed as
one line on stderr naming the file and the reason, and recorded in the stage's JSON report.
Nothing is skipped silently, and one bad item never stops a run.
"""

from __future__ import annotations

import csv
import errno
import glob
import io
import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from tqdm import tqdm


class StageError(RuntimeError):
    """A whole stage cannot go on (wrong root, nothing usable); printed as one line."""


@dataclass(frozen=True)
class Problem:
    """One problematic item: what it is, which file, why, and whether it was kept."""

    item: str
    file: str
    reason: str
    kept: bool = False

    def line(self) -> str:
        verdict = "kept" if self.kept else "dropped"
        return f"{self.file}: {self.reason} ({self.item}, {verdict})"


class ProblemLog:
    """Collects problems; prints each one line as it is recorded (``quiet`` turns that off)."""

    def __init__(self, quiet: bool = False) -> None:
        self.problems: list[Problem] = []
        self.quiet = quiet

    def add(self, item: str, file: str | Path, reason: str, kept: bool = False, echo: bool = True) -> None:
        """Record a problem; ``echo=False`` for routine drops (reported, not printed one by one)."""
        problem = Problem(item=item, file=str(file), reason=reason, kept=kept)
        self.problems.append(problem)
        if echo and not self.quiet:
            # tqdm.write: its own line even while a progress bar is drawn on stderr
            tqdm.write(f"warning: {problem.line()}", file=sys.stderr)

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.problems]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files of ``path`` left by writers that were killed (their pid is gone)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid = tmp.name[len(path.name) + 6 :].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path next to ``path`` to write the whole output to; when the block ends without an
    error it is synced and renamed onto ``path`` (``os.replace``: readers see the old file or
    the new one, never part of one); on any error (a full disk, a crash of the writer) the temp
    file is removed and ``path`` keeps its previous content.

    The temp name is ``.<name>.tmp-<pid><suffix>`` (hidden, same suffix, so writers that pick
    the format from the name, like ``savefig``, work); ones left by killed writers are deleted
    by the next write of ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and (err.filename == str(tmp) or (err.filename is None and write_errno(err))):
            err.filename = str(path)  # name the output the user asked for, not the temp file
        raise


_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}  # a write refused: the output's fault


def write_errno(err: OSError) -> int | None:
    """The errno of a refused write (disk full, over the file-size limit ``ulimit -f``, quota,
    read-only file system), also from libraries that only quote it (HDF5: ``errno = 27``); else None."""
    found = re.search(r"errno = (\d+)", str(err))
    code = err.errno if err.errno is not None else int(found.group(1)) if found else None
    return code if code in _WRITE_ERRNOS else None


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def save_figure_atomic(fig: Any, path: str | Path, **savefig_kw: Any) -> None:
    """``fig.savefig`` to ``path`` atomically (format from the suffix; see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kw)


def write_csv_atomic(path: str | Path, fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` under a header of ``fieldnames`` as CSV (``\n`` line ends), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Write one JSON object per line (dataclass rows as their fields), atomically: the old file
    stays whole if writing fails.  Returns the number of rows written."""
    n = 0
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
                n += 1
    return n


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (see :func:`atomic_path`)."""
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
