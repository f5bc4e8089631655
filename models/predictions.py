"""Per-utterance test predictions of one experiment: ``reports/predictions/<exp>.csv``.

One row per test utterance, fold and training seed: ``utt_id, fold, seed, label, pred`` and
one probability column per class (``p_<class>``).  Labels and predictions are class names.
Every statistic of the results table (:mod:`mger.models.stats`) is computed from these rows, so
anyone can recompute, re-test or re-plot a result from the CSV alone.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mger.core.reporting import write_text_atomic


@dataclass
class Predictions:
    """Rows in (seed, fold, utterance) order; ``label``/``pred`` index ``classes``."""

    classes: list[str]
    utt_ids: np.ndarray  # (N,) str
    fold: np.ndarray  # (N,) int
    seed: np.ndarray  # (N,) int
    label: np.ndarray  # (N,) int
    pred: np.ndarray  # (N,) int
    probs: np.ndarray  # (N, C) float

    def __len__(self) -> int:
        return len(self.utt_ids)

    @classmethod
    def concat(cls, classes: list[str], parts: list["Predictions"]) -> "Predictions":
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return cls(classes, np.zeros(0, dtype=str), empty, empty, empty, empty, np.zeros((0, len(classes))))
        return cls(
            classes,
            *(
                np.concatenate([getattr(p, name) for p in parts])
                for name in ("utt_ids", "fold", "seed", "label", "pred", "probs")
            ),
        )

    def where(self, keep: np.ndarray) -> "Predictions":
        """The rows where the boolean mask ``keep`` holds."""
        return Predictions(
            self.classes,
            self.utt_ids[keep],
            self.fold[keep],
            self.seed[keep],
            self.label[keep],
            self.pred[keep],
            self.probs[keep],
        )

    def key(self) -> list[tuple[str, int, int]]:
        """(utterance, fold, seed) of every row: two experiments are paired row by row on it."""
        return list(zip(self.utt_ids.tolist(), self.fold.tolist(), self.seed.tolist()))


def write_predictions(path: str | Path, p: Predictions) -> None:
    """The CSV, written atomically; probabilities with 6 decimals."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["utt_id", "fold", "seed", "label", "pred", *(f"p_{c}" for c in p.classes)])
    for i in range(len(p)):
        writer.writerow(
            [
                p.utt_ids[i],
                int(p.fold[i]),
                int(p.seed[i]),
                p.classes[p.label[i]],
                p.classes[p.pred[i]],
                *(f"{x:.6f}" for x in p.probs[i]),
            ]
        )
    write_text_atomic(path, buf.getvalue())


def read_predictions(path: str | Path) -> Predictions:
    """Read a CSV written by :func:`write_predictions`; a malformed file raises ValueError naming it."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0][:5] != ["utt_id", "fold", "seed", "label", "pred"]:
        raise ValueError(f"{path}: not an mger predictions file (header {rows[0][:5] if rows else 'missing'})")
    classes = [c[2:] for c in rows[0][5:]]
    body = rows[1:]
    if any(len(r) != 5 + len(classes) for r in body):
        raise ValueError(f"{path}: a row has the wrong number of columns")
    try:
        return Predictions(
            classes,
            np.array([r[0] for r in body], dtype=str),
            np.array([int(r[1]) for r in body], dtype=np.int64),
            np.array([int(r[2]) for r in body], dtype=np.int64),
            np.array([classes.index(r[3]) for r in body], dtype=np.int64),
            np.array([classes.index(r[4]) for r in body], dtype=np.int64),
            np.array([[float(x) for x in r[5:]] for r in body]).reshape(len(body), len(classes)),
        )
    except ValueError as err:
        raise ValueError(f"{path}: unreadable row ({err})") from None
