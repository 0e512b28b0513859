"""DeConvNet (Zeiler & Fergus 2014): backward signals through ReLUs rectified, not masked by the forward pass."""
from methods._innvestigate import analyze, channel_sum


def attribute(model, image, target, params):
    return channel_sum(analyze(model, "deconvnet", image[None], target)[0])
