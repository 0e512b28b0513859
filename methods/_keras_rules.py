"""The backward pass of a Keras model's activations, replaced by a rule (Guided Backprop's,
DeConvNet's, DeepLIFT's Rescale), and the operations where no such rule is exact.

A rule overrides the gradient of the TensorFlow operations an activation computes with, however
the model writes it (a ReLU layer, an activation string or function): Relu, Relu6 and LeakyRelu
are the piecewise-linear rectifiers; Elu, Selu, Softplus, Sigmoid, Tanh and the rest are smooth.
The operations are read from the model's logits graph, between its input and its logits: those
that depend on the input are the ones a rule must pass (a BatchNorm's multiplication by its
variables does not count as a product of two activations; attention's by its softmax does).
"""
from __future__ import annotations

import functools
import types
from typing import Callable

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.model.keras_net import is_activation_layer

SMOOTH = ("Elu", "Selu", "Softplus", "Softsign", "Sigmoid", "Tanh", "Erf", "Erfc")
OTHER = ("Softmax", "LogSoftmax")  # not elementwise
PRODUCTS = ("Mul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "MatMul", "Einsum", "RealDiv", "Div", "DivNoNan")
# Piecewise-constant functions of the input: a product with one (a ThresholdedReLU's x * (x > theta)) is
# piecewise linear, not a product of two activations
MASKS = ("Cast", "Greater", "GreaterEqual", "Less", "LessEqual", "Equal", "NotEqual", "Sign")


def input_dependent_ops(net) -> list:
    """The operations between the model's input and its logits that depend on the input, in graph
    order, with, for each, how many of its inputs do."""
    def find():
        start = net.logits_model.inputs[0].op
        depends, queue = {start}, [start]
        while queue:
            for output in queue.pop().outputs:
                for consumer in output.consumers():
                    if consumer not in depends:
                        depends.add(consumer)
                        queue.append(consumer)
        needed, queue = set(), [net.logits_model.output.op]
        while queue:  # and that the logits depend on
            op = queue.pop()
            if op in depends and op not in needed:
                needed.add(op)
                queue += [tensor.op for tensor in op.inputs]
        return [(op, sum(tensor.op in depends and tensor.op.type not in MASKS for tensor in op.inputs))
                for op in net.graph.get_operations() if op in needed]
    return net.once(("input-dependent ops",), find)


def refuse(net, method: str, guided: bool) -> None:
    """NotApplicable where the rule of `method` is not exact on this model: for Guided Backprop and
    DeConvNet (guided), a softmax, a product of two activations (hard-swish, gating) or a smooth
    operation with no derivative below (GELU's Erf); for DeepLIFT and LRP, a softmax or a product
    of two activations (attention, normalization, gating)."""
    for op, computed in input_dependent_ops(net):
        if guided and (op.type in OTHER or op.type in SMOOTH and op.type not in DERIVATIVES or
                       op.type in PRODUCTS and computed > 1):
            what = "a product of two activations" if op.type in PRODUCTS else op.type
            raise NotApplicable(f"{method} has a rule for the rectifiers and for the smooth activations TensorFlow "
                                f"computes as one operation, and this model also computes {what} ({op.name}), "
                                "which has none")
        if not guided and (op.type in OTHER or op.type in PRODUCTS and computed > 1):
            what = op.type if op.type in OTHER else "a product of two activations"
            raise NotApplicable(f"{method} is exact through linear layers and elementwise activations, and this model "
                                f"computes {what} ({op.name}), as attention, normalization or gating do: its map would "
                                "not sum to the logit's change")


def smooth_operations(net) -> list[str]:
    """The smooth activations (by TensorFlow operation) the model computes from its input."""
    return sorted({op.type for op, _ in input_dependent_ops(net) if op.type in SMOOTH})


def plain_gradient(net) -> Callable:
    """A function of (batch, class) giving d logit / d input: one tf.gradients of the logits model,
    where innvestigate's Gradient builds a reverse pass layer by layer (a ResNet50's first map
    took 6.3 s through it, 0.9 s this way)."""
    return gradient(net, "Plain", {})


def gradient(net, key: str, rules: dict[str, Callable]) -> Callable:
    """A function of (batch, class) giving d logit / d input with the gradient of each operation
    type in `rules` replaced by rules[type](tf, op, signal); built once per model and key. The rule
    under LAYER applies to Keras' activation layers (ReLU, LeakyReLU, PReLU, ELU, ThresholdedReLU),
    several of which compute through several operations (a PReLU: relu(x) - alpha relu(-x); an ELU
    of alpha 0.7: 0.7 elu(x) below 0): each such layer computes as one operation whose `op` has the
    input, the output and the layer's `derivative`, so that the rule sees the activation the layer
    is, as PyTorch's rules see an nn.PReLU or nn.ELU."""
    tf = frameworks.tensorflow()

    def build():
        names = {kind: _registered(key, kind, rule) for kind, rule in rules.items() if kind != LAYER}
        inputs = tf.compat.v1.placeholder(net.dtype, (None, *net.input_shape))
        target = tf.compat.v1.placeholder(tf.int32, ())
        model = net.logits_model if LAYER not in rules else net.logits_model_with(
            lambda layer: _ruled(tf, layer, rules[LAYER], list(names)) if is_activation_layer(layer) else None)
        with net.graph.gradient_override_map(names):
            logits = model(inputs)
        (result,) = tf.gradients(logits[:, target], inputs)
        return net.session.make_callable(result, feed_list=[inputs, target])
    return net.once(("gradient", key), build)


LAYER = "activation layer"  # the key of the rule for Keras' activation layers (see gradient)
# d activation / d x at x, its output y, by TensorFlow operation (LAYER: Keras' activation layers)
DERIVATIVES = {
    "Relu": lambda tf, x, y, op: tf.cast(x > 0, x.dtype),
    "Relu6": lambda tf, x, y, op: tf.cast((x > 0) & (x < 6), x.dtype),
    "LeakyRelu": lambda tf, x, y, op: tf.where(x > 0, tf.ones_like(x), op.get_attr("alpha") * tf.ones_like(x)),
    LAYER: lambda tf, x, y, op: op.derivative[:tf.shape(x)[0]],
    "Elu": lambda tf, x, y, op: tf.where(x > 0, tf.ones_like(x), y + 1),
    "Selu": lambda tf, x, y, op: tf.where(x > 0, 1.0507009873554805 * tf.ones_like(x), y + 1.7580993408473766),
    "Sigmoid": lambda tf, x, y, op: y * (1 - y),
    "Tanh": lambda tf, x, y, op: 1 - y * y,
    "Softplus": lambda tf, x, y, op: tf.sigmoid(x),
}


def _ruled(tf, layer, rule: Callable, overridden: list[str]) -> Callable:
    """An activation layer's function, whose gradient is rule(tf, op, signal); the operations
    inside it keep their own gradients (`overridden` are the types whose gradients the rules
    replace elsewhere), which give its derivative."""
    def function(x):
        @tf.custom_gradient
        def activation(x):
            with tf.compat.v1.get_default_graph().gradient_override_map({kind: kind for kind in overridden}):
                y = layer.call(x)

            def backward(signal, variables=()):  # a PReLU's alpha is a variable; no map needs its gradient
                (derivative,) = tf.gradients(y, x)  # elementwise: the derivative at each element
                op = types.SimpleNamespace(inputs=[x], outputs=[y], derivative=derivative,
                                           smooth=isinstance(layer, tf.keras.layers.ELU))
                return rule(tf, op, signal), [None] * len(variables)
            return y, backward
        return activation(x)
    return function


@functools.cache
def _registered(key: str, kind: str, rule: Callable) -> str:
    """The rule as a TensorFlow gradient, registered once per process under its own name."""
    tf = frameworks.tensorflow()
    name = f"Heatkit{key}{kind}"

    def apply(op, signal):
        return [rule(tf, op, signal)] + [None] * (len(op.inputs) - 1)
    tf.RegisterGradient(name)(apply)
    return name
