"""Prediction Difference Analysis (Zintgraf et al. 2017) with marginal sampling over gray levels.

relevance_i = log2-odds(p'(c | x)) - log2-odds(mean over v of p'(c | x, x_i = v)), with the
Laplace correction p' = (p N + 1) / (N + K). Each input element is set to the levels in turn
(8-bit levels, put through the model's preprocessing); a pixel's relevance is the sum over its
channels.
"""
import numpy as np


def attribute(model, image, target, params):
    engine = model.engine(image, target)
    gray = np.linspace(0, 255, params["levels"]).round() / 255.0
    levels = model.preprocess(np.repeat(gray[:, None], image.shape[-1], axis=1)).T  # in the model's input scale
    changed = engine.pixel_levels(levels, "pda").mean(axis=1)
    train, classes = params["train_samples"], model.num_classes

    def log_odds(p):
        p = (p * train + 1) / (train + classes)
        return np.log2(p / (1 - p))

    relevance = log_odds(engine.probability()) - log_odds(changed)
    return relevance.reshape(image.shape).sum(axis=-1).astype(np.float32)
