"""Benchmark tables written into the docs by the scripts that measure them (never by hand).

Each script owns one block of ``docs/benchmarks.md`` between ``<!-- <name> -->`` and
``<!-- /<name> -->``; ``--markdown FILE`` replaces that block (or appends it, markers included).
"""

from __future__ import annotations

from pathlib import Path


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
