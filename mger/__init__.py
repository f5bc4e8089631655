"""mger: multimodal (speech + text) emotion recognition pipeline.

The installed namespace is ``mger.*``; its sub-packages live in the repository's top-level
folders (``setup.cfg``'s ``package_dir``): see docs/architecture.md for the layers.
"""

__version__ = "0.1.0"
