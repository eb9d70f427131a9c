"""Serving pipeline: admission -> decode -> preprocess -> encode -> score -> respond."""
