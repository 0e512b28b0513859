"""Integrated Gradients (Sundararajan et al. 2017): (x - reference) times the mean gradient on the path.

innvestigate averages the gradient at `steps` evenly spaced points from the reference to the
input, both ends included.
"""
from methods._innvestigate import analyze, channel_sum


def attribute(model, image, target, params):
    attribution = analyze(model, "integrated_gradients", image[None], target,
                          reference_inputs=params["reference"], steps=params["steps"])
    return channel_sum(attribution[0])
