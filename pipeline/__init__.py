"""mger pipeline: CLI, config, corpus readers and DVC stage entry points."""
