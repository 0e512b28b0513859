"""A Keras model's head: the final activation its output comes from, found from the operation
that makes it (a Softmax layer, an activation string, tf.nn.softmax) or, where none is written,
from the values it gives; and the tensor below it, the logits the gradient methods explain."""
from __future__ import annotations

import numpy as np

from heatkit.model.heads import Head, activation_of_values, check_classes, softmax

FINAL_OPS = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid"}


def find_head(tf, session, model, input_shape: tuple[int, int, int]):
    """The model's head, the tensor below its final activation (or the activation inverted), and a
    function that applies the model's last layer to a tensor as that tensor does."""
    op = model.output.op
    while op.type == "Identity":
        op = op.inputs[0].op
    activation, units = FINAL_OPS.get(op.type, "none"), int(model.output_shape[-1])
    last = model.layers[-1]
    below, apply_last = model.output, last
    if activation != "none":
        if isinstance(last, (tf.keras.layers.Activation, tf.keras.layers.Softmax)) or not _activation_in(last):
            below, apply_last = last.input, lambda x: x  # an activation layer, tf.nn.softmax(x), a Lambda
        else:  # the activation of a Dense or Conv layer, by string or function
            copy = type(last).from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_logits"})
            below = copy(last.input)
            copy.set_weights(last.get_weights())
            apply_last = copy
    head, found = Head(activation, units), "graph"
    probes = session.run([model.output, below], {model.inputs[0]: _probes(input_shape)})
    if activation == "none" and (seen := activation_of_values(probes[0])) != "none":
        head, found = Head(seen, units, below=False, found="values"), "values"
    check_classes(head, model.name)
    if head.below and activation != "none" and not _gives_back(activation, *probes):
        head = Head(activation, units, below=False)
    if not head.below:
        return head, inverted(tf, head.activation, model.output), lambda x: inverted(tf, head.activation, last(x))
    return head, below, apply_last


def _activation_in(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") != "linear"


def inverted(tf, activation: str, output):
    """The logits that give `output` back under the activation (up to a constant, for a softmax)."""
    if activation == "log_softmax":
        return output
    output = tf.cast(output, tf.float64 if output.dtype == tf.float64 else tf.float32)
    return tf.math.log(output) if activation == "softmax" else tf.math.log(output) - tf.math.log1p(-output)


def _gives_back(activation: str, output: np.ndarray, below: np.ndarray) -> bool:
    """Whether the activation of the tensor below it is the model's output, to its precision."""
    below = below.astype(np.float64)
    again = {"softmax": lambda: softmax(below), "log_softmax": lambda: np.log(softmax(below)),
             "sigmoid": lambda: 1 / (1 + np.exp(-below))}[activation]()
    tolerance = 1e-2 if output.dtype == np.float16 else 1e-5
    return bool(np.allclose(again, output, rtol=tolerance, atol=tolerance))


def _probes(shape: tuple[int, int, int]) -> np.ndarray:
    return np.stack([np.zeros(shape), np.full(shape, 0.5), np.random.default_rng(0).random(shape)])
