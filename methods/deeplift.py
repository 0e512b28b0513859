"""DeepLIFT (Shrikumar et al. 2017), Rescale rule, explaining the logit against a constant baseline.

Attribution_i = (x_i - baseline_i) * m_i, where the multipliers m are backpropagated like a
gradient, except that each elementwise nonlinearity passes the secant slope
(f(z) - f(z0)) / (z - z0) between its input z on the image and z0 on the baseline, instead of its
derivative (the derivative where |z - z0| is below 1e-10, as captum does). Linear layers (dense,
convolutions, BatchNorm at inference, additions, average pooling) pass their gradient, and max
pooling shares each window's change between the image's winner and the baseline's (as captum's
rule does, overlapping windows' shares added), so the attributions sum to logit(x) -
logit(baseline); each map's gap from that sum is reported (completeness_gap), on PyTorch from the
baseline's logits of the method's own pass.

On PyTorch the baseline goes through the model first and each ruled operation's inputs are kept;
the image's forward and backward pass then take the rules against them, call by call
(heatkit/methods/_deeplift_rules.py): besides the Rescale rule and max pooling, a product rule
that keeps completeness exact through products of two activations (attention, gates,
squeeze-excitation), and normalizations and the attention softmax written as the operations they
are, so that ViTs, Swin, ConvNeXt, EfficientNet and MobileNetV3 are complete too. Every
operation called from Python is caught; captum's DeepLift was not used: it refuses a ReLU module
called twice (torchvision's ResNets) and misses functional ReLUs (measured: attributions summing
to -0.166 for a difference of -0.190). On Keras the image and the baseline go through the model
as one batch of two, and the rule replaces the gradients of the Relu, Relu6, LeakyRelu, Elu,
Selu, Sigmoid, Tanh and Softplus operations with the secant between the batch's two rows; a
softmax inside a Keras model, a normalization or a product of two activations has no rule there,
and DeepLIFT says which operation it met.
"""
import functools

import numpy as np

from heatkit.base.rules import PixelValue
from heatkit.base.run_state import current
from heatkit.methods import _deeplift_rules, _keras_rules, channel_sum
from heatkit.methods._entry import GRADIENT_PASSES, Method, Needs, Paper, Setting, Settings, one_image

NEAR_ZERO = _deeplift_rules.NEAR_ZERO


def on_torch_batch(model, images, targets, params):
    baseline = np.full_like(images[0], params["baseline"])
    found, reference = _deeplift_rules.multipliers(model, images, targets, baseline)
    current().keep_reference(model, params["baseline"], model.torch.array(reference))
    return channel_sum((images - baseline) * model.torch.array(found).transpose(0, 2, 3, 1))


on_torch = one_image(on_torch_batch)


def on_keras(model, image, target, params):
    baseline = np.full_like(image, params["baseline"])
    _keras_rules.refuse(model.keras, "DeepLIFT", guided=False)
    multipliers = _keras_rules.gradient(model.keras, "Rescale", RESCALE)(np.stack([image, baseline]), target)
    return channel_sum((image - baseline) * multipliers[0])


# The Keras operations whose gradient the Rescale rule replaces, with their derivative for the
# near-zero case, as a function of the operation's input, output and attributes.


def _rescale(slope_at, tf, op, signal):
    """The secant between the batch's image half and its baseline half, for both halves, in float32
    at least, a difference within a 16-bit z's own rounding taken as none (as on PyTorch: float16
    secants of such differences were infinite where the image equals the baseline)."""
    z, y = op.inputs[0], op.outputs[0]
    half = tf.shape(z)[0] // 2
    wide = tf.float64 if z.dtype == tf.float64 else tf.float32
    z, y = tf.cast(z, wide), tf.cast(y, wide)
    dz, dy = z[:half] - z[half:], y[:half] - y[half:]
    close = tf.abs(dz) < NEAR_ZERO
    if op.inputs[0].dtype in (tf.float16, tf.bfloat16):
        eps = 2.0 ** (-10 if op.inputs[0].dtype == tf.float16 else -7)  # the 16-bit type's machine epsilon
        close |= tf.abs(dz) <= eps * (tf.abs(z[:half]) + tf.abs(z[half:]))
    slope = tf.where(close, tf.cast(slope_at(tf, z[:half], y[:half], op), wide),
                     dy / tf.where(close, tf.ones_like(dz), dz))
    return signal * tf.cast(tf.concat([slope, slope], 0), signal.dtype)


def _keras_max_pooling(tf, op, signal):
    """_deeplift_rules._max_pooling's rule on Keras: the batch's image half and its baseline half, each input's
    multiplier its share of its windows' change over its own change, for both halves."""
    z, y = op.inputs[0], op.outputs[0]
    half = tf.shape(z)[0] // 2
    _, winners = tf.nn.max_pool_with_argmax(z, op.get_attr("ksize"), op.get_attr("strides"),
                                            op.get_attr("padding").decode(), include_batch_in_index=True)
    size = tf.size(z[:half], out_type=winners.dtype)  # the baseline half's indices, less this, index the image half
    image, top, given = signal[:half], tf.maximum(y[:half], y[half:]), tf.reshape(signal[:half], [-1])
    flat = lambda tensor: tf.reshape(tensor, [-1])  # noqa: E731
    shares = tf.math.unsorted_segment_sum(tf.concat([flat(image * (top - y[half:])), flat(image * (y[:half] - top))], 0),
                                          tf.concat([flat(winners[:half]), flat(winners[half:]) - size], 0), size)
    gradient = tf.math.unsorted_segment_sum(given, flat(winners[:half]), size)
    dz = flat(z[:half] - z[half:])
    close = tf.abs(dz) < NEAR_ZERO
    multipliers = tf.reshape(tf.where(close, gradient, shares / tf.where(close, tf.ones_like(dz), dz)),
                             tf.shape(z[:half]))
    return tf.concat([multipliers, multipliers], 0)


RESCALE = {kind: functools.partial(_rescale, slope_at) for kind, slope_at in _keras_rules.DERIVATIVES.items()}
RESCALE["MaxPool"] = _keras_max_pooling


SETTINGS = Settings("deeplift", "deeplift: DeepLIFT (Shrikumar et al. 2017), Rescale rule, explaining the logit.", {
    "baseline": Setting(0.0, PixelValue(), 'the baseline image\'s pixels: 0 black, 1 white, "mean" the '
                                           'preprocessing\'s mean color (converted to the model\'s input)'),
})
METHOD = Method("deeplift", "DeepLIFT", Paper(
    "Shrikumar et al. 2017", "Learning Important Features Through Propagating Activation Differences",
    "https://arxiv.org/abs/1704.02685"), Needs.GRADIENTS, {"keras": on_keras, "torch": on_torch}, SETTINGS,
    batched={"torch": on_torch_batch}, reference="baseline",
    passes=lambda model, params: GRADIENT_PASSES + 1,  # and the baseline's own forward pass
    families={"ReLU CNNs": "complete (Rescale)", **dict.fromkeys(
        ("gated CNNs", "ConvNeXt", "ViT", "Swin"), "complete (Rescale, product rule, normalizations and softmax as "
                                                   "their parts)")})
