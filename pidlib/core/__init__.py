"""Lowest layer: the repository root, the on-disk cache and provenance records."""
