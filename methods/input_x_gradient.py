"""Input x Gradient (Shrikumar et al. 2016): the input times the gradient, pixel by pixel."""
from heatkit.methods import _captum, _keras_rules, channel_sum
from heatkit.methods._entry import Method, Needs, Paper, one_image


def keras(model, image, target, params):
    return channel_sum(image * _keras_rules.plain_gradient(model.keras)(image[None], target)[0])


def torch_batch(model, images, targets, params):
    return channel_sum(_captum.attribute(model, "InputXGradient", images, targets))


torch = one_image(torch_batch)
METHOD = Method("inpgrad", "Input x Gradient", Paper(
    "Shrikumar et al. 2016", "Not Just a Black Box: Learning Important Features Through Propagating Activation "
    "Differences", "https://arxiv.org/abs/1605.01713"), Needs.GRADIENTS,
    {"keras": keras, "torch": torch}, batched={"torch": torch_batch})
