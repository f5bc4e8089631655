"""The ground layer: config schema, manifest, splits, audio, atomic IO and reporting, processes.

Imports nothing of the project's other layers (docs/architecture.md)."""
