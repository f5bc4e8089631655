"""Reports and the failure policy shared by every stage.

A problem with one item (an utterance, a file) becomes a :class:`Problem`: it is printed as
one line on stderr naming the file and the reason, and recorded in the stage's JSON report.
Nothing is skipped silently, and one bad item never stops a run.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


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
            print(f"warning: {problem.line()}", file=sys.stderr)

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.problems]


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (tmp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
