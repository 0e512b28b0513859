"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhyay et al. 2018).

At a conv layer with feature maps A_k: Grad-CAM weights each map by the spatial mean of
d logit / d A_k and keeps the positive part of the weighted sum. Grad-CAM++ weights each
position's positive gradient by g^2 / (2 g^2 + sum(A_k) g^3), the closed form for an
exponential of the logit. Maps are upsampled (bilinear) to the input. `layers` in settings
chooses the layers (default the last conv layer); several give one map each.
"""
import numpy as np

from heatkit.base.contract import Several
from heatkit.base.rules import ListOf, Optional, Text
from heatkit.methods import _layers
from heatkit.methods._entry import Method, Needs, Paper, Setting, Settings


def gradcam_keras(model, image, target, params):
    return _maps(model, image, target, params, "keras", _gradcam)


def gradcam_torch(model, image, target, params):
    return _maps(model, image, target, params, "torch", _gradcam)


def gradcampp_keras(model, image, target, params):
    return _maps(model, image, target, params, "keras", _gradcampp)


def gradcampp_torch(model, image, target, params):
    return _maps(model, image, target, params, "torch", _gradcampp)


def _maps(model, image, target, params, framework: str, combine):
    names = _layers.target_layers(model, params["layers"], framework)
    activations_and_gradients = _layers.keras if framework == "keras" else _layers.torch
    maps = {name: _layers.upsample(combine(activations, gradients), image.shape[:2])
            for name, (activations, gradients) in zip(names, activations_and_gradients(model, names, image, target))}
    return next(iter(maps.values())) if len(maps) == 1 else Several(maps)


def _gradcam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    return np.maximum(activations @ gradients.mean(axis=(0, 1)), 0.0)


def _gradcampp(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    squared, cubed = gradients**2, gradients**3
    denominator = 2 * squared + activations.sum(axis=(0, 1)) * cubed
    alpha = np.divide(squared, denominator, out=np.zeros_like(squared), where=denominator != 0)
    weights = (alpha * np.maximum(gradients, 0.0)).sum(axis=(0, 1))
    return np.maximum(activations @ weights, 0.0)


PAPER = Paper("Selvaraju et al. 2017", "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
              "https://arxiv.org/abs/1610.02391")
SETTINGS = Settings("gradcam", "gradcam: the conv layers explained by Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ and "
                               "Guided Grad-CAM, by their Keras names; several give one map each. CAM (Zhou et al. "
                               "2016) always uses the layer before the global average pooling.", {
    "layers": Setting(None, Optional(ListOf(Text())), 'None: the last conv layer; or a list, e.g. ["conv2", "conv3"]'),
})
METHODS = [
    Method("gradcam", "Grad-CAM", PAPER, Needs.CONV_LAYER, {"keras": gradcam_keras, "torch": gradcam_torch}, SETTINGS),
    Method("gradcampp", "Grad-CAM++", Paper(
        "Chattopadhyay et al. 2018", "Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks",
        "https://arxiv.org/abs/1710.11063"), Needs.CONV_LAYER, {"keras": gradcampp_keras, "torch": gradcampp_torch},
        SETTINGS),
]
