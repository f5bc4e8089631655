"""mger: multimodal (speech + text) emotion recognition pipeline.

The installed namespace is ``mger.*``; its sub-packages live in the repository's top-level
folders (``setup.cfg``'s ``package_dir``): see docs/architecture.md for the layers.
"""

import sys as _sys
from importlib.machinery import ModuleSpec as _ModuleSpec
from importlib.util import spec_from_file_location as _spec_from_file_location
from pathlib import Path as _Path

__version__ = "0.1.0"

# The six mapped sub-packages (setup.cfg's package_dir maps mger.<name> to the folder <name>;
# tests/test_namespace.py keeps the two equal).  Nothing else of a checkout is part of mger:
# ``mger.tests`` or ``mger.benchmarks`` do not import.
SUBPACKAGES = ("core", "corpus", "alignment", "features", "models", "pipeline")


class _CheckoutFinder:
    """A meta-path finder mapping ``mger.<name>`` to ``<checkout>/<name>`` for the names of
    :data:`SUBPACKAGES` only (deeper modules follow from the package's own ``__path__``)."""

    def __init__(self, checkout: _Path) -> None:
        self.checkout = checkout

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> _ModuleSpec | None:
        parent, _, name = fullname.partition(".")
        if parent != __name__ or name not in SUBPACKAGES:
            return None
        folder = self.checkout / name
        return _spec_from_file_location(fullname, folder / "__init__.py", submodule_search_locations=[str(folder)])


# In a source checkout (the editable install, or PYTHONPATH=<checkout>) the sub-packages are
# this checkout's top-level folders, whichever checkout an installed mger points at; in an
# installed wheel they sit in this folder and no finder is needed.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "setup.cfg").is_file() and (_checkout / "pipeline" / "cli.py").is_file():
    if not any(type(f).__name__ == "_CheckoutFinder" for f in _sys.meta_path):  # once, even on a reload
        _sys.meta_path.insert(0, _CheckoutFinder(_checkout))


def load_system(path, device: str = "auto"):
    """A system folder written by ``mger export`` (:func:`mger.models.system.load_system`).
    Imported on first use, by name: ``mger`` itself (imported by every layer for
    ``__version__``) draws no edge to ``mger.models`` in the layer graph."""
    import importlib

    return importlib.import_module("mger.models.system").load_system(path, device)
