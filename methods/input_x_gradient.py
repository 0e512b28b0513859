"""Input x Gradient (Shrikumar et al. 2016): the input times the gradient, pixel by pixel."""
from methods import _captum, _innvestigate, channel_sum


def keras(model, image, target, params):
    return channel_sum(_innvestigate.analyze(model, "input_t_gradient", image[None], target)[0])


def torch(model, image, target, params):
    return channel_sum(_captum.attribute(model, "InputXGradient", image[None], target)[0])
