"""Input x Gradient (Shrikumar et al. 2016): the input times the gradient, pixel by pixel."""
from methods._innvestigate import analyze, channel_sum


def attribute(model, image, target, params):
    return channel_sum(analyze(model, "input_t_gradient", image[None], target)[0])
