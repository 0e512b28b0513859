"""DeepLIFT (Shrikumar et al. 2017), Rescale rule, explaining the logit against a constant baseline.

Attribution_i = (x_i - baseline_i) * m_i, where the multipliers m are backpropagated like a
gradient, except that each elementwise nonlinearity passes the secant slope
(f(z) - f(z0)) / (z - z0) between its input z on the image and z0 on the baseline, instead of its
derivative (the derivative where |z - z0| is below 1e-10, as captum does). Linear layers (dense,
convolutions, BatchNorm at inference, additions, average pooling) pass their gradient, and max
pooling shares each window's change between the image's winner and the baseline's (as captum's
rule does, overlapping windows' shares added), so the attributions sum to logit(x) -
logit(baseline); each map's gap from that sum is reported (completeness_gap).

On PyTorch the baseline goes through the model first, without gradients, and each activation's
input and output are kept; the image's forward and backward pass then take the secant between
its activations and the baseline's, call by call (a forward and a backward pass: about 4 forward
passes of cost, where a batch of the two cost 6). Every elementwise activation called from
Python is caught (heatkit.methods._activations); captum's DeepLift was not used: it refuses a
ReLU module called twice (torchvision's ResNets) and misses functional ReLUs (measured:
attributions summing to -0.166 for a difference of -0.190). On
Keras the image and the baseline go through the model as one batch of two, and the rule replaces
the gradients of the Relu, Relu6, LeakyRelu, Elu, Selu, Sigmoid, Tanh and Softplus operations
with the secant between the batch's two rows.

No rule of this kind is exact through a softmax inside the model, a normalization by the input's
own statistics (LayerNorm) or a product of two activations (attention, gating): on such a model
(a ViT) DeepLIFT is not applicable, and says which operation it met.
"""
import functools

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.base.rules import PixelValue
from heatkit.methods import _keras_rules, channel_sum
from heatkit.methods._activations import derivative, replaced
from heatkit.methods._entry import GRADIENT_PASSES, Method, Needs, Paper, Setting, Settings, one_image

NEAR_ZERO = 1e-10  # captum's threshold below which the secant becomes the derivative


def on_torch_batch(model, images, targets, params):
    torch = frameworks.torch()
    net = model.torch
    baseline = np.full_like(images[0], params["baseline"])
    on_baseline = []  # each activation's (input, output) on the baseline, in call order

    def keep(index, z, y):
        on_baseline.append((z, y.detach()))
    with torch.no_grad(), replaced(model, "DeepLIFT", None, rectifiers_only=False, seen=keep):
        net.forward(net.tensor(baseline[None]))
    shapes = []

    def rescale(z, y, activation, signal, index):
        """The secant between each image's activation and the baseline's, in float32 at least: in
        float16, a difference below the rounding of z made secants of 1e4 and NaN maps."""
        z0, y0 = on_baseline[index]
        if activation.pooling:
            return _max_pooling(z, y, z0, y0, activation, signal)
        wide = torch.promote_types(z.dtype, torch.float32)
        dz, dy = z.to(wide) - z0.to(wide), y.to(wide) - y0.to(wide)
        close = dz.abs() < NEAR_ZERO
        if torch.finfo(z.dtype).bits == 16:  # a difference within z's own rounding is no secant: the derivative
            close |= dz.abs() <= torch.finfo(z.dtype).eps * (z.to(wide).abs() + z0.to(wide).abs())
        slope = dy / torch.where(close, torch.ones_like(dz), dz)
        if close.any():
            slope = torch.where(close, derivative(activation, z).to(wide), slope)
        return (signal.to(wide) * slope).to(signal.dtype)

    inputs = net.tensor(images).requires_grad_()
    with replaced(model, "DeepLIFT", rescale, rectifiers_only=False,
                  seen=lambda index, z, y: shapes.append(z.shape[1:])):
        logits = net.forward(inputs)[torch.arange(len(images)), torch.as_tensor(targets)]
    if shapes != [z.shape[1:] for z, _ in on_baseline]:
        raise NotApplicable("DeepLIFT pairs each activation on the image with the same one on the baseline, and this "
                            "model's forward calls different activations for the two (control flow that depends on "
                            "the input)")
    (multipliers,) = torch.autograd.grad(logits.sum(), inputs)  # each image's logit has its own inputs
    return channel_sum((images - baseline) * net.array(multipliers).transpose(0, 2, 3, 1))


