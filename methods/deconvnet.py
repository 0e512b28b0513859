"""DeConvNet (Zeiler & Fergus 2014): backward signals through ReLUs rectified, not masked by the forward pass."""
from methods import _captum, _innvestigate, channel_sum


def keras(model, image, target, params):
    return channel_sum(_innvestigate.analyze(model, "deconvnet", image[None], target)[0])


def torch(model, image, target, params):
    return channel_sum(_captum.attribute(model, "Deconvolution", image[None], target)[0])
