"""CAM (Zhou et al. 2016), for models whose head is global average pooling then one Dense layer:
the last feature maps A_k weighted by the Dense weights of the class, sum_k w_k,c A_k,
upsampled (bilinear) to the input. Not rectified: CAM's sign is part of its answer."""
import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.methods import _layers
from heatkit.methods._entry import Method, Needs, Paper
from heatkit.model.torch_net import is_kind

NOT_APPLICABLE = ("CAM weights a conv layer's maps by the classifier's weights, so the classifier must be one linear "
                  "layer on the global average of those maps; this model's {}")


def keras(model, image, target, params):
    tf = frameworks.tensorflow()
    layers = tf.keras.layers
    dense = model.keras.logits_model.layers[-1]
    if not isinstance(dense, layers.Dense):
        raise NotApplicable(NOT_APPLICABLE.format(f"last layer is a {type(dense).__name__}"))
    pooling = _inbound(dense)
    while isinstance(pooling, layers.Dropout):
        pooling = _inbound(pooling)
    if not isinstance(pooling, layers.GlobalAveragePooling2D):
        raise NotApplicable(NOT_APPLICABLE.format(f"Dense layer reads a {type(pooling).__name__}"))
    [(features, _)] = _layers.keras(model, [_inbound(pooling).name], image, target)
    with model.keras.scope():  # the logits' Dense: the model's own, or its copy without the softmax
        kernel = dense.get_weights()[0]
    return _cam(features, kernel[:, target], image.shape[:2])


def torch(model, image, target, params):
    """The classifier is the last Linear module; its input must equal the spatial mean of some
    module's output, found by hooking them all: the last such output gives the maps."""
    torch = frameworks.torch()
    net = model.torch
    linear = next((m for m in reversed(list(net.module.modules())) if is_kind(m, torch.nn.Linear)), None)
    if linear is None:
        raise NotApplicable(NOT_APPLICABLE.format("has no Linear layer"))
    classifier_input = []
    hook = None if net.scripted else linear.register_forward_hook(lambda _, inputs, __: classifier_input.append(inputs[0]))
    try:
        with torch.no_grad():
            _, outputs = _layers.run_recording(net, net.tensor(image[None]))
    finally:
        if hook:
            hook.remove()
    ordered = list(outputs.items())
    if net.scripted:  # the Linear's input is the output of the module run before it
        modules = [module for module, _ in ordered]
        classifier_input = [ordered[modules.index(linear) - 1][1]] if linear in modules[1:] else []
    pooled = classifier_input[-1].reshape(1, -1) if classifier_input else None
    maps = [output for module, output in ordered if pooled is not None and isinstance(output, torch.Tensor)
            and output.dim() == 4 and output.shape[1] == pooled.shape[1] and output[0, 0].numel() > 1
            and torch.allclose(output.mean((2, 3)), pooled, rtol=1e-5, atol=1e-6 * float(pooled.abs().max()))]
    if not maps:
        raise NotApplicable(NOT_APPLICABLE.format("classifier reads no global average of a layer's maps"))
    features = net.array(maps[-1][0]).transpose(1, 2, 0)
    return _cam(features, net.array(linear.weight[target]), image.shape[:2])


def _inbound(layer):
    """The layer whose output a single-input Keras layer reads."""
    return layer._inbound_nodes[0].inbound_layers


def _cam(features: np.ndarray, class_weights: np.ndarray, shape) -> np.ndarray:
    return _layers.upsample(features @ class_weights, shape)


METHOD = Method("cam", "CAM", Paper(
    "Zhou et al. 2016", "Learning Deep Features for Discriminative Localization", "https://arxiv.org/abs/1512.04150"),
    Needs.CONV_LAYER, {"keras": keras, "torch": torch})
