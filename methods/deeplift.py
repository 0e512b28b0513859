"""DeepLIFT (Shrikumar et al. 2017), Rescale rule, explaining the logit against a constant baseline.

Attribution_i = (x_i - baseline_i) * m_i, where the multipliers m are backpropagated like a
gradient, except that each ReLU passes the secant slope (relu(z) - relu(z0)) / (z - z0) between
input and baseline instead of its derivative (the derivative where z - z0 is below 1e-10, as
captum does). The attributions sum to logit(x) - logit(baseline).

PyTorch: captum's DeepLift. Keras: the rule above in numpy, for models made of Flatten, Dense
and ReLU layers; other Keras models are not applicable (run them with --backend torch).
"""
import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.base.rules import Float
from heatkit.methods import _captum, channel_sum
from heatkit.methods._entry import Method, Needs, Paper, Setting, Settings

NEAR_ZERO = 1e-10  # captum's threshold below which the secant becomes the derivative


def torch(model, image, target, params):
    if model.torch.scripted:
        raise NotApplicable("captum's DeepLift sets hooks, which TorchScript modules do not take")
    attribution = _captum.attribute(model, "DeepLift", image[None], target, baselines=params["baseline"])
    return channel_sum(attribution[0])


def keras(model, image, target, params):
    with model.keras.scope():
        steps = _dense_relu_chain(model.keras.logits_model)
    baseline = np.full_like(image, params["baseline"])
    x, x0, pre_activations = image.reshape(-1), baseline.reshape(-1), []
    for kind, *weights in steps:
        if kind == "dense":
            kernel, bias = weights
            x, x0 = x @ kernel + bias, x0 @ kernel + bias
        else:
            pre_activations.append((x, x0))
            x, x0 = np.maximum(x, 0), np.maximum(x0, 0)
    multipliers = np.zeros_like(x)
    multipliers[target] = 1.0
    for kind, *weights in reversed(steps):
        if kind == "dense":
            multipliers = weights[0] @ multipliers
        else:
            z, z0 = pre_activations.pop()
            delta = z - z0
            secant = (np.maximum(z, 0) - np.maximum(z0, 0)) / np.where(np.abs(delta) < NEAR_ZERO, 1.0, delta)
            multipliers = multipliers * np.where(np.abs(delta) < NEAR_ZERO, z > 0, secant)
    return channel_sum(((image - baseline).reshape(-1) * multipliers).reshape(image.shape))


def _dense_relu_chain(net) -> list[tuple]:
    """The logits model as ("dense", kernel, bias) and ("relu",) steps on the flattened input."""
    tf = frameworks.tensorflow()
    layers, steps = tf.keras.layers, []
    for layer in net.layers:
        activation = getattr(layer, "activation", None)
        if isinstance(layer, (layers.InputLayer, layers.Flatten)):
            continue
        if isinstance(layer, layers.Dense) and activation in (tf.keras.activations.relu, tf.keras.activations.linear):
            kernel, *bias = layer.get_weights()
            steps.append(("dense", kernel, bias[0] if bias else 0.0))
            if activation is tf.keras.activations.relu:
                steps.append(("relu",))
        elif isinstance(layer, layers.ReLU) or (isinstance(layer, layers.Activation)
                                                 and activation is tf.keras.activations.relu):
            steps.append(("relu",))
        else:
            raise NotApplicable(f"DeepLIFT on Keras covers Flatten, Dense and ReLU layers, not "
                                f"{type(layer).__name__}; use --backend torch")
    return steps


SETTINGS = Settings("deeplift", "deeplift: DeepLIFT (Shrikumar et al. 2017), Rescale rule, explaining the logit.", {
    "baseline": Setting(0.0, Float(), "the baseline image's value at every pixel (0.0: the all-zero image)"),
})
METHOD = Method("deeplift", "DeepLIFT", Paper(
    "Shrikumar et al. 2017", "Learning Important Features Through Propagating Activation Differences",
    "https://arxiv.org/abs/1704.02685"), Needs.GRADIENTS, {"keras": keras, "torch": torch}, SETTINGS)
