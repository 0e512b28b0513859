"""Guided Backprop (Springenberg et al. 2015): the gradient with negative signals stopped at each
rectifier, and each rectifier passing its local slope (a ReLU: 1 where its input was positive).

The rule applies to the piecewise-linear rectifiers however a model writes them (ReLU, ReLU6,
Hardtanh, LeakyReLU; on PyTorch also PReLU and Hardsigmoid); a model with a smooth activation
(GELU, SiLU, sigmoid, tanh, ...) or a softmax inside has no guided rule, and the method is not
applicable to it. The backward pass starts from 1 at the explained logit, as the paper does.
"""
import functools

from heatkit.methods import _keras_rules, channel_sum
from heatkit.methods._activations import rectifier_rule_gradient
from heatkit.methods._entry import Method, Needs, Paper, one_image

# d rectifier / d x at the operation's input, by TensorFlow operation
SLOPES = {
    "Relu": lambda tf, x, op: tf.cast(x > 0, x.dtype),
    "Relu6": lambda tf, x, op: tf.cast((x > 0) & (x < 6), x.dtype),
    "LeakyRelu": lambda tf, x, op: tf.where(x > 0, tf.ones_like(x), op.get_attr("alpha") * tf.ones_like(x)),
    _keras_rules.LAYER: lambda tf, x, op: op.derivative,
}


def _guided(slope, tf, op, signal):
    return tf.nn.relu(signal) * slope(tf, op.inputs[0], op)


RULES = {kind: functools.partial(_guided, slope) for kind, slope in SLOPES.items()}


def rectifier_method(key: str, name: str, paper: Paper, rules: dict, guided: bool) -> Method:
    """A method that backpropagates through each rectifier by `rules` (Keras: a TensorFlow
    gradient override by operation; PyTorch: `guided` or DeConvNet's rule), its other layers by
    their gradient: Guided Backprop and DeConvNet."""
    def on_keras(model, image, target, params):
        _keras_rules.refuse(model.keras, name, rectifiers_only=True)
        return channel_sum(_keras_rules.gradient(model.keras, key, rules)(image[None], target)[0])

    def on_torch_batch(model, images, targets, params):
        return channel_sum(rectifier_rule_gradient(model, images, targets, guided=guided, name=name))

    return Method(key, name, paper, Needs.GRADIENTS, {"keras": on_keras, "torch": one_image(on_torch_batch)},
                  batched={"torch": on_torch_batch})


METHOD = rectifier_method("gb", "Guided Backprop", Paper(
    "Springenberg et al. 2015", "Striving for Simplicity: The All Convolutional Net", "https://arxiv.org/abs/1412.6806"),
    RULES, guided=True)
