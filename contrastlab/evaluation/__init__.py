"""Offline evaluation of a trained encoder: protocols (kNN grid, linear probe, SVM, fine-tuning, AUROC) registered
by name, feature extraction and its cache, raw-data baselines and pictures. The metrics are in contrastlab.metrics;
results are numbers, and callers log them."""
