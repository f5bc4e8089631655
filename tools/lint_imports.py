"""Run import-linter (setup.cfg's [importlinter] contracts) on the mger.* namespace.

The sub-packages of mger live in the repository's top-level folders (setup.cfg's
``package_dir``), which the installed package maps but which grimp, import-linter's graph
builder, cannot see: it walks the folder of ``mger`` only.  This builds that folder as the
installed package sees it, with symbolic links, in a scratch directory, and runs
``lint-imports`` from there.  Exit status: lint-imports'.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_dirs(setup_cfg: Path) -> dict[str, Path]:
    """``{dotted package: folder}`` from ``[options] package_dir``."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    pairs = (line.split("=", 1) for line in cfg["options"]["package_dir"].strip().splitlines())
    return {name.strip(): REPO / folder.strip() for name, folder in pairs}


def main() -> int:
    dirs = package_dirs(REPO / "setup.cfg")
    with tempfile.TemporaryDirectory(prefix="mger-lint-") as tmp:
        root = Path(tmp, "mger")
        root.mkdir()
        for f in dirs.pop("mger").glob("*.py"):
            (root / f.name).symlink_to(f)
        for name, folder in dirs.items():
            Path(tmp, *name.split(".")).symlink_to(folder, target_is_directory=True)
        exe = shutil.which("lint-imports", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        env = os.environ | {"PYTHONPATH": tmp}
        return subprocess.run([exe or "lint-imports", str(REPO / "setup.cfg")], cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
