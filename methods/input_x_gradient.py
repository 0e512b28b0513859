"""Input x Gradient (Shrikumar et al. 2016): the input times the gradient, pixel by pixel."""
from heatkit.methods import _captum, _keras_rules, channel_sum
from heatkit.methods._entry import Method, Needs, Paper, one_image


def on_keras(model, image, target, params):
    return channel_sum(image * _keras_rules.plain_gradient(model.keras)(image[None], target)[0])


def on_torch_batch(model, images, targets, params):
    return channel_sum(_captum.attribute(model, "InputXGradient", images, targets))


on_torch = one_image(on_torch_batch)
METHOD = Method("inpgrad", "Input x Gradient", Paper(
    "Shrikumar et al. 2016", "Not Just a Black Box: Learning Important Features Through Propagating Activation "
    "Differences", "https://arxiv.org/abs/1605.01713"), Needs.GRADIENTS,
    {"keras": on_keras, "torch": on_torch}, batched={"torch": on_torch_batch})
