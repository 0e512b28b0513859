"""CAM (Zhou et al. 2016), for models whose head is global average pooling then one Dense layer:
the last feature maps A_k weighted by the Dense weights of the class, sum_k w_k,c A_k,
upsampled (bilinear) to the input. Not rectified: CAM's sign is part of its answer."""
import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.methods import _layers
from heatkit.methods._entry import Method, Needs, Paper
from heatkit.model.twins import layer_modules

NOT_APPLICABLE = "CAM needs a global-average-pooling + Dense head"


def keras(model, image, target, params):
    tf = frameworks.tensorflow()
    softmax, linear = tf.keras.activations.softmax, tf.keras.activations.linear
    layers = [layer for layer in model.keras.model.layers if not isinstance(layer, tf.keras.layers.Dropout)]
    if isinstance(layers[-1], tf.keras.layers.Activation) and layers[-1].activation is softmax:
        layers = layers[:-1]
    kinds = [type(layer).__name__ for layer in layers]
    if "GlobalAveragePooling2D" not in kinds or kinds[kinds.index("GlobalAveragePooling2D") + 1:] != ["Dense"]:
        raise NotApplicable(NOT_APPLICABLE)
    pooling = kinds.index("GlobalAveragePooling2D")
    dense = layers[pooling + 1]
    if dense.activation not in (linear, softmax):
        raise NotApplicable(NOT_APPLICABLE)
    [(features, _)] = _layers.keras(model, [layers[pooling - 1].name], image, target)
    return _cam(features, model.keras.weights(dense.name)[0][:, target], image.shape[:2])


def torch(model, image, target, params):
    spec = model.card.get("twin", {}).get("spec", [])
    kinds = [entry["layer"] for entry in spec]
    if "global_average" not in kinds or kinds[kinds.index("global_average") + 1:] != ["dense"]:
        raise NotApplicable(NOT_APPLICABLE)
    pooling = kinds.index("global_average")
    [dense] = layer_modules(model.torch.module, spec[pooling + 1]["name"])
    [(features, _)] = _layers.torch(model, [spec[pooling - 1]["name"]], image, target)
    return _cam(features, model.torch.array(dense.weight[target]), image.shape[:2])


def _cam(features: np.ndarray, class_weights: np.ndarray, shape) -> np.ndarray:
    return _layers.upsample(features @ class_weights, shape)


METHOD = Method("cam", "CAM", Paper(
    "Zhou et al. 2016", "Learning Deep Features for Discriminative Localization", "https://arxiv.org/abs/1512.04150"),
    Needs.CONV_LAYER, {"keras": keras, "torch": torch})
