"""DeConvNet (Zeiler & Fergus 2014): backward signals through ReLUs rectified, not masked by the forward pass."""
from methods import _innvestigate, channel_sum
from methods._relu_backward import relu_backward_gradient


def keras(model, image, target, params):
    return channel_sum(_innvestigate.analyze(model, "deconvnet", image[None], target)[0])


def torch(model, image, target, params):
    return channel_sum(relu_backward_gradient(model, image, target, guided=False, name="DeConvNet"))
