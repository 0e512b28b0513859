"""Shapley value sampling (Castro et al. 2009; Strumbelj & Kononenko 2010).

For each random order of the input elements, walk from the baseline to the input, switching one
element at a time; an element's value is the mean change of the probability at its switch. The
values of one walk add up to p(x) - p(baseline) exactly.
"""
import numpy as np

from heatkit.base.rules import Float, Int
from heatkit.methods._entry import ANY, SEED, Method, Needs, Paper, Setting, Settings


def attribute(model, image, target, params):
    rng = np.random.default_rng(params["seed"])
    orders = np.stack([rng.permutation(image.size) for _ in range(params["samples"])])
    walks = model.engine(image, target).walks(np.full(image.size, params["baseline"]), orders, "shapley")
    values = np.zeros(image.size)
    for order, probabilities in zip(orders, walks):
        values[order] += np.diff(probabilities)
    return (values / len(orders)).reshape(image.shape).sum(axis=-1).astype(np.float32)


SETTINGS = Settings("shapley", "shapley: Shapley value sampling (Castro et al. 2009; Strumbelj & Kononenko 2010): the "
                               "mean change of the probability when a pixel is switched from the baseline to the input, "
                               "over random orders of all pixels.", {
    "samples": Setting(25, Int(min=1), "random permutations (captum's ShapleyValueSampling default)"),
    "baseline": Setting(0.0, Float(), "the value a pixel has before it is switched to the input's"),
    "seed": Setting(0, SEED),
})
METHOD = Method("shapley", "Shapley Sampling", Paper(
    "Castro et al. 2009; Strumbelj & Kononenko 2010", "Polynomial calculation of the Shapley value based on sampling",
    "https://doi.org/10.1016/j.cor.2008.04.004"), Needs.PROBABILITIES, {ANY: attribute}, SETTINGS,
    cheaper="lower shapley.samples")
