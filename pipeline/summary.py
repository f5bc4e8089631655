"""``mger summary``: the closing lines of ``make demo``, read from the stage reports."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import Params


def print_summary(params: Params) -> None:
    report = Path(params.prepare.report)
    if not report.is_file():
        print(f"no data-quality report at {report}: run `dvc repro` first")
        return
    quality = json.loads(report.read_text(encoding="utf-8"))
    classes = ", ".join(f"{k} {v}" for k, v in quality["per_class"].items())
    sessions = ", ".join(f"{k}: {v}" for k, v in quality["per_session"].items())
    print(f"corpus {quality['root']}: {quality['kept']} utterances kept ({classes}); "
          f"{quality['dropped']} dropped; per session {sessions}")
