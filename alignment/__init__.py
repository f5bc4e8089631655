"""Forced alignment of transcripts to words, syllables and phones."""
