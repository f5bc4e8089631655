"""mger: multimodal (speech + text) emotion recognition pipeline.

The installed namespace is ``mger.*``; its sub-packages live in the repository's top-level
folders (``setup.cfg``'s ``package_dir``): see docs/architecture.md for the layers.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

# In a source checkout (the editable install, or PYTHONPATH=<checkout>) the sub-packages are
# this checkout's top-level folders, whichever checkout an installed mger points at; in an
# installed wheel they sit in this folder and this does nothing.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "setup.cfg").is_file() and (_checkout / "pipeline" / "cli.py").is_file():
    __path__.append(str(_checkout))


def load_system(path, device: str = "auto"):
    """A system folder written by ``mger export`` (:func:`mger.models.system.load_system`).
    Imported on first use, by name: ``mger`` itself (imported by every layer for
    ``__version__``) draws no edge to ``mger.models`` in the layer graph."""
    import importlib

    return importlib.import_module("mger.models.system").load_system(path, device)
