"""Shapley value sampling (Castro et al. 2009; Strumbelj & Kononenko 2010).

For each random order of the features, walk from the baseline to the input, switching one
feature at a time; a feature's value is the mean change of the probability at its switch, and
each of its pixels shows it (as captum's ShapleyValueSampling with a feature mask). The values of
one walk add up to p(x) - p(baseline) exactly. The features are given by `mask`: each pixel with
its channels, N x N squares, or superpixels.
"""
import numpy as np

from heatkit.base.rules import Int, Mask, PixelValue
from heatkit.methods import _regions
from heatkit.methods._entry import ANY, SEED, Method, Needs, Paper, Setting, Settings


def attribute(model, image, target, params):
    labels = _regions.labels(image, params["mask"])
    features = labels.max() + 1
    orders = permutations(features, params)
    # a pixel of one channel is an input of its own: the engine's per-input walks, which the windowed path takes
    groups = None if features == image.size else np.repeat(labels.reshape(-1), image.shape[-1])
    walks = model.engine(image, target).walks(np.full_like(image, params["baseline"]), orders, "shapley",
                                              groups=groups)
    values = np.zeros(features)
    for order, probabilities in zip(orders, walks):
        values[order] += np.diff(probabilities)
    return (values / len(orders))[labels].astype(np.float32)


def permutations(features: int, params: dict) -> np.ndarray:
    """The seeded random orders of the features, (samples, features)."""
    rng = np.random.default_rng(params["seed"])
    return np.stack([rng.permutation(features) for _ in range(params["samples"])])


SETTINGS = Settings("shapley", "shapley: Shapley value sampling (Castro et al. 2009; Strumbelj & Kononenko 2010): the "
                               "mean change of the probability when a feature is switched from the baseline to the "
                               "input, over random orders of all features.", {
    "samples": Setting(25, Int(min=1), "random permutations (captum's ShapleyValueSampling default)"),
    "baseline": Setting(0.0, PixelValue(), 'a pixel before it is switched to the input\'s: 0 black, 1 white, "mean"'),
    "mask": Setting("pixels", Mask(), 'the features: "pixels" (each with its channels), "patch:N" (a grid of N x N '
                                      'squares) or "superpixels" (SLIC)'),
    "seed": Setting(0, SEED),
})


def passes(model, params) -> int | None:
    features = _regions.count(model.input_shape, params["mask"])
    return None if features is None else params["samples"] * (features + 1)


METHOD = Method("shapley", "Shapley Sampling", Paper(
    "Castro et al. 2009; Strumbelj & Kononenko 2010", "Polynomial calculation of the Shapley value based on sampling",
    "https://doi.org/10.1016/j.cor.2008.04.004"), Needs.PROBABILITIES, {ANY: attribute}, SETTINGS,
    cheaper="lower shapley.samples, or give shapley.mask patches", passes=passes)
