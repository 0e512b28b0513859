"""Input x Gradient (Shrikumar et al. 2016): the input times the gradient, pixel by pixel."""
from heatkit.methods import _keras_rules, _recording, channel_sum
from heatkit.methods._entry import Method, Needs, Paper, one_image


def on_keras(model, image, target, params):
    return channel_sum(image * _keras_rules.plain_gradient(model.keras)(image[None], target)[0])


def on_torch_batch(model, images, targets, params):
    gradients = _recording.input_gradients(model, images, targets)
    return channel_sum(images.astype(gradients.dtype) * gradients)  # float32 on a float32 model, as torch multiplies


on_torch = one_image(on_torch_batch)
METHOD = Method("inpgrad", "Input x Gradient", Paper(
    "Shrikumar et al. 2016", "Not Just a Black Box: Learning Important Features Through Propagating Activation "
    "Differences", "https://arxiv.org/abs/1605.01713"), Needs.GRADIENTS,
    {"keras": on_keras, "torch": on_torch}, batched={"torch": on_torch_batch}, from_prediction=_recording.at_input)
