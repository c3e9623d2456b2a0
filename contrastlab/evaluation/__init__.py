"""Representation quality: kNN, probes and embedding statistics. Returns numbers; callers log them."""
