"""Shapley value sampling (Castro et al. 2009; Strumbelj & Kononenko 2010).

For each random order of the input elements, walk from the baseline to the input, switching one
element at a time; an element's value is the mean change of the probability at its switch. The
values of one walk add up to p(x) - p(baseline) exactly.
"""
import numpy as np


def attribute(model, image, target, params):
    rng = np.random.default_rng(params["seed"])
    orders = np.stack([rng.permutation(image.size) for _ in range(params["samples"])])
    walks = model.engine(image, target).walks(np.full(image.size, params["baseline"]), orders, "shapley")
    values = np.zeros(image.size)
    for order, probabilities in zip(orders, walks):
        values[order] += np.diff(probabilities)
    return (values / len(orders)).reshape(image.shape).sum(axis=-1).astype(np.float32)
