"""Gradient (Simonyan et al. 2014): d logit_target / d input."""
from methods import _captum, _innvestigate, channel_sum


def keras(model, image, target, params):
    return channel_sum(_innvestigate.analyze(model, "gradient", image[None], target)[0])


def torch(model, image, target, params):
    return channel_sum(_captum.attribute(model, "Saliency", image[None], target, abs=False)[0])
