"""DeConvNet (Zeiler & Fergus 2014): backward signals through ReLUs rectified, not masked by the forward pass."""
from heatkit.methods import _innvestigate, channel_sum
from heatkit.methods._entry import Method, Needs, Paper
from heatkit.methods._activations import relu_rule_gradient


def keras(model, image, target, params):
    return channel_sum(_innvestigate.analyze(model, "deconvnet", image[None], target)[0])


def torch(model, image, target, params):
    return channel_sum(relu_rule_gradient(model, image, target, guided=False, name="DeConvNet"))


METHOD = Method("deconvnet", "DeConvNet", Paper(
    "Zeiler & Fergus 2014", "Visualizing and Understanding Convolutional Networks", "https://arxiv.org/abs/1311.2901"),
    Needs.GRADIENTS, {"keras": keras, "torch": torch})
