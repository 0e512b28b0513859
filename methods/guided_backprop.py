"""Guided Backprop (Springenberg et al. 2015): the gradient with negative signals stopped at each ReLU."""
from methods._innvestigate import analyze, channel_sum


def attribute(model, image, target, params):
    return channel_sum(analyze(model, "guided_backprop", image[None], target)[0])
