"""Benchmark tables written into the docs by the scripts that measure them (never by hand).

Each script owns one block of ``docs/benchmarks.md`` between ``<!-- <name> -->`` and
``<!-- /<name> -->``. Run with ``--markdown FILE``, a script's ``main`` runs as usual and what it
printed replaces its block in FILE, headed by the command, the date and the machine
(:func:`run_recorded`).
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


def write_block(path: Path, name: str, body: str) -> None:
    """Replace ``name``'s block in ``path`` with ``body`` (append it if the file lacks one)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "") + block + "\n"
    path.write_text(text, encoding="utf-8")


def cores() -> int:
    """Cores this process may run on (``taskset`` respected)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine() -> str:
    """``<n> core(s) of <CPU model>``, for the header of a table."""
    name = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        name = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            name,
        )
    return f"{cores()} core(s) of {name}"


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def run_recorded(name: str, main: Callable[[], None], fenced: bool = True) -> None:
    """Run ``main``; with ``--markdown FILE`` among the arguments (taken out before ``main``
    parses them), also write what it printed into FILE's ``name`` block: a fenced block headed
    by the command line, the date and the machine, or (``fenced=False``) the printed markdown as is."""
    args = sys.argv[1:]
    target = None
    if "--markdown" in args:
        i = args.index("--markdown")
        if i + 1 >= len(args):
            sys.exit("--markdown needs a FILE")
        target, sys.argv[1:] = Path(args[i + 1]), args[:i] + args[i + 2 :]
    printed = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, printed)):
        main()
    if target is None:
        return
    body = printed.getvalue()
    if fenced:
        command = " ".join(["python -m benchmarks." + name, *sys.argv[1:]])
        body = f"`{command}` on {time.strftime('%Y-%m-%d')}, {machine()}:\n\n```\n{body.rstrip()}\n```"
    write_block(target, name, body)
    print(f"{name}: table written into {target}", file=sys.stderr)
