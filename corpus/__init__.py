"""The corpus layer: the IEMOCAP reader, the synthetic corpus and eSpeak NG (shared with G2P).

Builds on :mod:`mger.core` only (docs/architecture.md)."""
