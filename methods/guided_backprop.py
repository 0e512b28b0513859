"""Guided Backprop (Springenberg et al. 2015): the gradient with negative signals stopped at each ReLU."""
from heatkit.methods import _innvestigate, channel_sum
from heatkit.methods._entry import Method, Needs, Paper
from heatkit.methods._activations import relu_rule_gradient


def keras(model, image, target, params):
    return channel_sum(_innvestigate.analyze(model, "guided_backprop", image[None], target)[0])


def torch(model, image, target, params):
    return channel_sum(relu_rule_gradient(model, image, target, guided=True, name="Guided Backprop"))


METHOD = Method("gb", "Guided Backprop", Paper(
    "Springenberg et al. 2015", "Striving for Simplicity: The All Convolutional Net", "https://arxiv.org/abs/1412.6806"),
    Needs.GRADIENTS, {"keras": keras, "torch": torch})
