"""Fusion classifiers trained on cached features."""
