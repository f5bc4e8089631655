"""Run import-linter (setup.cfg's [importlinter] contracts) on the mger.* namespace.

The sub-packages of mger live in the repository's top-level folders (setup.cfg's
``package_dir``), which the installed package maps but which grimp, import-linter's graph
builder, cannot see: it walks the folder of ``mger`` only, naming modules by their path under
it.  grimp reads the disk through a file-system port (``grimp.application.config.settings``),
so this gives it one that shows each mapped folder where the installed package puts it
(``<repo>/core`` as ``<repo>/mger/core``, nothing copied or linked) and a package finder that
names this checkout's ``mger`` folder, then runs ``lint-imports`` in this process.  Its
import scanner (Rust) takes only grimp's own file systems, so it gets the in-memory one
(``FakeBasicFileSystem``) holding the laid-out tree's sources.  These are grimp's internal
ports (grimp 3.x, as import-linter 2 installs it): tests/test_namespace.py checks that the graph
built this way holds one module per file of the mapped folders, and their imports.
Exit status: lint-imports'.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_dirs(setup_cfg: Path) -> dict[str, Path]:
    """``{dotted package: folder}`` from ``[options] package_dir``."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    pairs = (line.split("=", 1) for line in cfg["options"]["package_dir"].strip().splitlines())
    return {name.strip(): REPO / folder.strip() for name, folder in pairs}


class MappedPaths:
    """Paths as the installed package lays them out (``<mger>/core/x.py``) ↔ the checkout's
    (``<repo>/core/x.py``): ``dirs`` maps every package but ``mger`` to its folder."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.root = str(dirs["mger"])
        self.views = {os.path.join(self.root, *n.split(".")[1:]): str(d) for n, d in dirs.items() if n != "mger"}

    def real(self, path: str) -> str:
        for view, folder in self.views.items():
            if path == view or path.startswith(view + os.sep):
                return folder + path[len(view) :]
        return path

    def walk(self, top: str) -> Iterator[tuple[str, list[str], list[str]]]:
        """``os.walk`` of the laid-out tree (the caller may prune ``dirs`` as with ``os.walk``)."""
        children = [os.path.basename(v) for v in self.views if os.path.dirname(v) == top]
        for dirpath, dirs, files in os.walk(self.real(top)):
            view = top + dirpath[len(self.real(top)) :]
            if view == top:
                dirs += [c for c in children if c not in dirs]
                yield view, dirs, files
                for child in [c for c in children if c in dirs]:  # the mapped folders, not on disk here
                    dirs.remove(child)
                    yield from self.walk(os.path.join(top, child))
            else:
                yield view, dirs, files


def configure_grimp(dirs: dict[str, Path]) -> None:
    """Point grimp's file system and package finder at the mapped layout of this checkout."""
    import tokenize

    from grimp.adaptors.filesystem import FileSystem
    from grimp.application.config import settings

    paths = MappedPaths(dirs)

    class MappedFileSystem(FileSystem):
        def walk(self, directory_name: str) -> Iterator[tuple[str, list[str], list[str]]]:
            yield from paths.walk(directory_name)

        def read(self, file_name: str) -> str:
            with tokenize.open(paths.real(file_name)) as file:
                return file.read()

        def exists(self, file_name: str) -> bool:
            return os.path.isfile(paths.real(file_name))

        def get_mtime(self, file_name: str) -> float:
            return os.path.getmtime(paths.real(file_name))

        def convert_to_basic(self) -> object:
            """grimp's import scanner (Rust) reads the modules through its own in-memory file system:
            the laid-out tree's sources, read from the checkout."""
            from grimp import _rustgrimp

            sources = {
                os.path.join(dirpath, name): self.read(os.path.join(dirpath, name))
                for dirpath, _, files in paths.walk(paths.root)
                for name in files
                if name.endswith(".py")
            }
            return _rustgrimp.FakeBasicFileSystem(content_map=sources)

    class CheckoutPackageFinder:
        def determine_package_directories(self, package_name: str, file_system: object) -> set[str]:
            if package_name != "mger":
                raise ValueError(f"{package_name}: only the mger namespace is linted here")
            return {paths.root}

    settings.configure(FILE_SYSTEM=MappedFileSystem(), PACKAGE_FINDER=CheckoutPackageFinder())


def main() -> int:
    from importlinter.cli import lint_imports

    configure_grimp(package_dirs(REPO / "setup.cfg"))
    return lint_imports(config_filename=str(REPO / "setup.cfg"), no_cache=True)


if __name__ == "__main__":
    sys.exit(main())
