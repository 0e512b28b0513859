"""CAM (Zhou et al. 2016), for models whose head is a global average of a layer's maps then one
linear layer: the maps A_k weighted by the class's weights, sum_k w_k,c A_k, upsampled (bilinear)
to the input. Not rectified: CAM's sign is part of its answer.

The head is found from what the model computes: the linear layer's input is followed back through
Dropout, Flatten and reshapes to a global average (a pooling layer, or a mean over height and
width written as a function), whose input gives the maps; a binary classifier's two logits
(heatkit/model/heads.py) weight them by -w and w.
"""
import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.methods import _layers, _recording
from heatkit.methods._entry import Method, Needs, Paper
from heatkit.model.torch_head import binary_logits, logits_graph, tracer
from heatkit.model.torch_net import is_kind
from heatkit.model.graph_patterns import is_spatial_mean

NOT_APPLICABLE = ("CAM weights a conv layer's maps by the classifier's weights, so the classifier must be one linear "
                  "layer on the global average of those maps; this model's {}")
PASS_MODULES = ("Dropout", "Dropout2d", "Flatten", "Identity")
PASS_METHODS = ("flatten", "view", "reshape", "squeeze", "contiguous")


def on_keras(model, image, target, params):
    tf = frameworks.tensorflow()
    layers = tf.keras.layers
    chain = model.keras.logits_model.layers
    binary = model.keras.head.binary  # a binary head's two logits: a last Dense of the pair (-1, 1)
    dense = chain[-2] if binary else chain[-1]
    if not isinstance(dense, layers.Dense):
        raise NotApplicable(NOT_APPLICABLE.format(f"last layer is a {type(dense).__name__}"))
    pooling = read = _inbound(dense)
    while isinstance(pooling, (layers.Dropout, layers.Flatten)):
        pooling = _inbound(pooling)
    if not (isinstance(pooling, layers.GlobalAveragePooling2D) or _keras_spatial_mean(pooling)):
        raise NotApplicable(NOT_APPLICABLE.format(f"Dense layer reads a {type(read).__name__}"))
    [(features, _)] = _layers.on_keras(model, [_inbound(pooling).name], image, target)
    with model.keras.scope():  # the logits' Dense: the model's own, or its copy without the softmax
        kernel = dense.get_weights()[0]
        if binary:
            kernel = kernel @ chain[-1].get_weights()[0]
    return _cam(features, kernel[:, target], image.shape[:2])


def on_torch(model, image, target, params):
    """On a traceable module, the maps are the input of the global average that the last linear
    layer reads; on a TorchScript Sequential, the output of the module before that average."""
    torch = frameworks.torch()
    net = model.torch
    if net.scripted:
        return _scripted(model, image, target)
    graph, maps_node, weight = net.once("cam head", lambda: _head(net))
    captured = {}

    class Capturing(torch.fx.Interpreter):
        def run_node(self, node):
            value = super().run_node(node)
            if node is maps_node:
                captured["maps"] = value
            return value

    with torch.no_grad():
        Capturing(graph).run(net.tensor(image[None]))
    features = net.array(captured["maps"][0]).transpose(1, 2, 0)
    return _cam(features, net.array(weight[target]), image.shape[:2])


def _head(net):
    """The logits graph, the node of the maps the classifier's global average reads, and the
    classifier's weight (classes, channels)."""
    torch = frameworks.torch()
    try:
        graph = logits_graph(net.module, net.head, net.cut, tracer((torch.nn.Linear,)))
    except NotApplicable as reason:
        raise NotApplicable(NOT_APPLICABLE.format(f"graph cannot be read: {reason}")) from None
    modules = dict(graph.named_modules())
    node = graph.graph.find_nodes(op="output")[0].args[0]
    pair = None
    if node.op == "call_module" and isinstance(modules[node.target], binary_logits()):
        pair, node = modules[node.target].weight, node.args[0]
    if node.op == "call_module" and is_kind(modules[node.target], torch.nn.Linear):
        weight, node = modules[node.target].weight, node.args[0]
    elif node.op == "call_function" and node.target is torch.nn.functional.linear:
        weight, node = _value(graph, node.args[1]), node.args[0]
    else:
        raise NotApplicable(NOT_APPLICABLE.format("output is not a linear layer's"))
    while _passes_on(node, modules, torch):
        node = node.args[0]
    if not _is_global_average(node, modules, torch):
        raise NotApplicable(NOT_APPLICABLE.format("classifier reads no global average of a layer's maps"))
    weight = weight.detach() if pair is None else pair.detach() @ weight.detach()
    return graph, node.args[0], weight


