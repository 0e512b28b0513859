"""DeConvNet (Zeiler & Fergus 2014): backward signals through each rectifier rectified, whatever
the forward pass did there (a ReLU passes max(signal, 0); so does every other piecewise-linear
rectifier). As for Guided Backprop, a smooth activation or a softmax inside the model has no
such rule, and the method is not applicable to it."""
from heatkit.methods import _keras_rules, channel_sum
from heatkit.methods._activations import rectifier_rule_gradient
from heatkit.methods._entry import Method, Needs, Paper, one_image
from heatkit.methods.guided_backprop import SLOPES


def _rectified(tf, op, signal):
    return tf.nn.relu(signal)


RULES = dict.fromkeys(SLOPES, _rectified)


def keras(model, image, target, params):
    _keras_rules.refuse(model.keras, "DeConvNet", rectifiers_only=True)
    return channel_sum(_keras_rules.gradient(model.keras, "Deconv", RULES)(image[None], target)[0])


def torch_batch(model, images, targets, params):
    return channel_sum(rectifier_rule_gradient(model, images, targets, guided=False, name="DeConvNet"))


torch = one_image(torch_batch)
METHOD = Method("deconvnet", "DeConvNet", Paper(
    "Zeiler & Fergus 2014", "Visualizing and Understanding Convolutional Networks", "https://arxiv.org/abs/1311.2901"),
    Needs.GRADIENTS, {"keras": keras, "torch": torch},
    batched={"torch": torch_batch})
