"""Guided Backprop (Springenberg et al. 2015): the gradient with negative signals stopped at each ReLU."""
from methods import _captum, _innvestigate, channel_sum


def keras(model, image, target, params):
    return channel_sum(_innvestigate.analyze(model, "guided_backprop", image[None], target)[0])


def torch(model, image, target, params):
    return channel_sum(_captum.attribute(model, "GuidedBackprop", image[None], target)[0])
