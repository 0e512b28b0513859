"""Gradient (Simonyan et al. 2014): d logit_target / d input."""
from heatkit.methods import _keras_rules, _recording, channel_sum
from heatkit.methods._entry import Method, Needs, Paper, one_image


def on_keras(model, image, target, params):
    return channel_sum(_keras_rules.plain_gradient(model.keras)(image[None], target)[0])


def on_torch_batch(model, images, targets, params):
    return channel_sum(_recording.input_gradients(model, images, targets))


on_torch = one_image(on_torch_batch)
METHOD = Method("grad", "Gradient", Paper(
    "Simonyan et al. 2014", "Deep Inside Convolutional Networks: Visualising Image Classification Models and Saliency Maps",
    "https://arxiv.org/abs/1312.6034"), Needs.GRADIENTS, {"keras": on_keras, "torch": on_torch},
    batched={"torch": on_torch_batch}, from_prediction=_recording.at_input)
