"""Guided Backprop (Springenberg et al. 2015): the gradient with negative signals stopped at each
rectifier, and each rectifier passing its local slope (a ReLU: 1 where its input was positive).

The rule applies to the piecewise-linear rectifiers however a model writes them (ReLU, ReLU6,
Hardtanh, LeakyReLU; on PyTorch also PReLU and Hardsigmoid), and to a smooth activation as the
literature extends it: the positive part of the signal where the input is positive, times the
slope (PyTorch: GELU, SiLU, ELU, sigmoid, tanh, hard-swish, ...; Keras: the smooth activations
TensorFlow computes as one operation, ELU, SELU, sigmoid, tanh, softplus); the run notes which
took it. A softmax inside the model, or a product of two activations on Keras (its GELU and
hard-swish), has no guided rule, and the method is not applicable there. The backward pass starts
from 1 at the explained logit, as the paper does.
"""
import functools

from heatkit.base.run_state import current
from heatkit.methods import _keras_rules, channel_sum
from heatkit.methods._activations import rectifier_rule_gradient, smooth_rule_note
from heatkit.methods._entry import REFUSED, Method, Needs, Paper, one_image


def _slope(kind: str):
    """The guided slope at an operation's input: its derivative, and for a smooth activation that
    only where the input is positive (an ELU layer's, of Keras' activation layers)."""
    derivative = _keras_rules.DERIVATIVES[kind]

    def slope(tf, x, op):
        smooth = kind in _keras_rules.SMOOTH or kind == _keras_rules.LAYER and op.smooth
        found = op.derivative if kind == _keras_rules.LAYER else derivative(tf, x, op.outputs[0], op)
        return found * tf.cast(x > 0, x.dtype) if smooth else found
    return slope


SLOPES = {kind: _slope(kind) for kind in _keras_rules.DERIVATIVES}  # by TensorFlow operation


def _guided(slope, tf, op, signal):
    return tf.nn.relu(signal) * slope(tf, op.inputs[0], op)


RULES = {kind: functools.partial(_guided, slope) for kind, slope in SLOPES.items()}
SMOOTH_RULE = "the literature's rule for smooth activations (noted)"
GUIDED_FAMILIES = {"ReLU CNNs": "its rectifier rule", "gated CNNs": SMOOTH_RULE, "ConvNeXt": SMOOTH_RULE,
                   "ViT": f"{REFUSED} (softmax)", "Swin": f"{REFUSED} (softmax)"}


def rectifier_method(key: str, name: str, paper: Paper, rules: dict, guided: bool) -> Method:
    """A method that backpropagates through each rectifier by `rules` (Keras: a TensorFlow
    gradient override by operation; PyTorch: `guided` or DeConvNet's rule), its other layers by
    their gradient: Guided Backprop and DeConvNet."""
    def on_keras(model, image, target, params):
        _keras_rules.refuse(model.keras, name, guided=True)
        smooth = _keras_rules.smooth_operations(model.keras)
        if smooth and guided:
            current().note(smooth_rule_note(name, [kind.lower() for kind in smooth]))
        return channel_sum(_keras_rules.gradient(model.keras, key, rules)(image[None], target)[0])

    def on_torch_batch(model, images, targets, params):
        return channel_sum(rectifier_rule_gradient(model, images, targets, guided=guided, name=name))

    return Method(key, name, paper, Needs.GRADIENTS, {"keras": on_keras, "torch": one_image(on_torch_batch)},
                  batched={"torch": on_torch_batch}, families=GUIDED_FAMILIES)


METHOD = rectifier_method("gb", "Guided Backprop", Paper(
    "Springenberg et al. 2015", "Striving for Simplicity: The All Convolutional Net", "https://arxiv.org/abs/1412.6806"),
    RULES, guided=True)
