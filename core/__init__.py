"""Framework-free core of the heatmap toolkit: settings, model wrapper, images, scores, figure, runs."""
