"""A run: settings, the methods on each image, scores, figures, files written, experiments."""