def _passes_on(node, modules, torch) -> bool:
    """A node that hands its input on unchanged at inference: Dropout, Flatten, a reshape."""
    if node.op == "call_module":
        return type(modules[node.target]).__name__ in PASS_MODULES
    if node.op == "call_method":
        return node.target in PASS_METHODS
    return node.op == "call_function" and node.target in (torch.flatten, torch.nn.functional.dropout,
                                                          torch.squeeze, torch.reshape)


def _is_global_average(node, modules, torch) -> bool:
    if node.op == "call_module":
        module = modules[node.target]
        return is_kind(module, torch.nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1))
    if node.op == "call_function" and node.target is torch.nn.functional.adaptive_avg_pool2d:
        return node.args[1] in (1, (1, 1)) if len(node.args) > 1 else node.kwargs.get("output_size") in (1, (1, 1))
    return is_spatial_mean(node)


def _value(graph, node):
    """A parameter read in the graph (get_attr)."""
    value = graph
    for part in node.target.split("."):
        value = getattr(value, part)
    return value


def _scripted(model, image, target):
    """A TorchScript Sequential, run module by module: the last Linear's input must equal the
    spatial mean of the output of some module before it."""
    torch = frameworks.torch()
    net = model.torch
    linear = next((m for m in reversed(list(net.module.modules())) if is_kind(m, torch.nn.Linear)), None)
    if linear is None:
        raise NotApplicable(NOT_APPLICABLE.format("has no Linear layer"))
    with torch.no_grad():
        _, outputs = _recording.run_recording(net, net.tensor(image[None]))
    ordered = list(outputs.items())
    modules = [module for module, _ in ordered]
    pooled = ordered[modules.index(linear) - 1][1].reshape(1, -1) if linear in modules[1:] else None
    maps = [output for module, output in ordered if pooled is not None and output.dim() == 4
            and output.shape[1] == pooled.shape[1] and output[0, 0].numel() > 1
            and torch.allclose(output.mean((2, 3)), pooled, rtol=1e-5, atol=1e-6 * float(pooled.abs().max()))]
    if not maps:
        raise NotApplicable(NOT_APPLICABLE.format("classifier reads no global average of a layer's maps"))
    features = net.array(maps[-1][0]).transpose(1, 2, 0)
    weight = linear.weight if not net.head.binary else torch.cat([-linear.weight, linear.weight])
    return _cam(features, net.array(weight[target]), image.shape[:2])


def _inbound(layer):
    """The layer whose output a single-input Keras layer reads."""
    return layer._inbound_nodes[0].inbound_layers


def _keras_spatial_mean(layer) -> bool:
    """tf.reduce_mean(x, axis=[1, 2]) on a Keras tensor: a TensorFlowOpLayer in graph mode, a
    TFOpLambda layer in eager mode."""
    if getattr(layer, "node_def", None) is not None and layer.node_def.op == "Mean":
        axis = layer.constants.get(1)
    elif getattr(layer, "symbol", "") == "math.reduce_mean":
        axis = layer._inbound_nodes[0].call_kwargs.get("axis")
    else:
        return False
    return axis is not None and sorted(int(a) % 4 for a in np.atleast_1d(axis)) == [1, 2]


def _cam(features: np.ndarray, class_weights: np.ndarray, shape) -> np.ndarray:
    return _layers.upsample(features @ class_weights, shape)


METHOD = Method("cam", "CAM", Paper(
    "Zhou et al. 2016", "Learning Deep Features for Discriminative Localization", "https://arxiv.org/abs/1512.04150"),
    Needs.CONV_LAYER, {"keras": on_keras, "torch": on_torch})
