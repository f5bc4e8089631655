"""The fault suite: what a hostile user or a failing machine does, and what mger must do then.

Each case is one fault (a full disk, a killed writer, a second writer, a damaged store, a bad
id or param) and asserts the promise it threatens: outputs complete or absent, never partial;
never a silent reuse; one clear line naming the file or key, exit code 1.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import reporting
from pipeline.reporting import atomic_path, save_figure_atomic, write_bytes_atomic, write_json, write_text_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


@pytest.mark.parametrize("writer", ["text", "json", "bytes"])
def test_full_disk_keeps_the_previous_file_and_no_temp(tmp_path: Path, writer: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.md"
    target.write_text("| old | table |\n")
    big = "| row | " + "x" * 200_000 + " |\n"
    write = {"text": lambda: write_text_atomic(target, big), "json": lambda: write_json(target, {"rows": big}),
             "bytes": lambda: write_bytes_atomic(target, big.encode())}[writer]
    with monkeypatch.context() as m:
        m.setattr(reporting.Path, "write_bytes", _failing_write_bytes(100))
        with pytest.raises(OSError) as info:
            write()
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "| old | table |\n"
    assert _leftovers(tmp_path) == []
    write()
    assert target.read_text().startswith(("| row |", '{\n  "rows"'))


def _failing_write_bytes(n_bytes: int):
    """A ``Path.write_bytes`` that writes ``n_bytes`` then fails as a full disk does."""
    def write_bytes(self: Path, data: bytes) -> int:
        with open(self, "wb") as fh:
            fh.write(data[:n_bytes])
            fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device", str(self))
    return write_bytes


def test_atomic_path_removes_temp_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer crashed"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_figure_is_written_whole(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure_atomic(fig, tmp_path / "f.png", dpi=50)
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and _leftovers(tmp_path) == []


def test_temp_of_a_killed_writer_is_cleaned_by_the_next_write(tmp_path: Path) -> None:
    """A writer SIGKILLed mid-write leaves only its hidden temp (the target is untouched); the
    next write of the same target removes it."""
    target = tmp_path / "results.md"
    code = ("import os, sys\nfrom pipeline.reporting import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half a ta')\n    os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env=os.environ | {"PYTHONPATH": _ROOT})
    assert proc.returncode == -9
    assert not target.exists() and len(_leftovers(tmp_path)) == 1
    write_text_atomic(target, "whole\n")
    assert target.read_text() == "whole\n" and _leftovers(tmp_path) == []


_ROOT = str(Path(__file__).resolve().parents[1])
