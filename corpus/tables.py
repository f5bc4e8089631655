"""Reading the label tables (CSV/TSV) of corpora: one decoder, one header check.

A table is decoded as UTF-8 (a byte-order mark dropped); a line that is not UTF-8 is decoded
as Windows-1252 and counted (MELD's CSVs hold such bytes), so reading never fails on an
encoding.  A table without one of the columns its reader needs is refused in one line
naming the file and the columns.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mger.core.reporting import StageError


@dataclass
class Table:
    """The rows of one table: ``rows[i]`` is (line number of the row's first line, column → value)."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]
    cp1252_lines: list[int] = field(default_factory=list)  # lines that were not UTF-8
    ragged_lines: list[int] = field(default_factory=list)  # rows with more or fewer fields than the header


def decode_lines(raw: bytes) -> tuple[str, list[int]]:
    """(text, 1-based numbers of the lines decoded as Windows-1252 because they are not UTF-8)."""
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    out, fallback = [], []
    for lineno, line in enumerate(raw.splitlines(keepends=True), 1):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(line.decode("cp1252", errors="replace"))
            fallback.append(lineno)
    return "".join(out), fallback


def sniff_delimiter(path: Path, text: str) -> str:
    """Tab for ``.tsv``/``.tab``; else the delimiter csv.Sniffer finds among , ; tab | in the
    header line, comma when it finds none."""
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    header = text.split("\n", 1)[0]
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_table(path: Path, required: Sequence[str], what: str, delimiter: str | None = None) -> Table:
    """Read ``path`` (``what`` names it in errors: "MELD label table"); StageError in one line
    when it is not a file, has no header, or lacks a ``required`` column."""
    if not path.is_file():
        raise StageError(f"{path}: {what} missing or not a file")
    text, fallback = decode_lines(path.read_bytes())
    if not text.strip():
        raise StageError(f"{path}: {what} is empty (no header line)")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter or sniff_delimiter(path, text))
    columns = [c.strip() for c in next(reader)]
    missing = [c for c in required if c not in columns]
    if missing:
        raise StageError(f"{path}: {what} lacks column(s) {', '.join(missing)} (header: {', '.join(columns)})")
    rows, ragged = [], []
    lineno = reader.line_num + 1
    for values in reader:
        if any(v.strip() for v in values):
            if len(values) != len(columns):
                ragged.append(lineno)
            padded = values + [""] * (len(columns) - len(values))
            rows.append((lineno, {c: v.strip() for c, v in zip(columns, padded)}))
        lineno = reader.line_num + 1
    return Table(path, columns, rows, fallback, ragged)
