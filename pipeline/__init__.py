"""mger pipeline: CLI, config, corpus readers and DVC stage entry points."""

__version__ = "0.1.0"
