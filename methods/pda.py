"""Prediction Difference Analysis (Zintgraf et al. 2017).

A window of the input is replaced by values drawn from a prior, and the window's relevance is
log2-odds(p'(c | x)) - log2-odds(mean over the draws of p'(c | x, window replaced)), with the
Laplace correction p' = (p N + 1) / (N + K). A pixel's relevance is the mean over the windows
that hold it (windows of pda.window x pda.window pixels, at every position).

The prior (pda.prior):
- "uniform": uniform 8-bit gray levels. With windows of one pixel this is exact: each input
  element is set to each of pda.levels evenly spaced levels in turn, and a pixel's relevance is
  the sum over its channels (the center-pixel models' classes are these levels). Larger windows
  take pda.samples draws of independent levels.
- "image": pda.samples windows copied from random positions of the image itself, its own marginal.
- a folder of images: the same window of pda.samples random images from it, resized to the
  model's input, as Zintgraf et al. sample from a dataset's marginal.
Draws are seeded by pda.seed and put through the model's preprocessing.
"""
from pathlib import Path

import numpy as np

from heatkit.base.images import image_files, load_image
from heatkit.base.rules import ChoiceOrFolder, Int
from heatkit.methods import _sliding
from heatkit.methods._entry import ANY, SEED, Method, Needs, Paper, Setting, Settings

CHUNK_BYTES = 64 << 20  # the edited values of one chunk of windows


def attribute(model, image, target, params):
    engine = model.engine(image, target, output="probability")  # its weights of evidence are odds of probabilities
    train, classes = params["train_samples"], model.num_classes

    def log_odds(p):
        p = (p * train + 1) / (train + classes)
        return np.log2(p / (1 - p))

    before = log_odds(engine.probability())
    if params["window"] == 1 and params["prior"] == "uniform":
        relevance = (before - log_odds(_exact_uniform(model, engine, image, params["levels"]))).sum(axis=-1)
    else:
        window = params["window"]
        rows, cols = _sliding.starts(image.shape[0], window, 1), _sliding.starts(image.shape[1], window, 1)
        marginal = _sampled(model, engine, image, params, _sliding.inputs(rows, cols, window, image.shape))
        relevance = _sliding.spread((before - log_odds(marginal)).reshape(rows.size, cols.size), rows, cols, window,
                                    image.shape[:2])
    return relevance.astype(np.float32)


def _exact_uniform(model, engine, image, levels: int) -> np.ndarray:
    """(H, W, C): each input element's mean probability over it set to every level."""
    gray = np.linspace(0, 255, levels).round() / 255.0
    in_model_scale = model.preprocess(np.repeat(gray[:, None], image.shape[-1], axis=1)).T
    return engine.pixel_levels(in_model_scale, "pda").mean(axis=1).reshape(image.shape)


def _sampled(model, engine, image, params, inputs) -> np.ndarray:
    """The mean probability over the draws of each window (the inputs of each row) replaced."""
    samples = params["samples"]
    draws = _draws(model, image, params, inputs)  # (samples, inputs) or (samples, windows, inputs)
    per_chunk = max(1, CHUNK_BYTES // (8 * samples * inputs.shape[1]))
    means = np.empty(len(inputs))
    for start in range(0, len(inputs), per_chunk):
        chunk = inputs[start:start + per_chunk]
        values = draws[:, start:start + per_chunk] if draws.ndim == 3 else np.broadcast_to(
            draws[:, None], (samples, len(chunk), inputs.shape[1]))
        edited = engine.edits(np.tile(chunk, (samples, 1)), values.reshape(-1, inputs.shape[1]), "pda")
        means[start:start + len(chunk)] = edited.reshape(samples, len(chunk)).mean(axis=0)
    return means


def _draws(model, image, params, inputs):
    rng = np.random.default_rng(params["seed"])
    window, samples = params["window"], params["samples"]
    height, width, channels = image.shape
    if params["prior"] == "uniform":
        return model.preprocess(rng.integers(0, 256, (samples, window, window, channels)) / 255.0).reshape(samples, -1)
    if params["prior"] == "image":
        corners = np.stack([rng.integers(0, height - window + 1, samples), rng.integers(0, width - window + 1, samples)])
        return np.stack([image[r:r + window, c:c + window].reshape(-1) for r, c in corners.T])
    folder = [load_image(path, image.shape) for path in image_files([Path(params["prior"])])]
    chosen = np.stack([model.preprocess(folder[i]).reshape(-1) for i in rng.integers(0, len(folder), samples)])
    return chosen[:, inputs]  # each image's own values at every window


SETTINGS = Settings("pda", "pda: Prediction Difference Analysis (Zintgraf et al. 2017). A window of the input is "
                           "replaced by draws from a prior; relevance = log2-odds(p'(c | x)) - log2-odds(mean over draws "
                           "of p'(c | x with the window replaced)), with the Laplace correction p' = (p * N + 1) / (N + K); "
                           "a pixel gets the mean over the windows that hold it. Zintgraf et al. use windows of several "
                           "pixels and the data's marginal (a folder of images here); the default, single pixels and a "
                           "uniform prior over the 8-bit levels, is exact on the center-pixel models, whose classes are "
                           "those levels.", {
    "train_samples": Setting(256_000, Int(min=1), "N of the Laplace correction"),
    "levels": Setting(256, Int(min=2, max=256), "uniform prior, window 1: gray values tried at each input element "
                                                "(256: every 8-bit value)"),
    "window": Setting(1, Int(min=1), "side of the square window, in pixels"),
    "prior": Setting("uniform", ChoiceOrFolder(("uniform", "image")),
                     '"uniform" (8-bit levels), "image" (windows from random positions of the image itself), or a folder '
                     "of images (the same window from random images in it)"),
    "samples": Setting(10, Int(min=1), "draws per window, except for the uniform prior with window 1, which tries "
                                       "every level"),
    "seed": Setting(0, SEED, "seed of the draws"),
})


def passes(model, params) -> int:
    height, width, channels = model.input_shape
    if params["window"] == 1 and params["prior"] == "uniform":
        return height * width * channels * params["levels"]
    window = params["window"]
    return (height - window + 1) * (width - window + 1) * params["samples"]


METHOD = Method("pda", "PDA", Paper(
    "Zintgraf et al. 2017", "Visualizing Deep Neural Network Decisions: Prediction Difference Analysis",
    "https://arxiv.org/abs/1702.04595"), Needs.PROBABILITIES, {ANY: attribute}, SETTINGS,
    cheaper="lower pda.levels (window 1) or pda.samples, or raise pda.window", passes=passes)