def _max_pooling(z, y, z0, y0, pooling, signal):
    """DeepLIFT's multipliers through a max pooling, which keep the sum (as captum's rule, with
    overlapping windows' shares added, not overwritten): a window's change y - y0 goes to the
    image's winner as max(y, y0) - y0 and to the baseline's winner as y - max(y, y0), and each
    input's multiplier is its share over its own change (the gradient where that change is 0)."""
    torch = frameworks.torch()
    top = torch.maximum(y, y0)
    winners, baseline_winners = pooling.winners(z), pooling.winners(z0).expand_as(y)
    shares = torch.zeros_like(z).flatten(2)
    shares.scatter_add_(2, winners.flatten(2), (signal * (top - y0)).flatten(2))
    shares.scatter_add_(2, baseline_winners.flatten(2), (signal * (y - top)).flatten(2))
    gradient = torch.zeros_like(z).flatten(2).scatter_add_(2, winners.flatten(2), signal.flatten(2))
    dz = (z - z0).flatten(2)
    close = dz.abs() < NEAR_ZERO
    return torch.where(close, gradient, shares / torch.where(close, torch.ones_like(dz), dz)).view_as(z)


on_torch = one_image(on_torch_batch)


def on_keras(model, image, target, params):
    baseline = np.full_like(image, params["baseline"])
    _keras_rules.refuse(model.keras, "DeepLIFT", rectifiers_only=False)
    multipliers = _keras_rules.gradient(model.keras, "Rescale", RESCALE)(np.stack([image, baseline]), target)
    return channel_sum((image - baseline) * multipliers[0])


# The Keras operations whose gradient the Rescale rule replaces, with their derivative for the
# near-zero case, as a function of the operation's input, output and attributes.
KERAS_DERIVATIVES = {
    "Relu": lambda tf, x, y, op: tf.cast(x > 0, x.dtype),
    "Relu6": lambda tf, x, y, op: tf.cast((x > 0) & (x < 6), x.dtype),
    "LeakyRelu": lambda tf, x, y, op: tf.where(x > 0, tf.ones_like(x), op.get_attr("alpha") * tf.ones_like(x)),
    _keras_rules.LAYER: lambda tf, x, y, op: op.derivative[:tf.shape(x)[0]],
    "Elu": lambda tf, x, y, op: tf.where(x > 0, tf.ones_like(x), y + 1),
    "Selu": lambda tf, x, y, op: tf.where(x > 0, 1.0507009873554805 * tf.ones_like(x), y + 1.7580993408473766),
    "Sigmoid": lambda tf, x, y, op: y * (1 - y),
    "Tanh": lambda tf, x, y, op: 1 - y * y,
    "Softplus": lambda tf, x, y, op: tf.sigmoid(x),
}


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
    """_max_pooling's rule on Keras: the batch's image half and its baseline half, each input's
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


RESCALE = {kind: functools.partial(_rescale, slope_at) for kind, slope_at in KERAS_DERIVATIVES.items()}
RESCALE["MaxPool"] = _keras_max_pooling


SETTINGS = Settings("deeplift", "deeplift: DeepLIFT (Shrikumar et al. 2017), Rescale rule, explaining the logit.", {
    "baseline": Setting(0.0, PixelValue(), 'the baseline image\'s pixels: 0 black, 1 white, "mean" the '
                                           'preprocessing\'s mean color (converted to the model\'s input)'),
})
METHOD = Method("deeplift", "DeepLIFT", Paper(
    "Shrikumar et al. 2017", "Learning Important Features Through Propagating Activation Differences",
    "https://arxiv.org/abs/1704.02685"), Needs.GRADIENTS, {"keras": on_keras, "torch": on_torch}, SETTINGS,
    batched={"torch": on_torch_batch}, reference="baseline",
    passes=lambda model, params: GRADIENT_PASSES + 1)  # and the baseline's own forward pass
