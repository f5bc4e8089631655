"""Byte-identity check for refactors of mger.models: trains every model kind on the small
synthetic stores of tests/test_report.py and writes the report, then copies the metrics,
predictions, epochs and the report's text/metrics to OUT.  Run it on the base commit and
after a change, then ``diff -r`` the two folders (provenance paths differ only by OUT).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/golden_models.py OUT
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mger.models.experiment import run_experiment  # noqa: E402
from mger.models.report import write_report  # noqa: E402
from tests.test_report import EXPERIMENTS, _corpus, _params  # noqa: E402

EXTRA = {
    "late_mean": {"model": "late", "speech_levels": ["word"], "late_weights": "mean"},
    "coatt": {"model": "coattention", "speech_levels": ["phone", "word"]},
    "combined": {"model": "combined", "speech_levels": ["word"]},
    "mha_enc_other": {
        "model": "mha_aux",
        "speech_levels": ["word"],
        "aux_matching": 0.5,
        "aux_unimodal": 0.5,
        "aux_unimodal_on": "encoder",
        "aux_matching_negatives": "other_label",
    },
}


def main(out: Path) -> None:
    root = out / "work"
    shutil.rmtree(out, ignore_errors=True)
    root.mkdir(parents=True)
    manifest, features = _corpus(root)
    params = _params(root, manifest, features, EXPERIMENTS | EXTRA)
    for name, spec in params.train.experiments.items():
        run_experiment(name, spec, params.train, params.features, manifest, split=params.split)
    write_report(params)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
