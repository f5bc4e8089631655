"""The installed namespace: only ``mger`` lands on the path; the layers import only downwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {
    "pipeline": "pipeline",
    "alignment": "alignment",
    "features": "features",
    "models": "models",
    "core": "core",
    "corpus": "corpus",
}

_PROBE = """
import importlib.util, json, sys
try:
    import mger
except ImportError:
    print(json.dumps(None)); sys.exit(0)
import mger.pipeline.cli, mger.core.config, mger.corpus.synth, mger.models.finetune_stage
print(json.dumps({"bare": {n: importlib.util.find_spec(n) is not None for n in sys.argv[1:]},
                  "cli": mger.pipeline.cli.__file__, "version": mger.__version__}))
"""


def test_only_mger_is_on_the_path_outside_the_repo(tmp_path: Path) -> None:
    import json

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *FOLDERS], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(proc.stdout)
    if found is None:
        pytest.skip("mger is not installed in this interpreter (pip install -e .)")
    assert found["bare"] == dict.fromkeys(FOLDERS, False)  # no top-level pipeline, models, ... of ours
    assert Path(found["cli"]).resolve() == REPO / "pipeline" / "cli.py", "the installed mger is another checkout"


def test_package_dir_maps_every_layer_to_its_folder() -> None:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    mapping = dict(line.replace(" ", "").split("=") for line in cfg["options"]["package_dir"].strip().splitlines())
    assert mapping == {"mger": "mger"} | {f"mger.{name}": folder for name, folder in FOLDERS.items()}
    assert cfg["options"]["packages"].split() == list(mapping)
