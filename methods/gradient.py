"""Gradient (Simonyan et al. 2014): d logit_target / d input."""
from methods._innvestigate import analyze, channel_sum


def attribute(model, image, target, params):
    return channel_sum(analyze(model, "gradient", image[None], target)[0])
