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


_MAPPED = """
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.import_module(f"mger.{name}").__file__
    except ModuleNotFoundError as err:
        found[name] = None if err.name == f"mger.{name}" else str(err)
print(json.dumps(found))
"""


def test_the_namespace_resolves_the_six_mapped_packages_and_nothing_else(tmp_path: Path) -> None:
    """``mger.<name>`` is a mapped folder of this checkout; its other folders (tests, benchmarks,
    tools, docs, mger itself) are not part of the namespace."""
    import json

    import mger

    others = ["tests", "benchmarks", "tools", "docs", "params", "mger"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _MAPPED, *FOLDERS, *others],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(proc.stdout)
    assert {n: found[n] for n in FOLDERS} == {n: str(REPO / folder / "__init__.py") for n, folder in FOLDERS.items()}
    assert all((REPO / name).is_dir() for name in ("tests", "benchmarks", "tools", "docs"))  # they exist, unmapped
    assert {n: found[n] for n in others} == dict.fromkeys(others)
    assert set(mger.SUBPACKAGES) == set(FOLDERS)  # the finder's list is setup.cfg's (test above)


def test_the_import_graph_is_built_from_the_mapped_folders_without_links() -> None:
    """tools/lint_imports.py shows grimp each mapped folder at its place in the namespace: the
    graph holds one module per file of mger/ and the six folders, and their imports."""
    import importlib.util

    grimp = pytest.importorskip("grimp")
    from grimp.application.config import settings

    spec = importlib.util.spec_from_file_location("lint_imports", REPO / "tools" / "lint_imports.py")
    lint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lint)
    saved = {k: getattr(settings, k) for k in ("FILE_SYSTEM", "PACKAGE_FINDER")}
    try:
        lint.configure_grimp(lint.package_dirs(REPO / "setup.cfg"))
        graph = grimp.build_graph("mger", cache_dir=None)
    finally:
        settings.configure(**saved)
    files = [p for folder in ["mger", *FOLDERS.values()] for p in (REPO / folder).rglob("*.py")]
    parts = [p.relative_to(REPO).with_suffix("").parts for p in files]  # mger/x.py: mger.x; core/x.py: mger.core.x
    expected = {".".join(["mger", *(q[1:] if q[0] == "mger" else q)]).removesuffix(".__init__") for q in parts}
    assert len(expected) == len(files) > 60 and "mger.corpus.heldout" in expected
    assert graph.modules == expected
    assert graph.direct_import_exists(importer="mger.pipeline.cli", imported="mger.core.config")
    assert not graph.direct_import_exists(importer="mger.core.config", imported="mger.pipeline.cli")
