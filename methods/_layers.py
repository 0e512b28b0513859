"""A layer's activations, and the target logit's gradient with respect to them, on either
framework, as (H', W', K) numpy arrays for one image; and the form every CAM method shares
(cam_method), where a method is one function of those arrays.

Layers are named as the user knows them: Keras layer names (a nested model's as outer/inner), or
PyTorch module paths (`layer4`, `layer3.1.conv2`). A create_model.py twin's modules carry its
Keras layers' names (heatkit/model/twins.py). PyTorch layers are read with forward hooks, which
TorchScript modules, run in C++, do not call (a TorchScript Sequential is run module by module
instead); a module called twice gives its last call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from heatkit.base import frameworks
from heatkit.base.contract import Several
from heatkit.base.errors import NotApplicable, UsageError
from heatkit.methods import _attention
from heatkit.methods._recording import graph_pass, run_recording, sequence_of
from heatkit.model.keras_net import layer_named, named_layers
from heatkit.model.torch_net import is_kind
from heatkit.model.twins import layer_modules


def conv_layers(model, framework: str) -> list[str]:
    """Names of the model's convolutional layers, input to output."""
    spec = model.card.get("twin", {}).get("spec")
    if spec is not None:
        return [entry["name"] for entry in spec if entry["layer"] == "conv2d"]
    if framework == "keras":
        tf = frameworks.tensorflow()
        return model.keras.once(("conv layers",), lambda: [name for name, layer in named_layers(model.keras.model)
                                                            if isinstance(layer, tf.keras.layers.Conv2D)])
    torch = frameworks.torch()
    return model.torch.once("conv layers", lambda: [name for name, module in _modules(model).items()
                                                    if is_kind(module, torch.nn.Conv2d)])


def _modules(model) -> dict:
    """The PyTorch module's submodules by name, listed once per model (three walks of a ResNet's
    tree took a millisecond of each CAM call)."""
    return model.torch.once("modules by name", lambda: dict(model.torch.module.named_modules()))


def target_layers(model, chosen: list[str] | None, framework: str) -> list[str]:
    """The layers a CAM method explains: those chosen in settings; by default, on a transformer
    the token layer before its last attention, on a create_model.py twin its last conv layer, and
    on any other network the output of its last block that still has a spatial grid (block_output)."""
    if framework == "torch" and model.torch.scripted:
        sequence_of(model.torch.module)  # NotApplicable unless a Sequential, whose modules can be run one by one
    tokens = _attention.default_layer(model.torch) if framework == "torch" and not chosen else None
    if tokens:
        return [tokens]
    names = conv_layers(model, framework)
    if not chosen and not names:
        raise NotApplicable("the model has no convolutional layer")
    if not chosen and not model.card.get("twin"):
        return [block_output(model, framework)]
    known = names if model.card.get("twin") else _all_layers(model, framework)
    for name in chosen or []:
        if name not in known:
            raise UsageError(f"gradcam.layers: {name!r} is not a layer of this model; its conv layers are "
                             f"{', '.join(names) or 'none'}")
    return chosen or names[-1:]


@dataclass(frozen=True)
class AtLayer:
    """What a CAM method combines into a map: a layer's activations and the target logit's
    gradients at them, (H', W', K) each, with the model, image and target it came from."""

    model: Any
    image: np.ndarray
    target: int
    name: str
    activations: np.ndarray
    gradients: np.ndarray


def cam_method(combine: Callable[[AtLayer], np.ndarray], backends: tuple[str, ...] = ("keras", "torch")) -> dict:
    """The contract's function, per framework, of a CAM whose map at a layer's resolution is
    `combine(at_layer)`: rectified and upsampled to the input, one map per layer in `gradcam.layers`
    (the default, the last conv layer), as pytorch-grad-cam's BaseCAM does."""
    def on(framework: str) -> Callable:
        def function(model, image, target, params):
            names = target_layers(model, params["layers"], framework)
            values = (on_keras if framework == "keras" else on_torch)(model, names, image, target)
            for name, (activations, _) in zip(names, values):
                if activations.shape[:2] == (1, 1):
                    raise NotApplicable(f"layer {name}'s maps are 1x1 at this input size, so every CAM there is "
                                        "constant; choose an earlier layer (gradcam.layers) or a larger --input-size")
            maps = {name: upsample(np.maximum(combine(AtLayer(model, image, target, name, *pair)), 0.0),
                                   image.shape[:2]) for name, pair in zip(names, values)}
            return next(iter(maps.values())) if len(maps) == 1 else Several(maps)
        return function
    return {framework: on(framework) for framework in backends}


def cam_modules(model, params: dict) -> set:
    """The modules a CAM method reads on PyTorch, for the run's prediction pass to record."""
    return {module_named(model, name) for name in target_layers(model, params["layers"], "torch")}


def on_keras(model, names: list[str], image: np.ndarray, target: int) -> list[tuple[np.ndarray, np.ndarray]]:
    values = model.keras.once(("layers", *names), lambda: _layer_gradients(model.keras, names))(image[None], target)
    return [(values[i][0], values[len(names) + i][0]) for i in range(len(names))]


def on_torch(model, names: list[str], image: np.ndarray, target: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The named modules' outputs, and the logit's gradients at them."""
    torch = frameworks.torch()
    wanted = {name: module_named(model, name) for name in names}
    found = graph_pass(model, image[None], set(wanted.values()))
    captured = {name: found.outputs[module] for name, module in wanted.items()}
    gradients = torch.autograd.grad(found.logits[0, target], list(captured.values()))
    last = {name: channels_last(wanted[name], captured[name]) for name in names}
    return [(_as_grid(model, captured[name][0], last[name]), _as_grid(model, gradient[0], last[name]))
            for name, gradient in zip(names, gradients)]


def _as_grid(model, value, last: bool) -> np.ndarray:
    """A layer's (C, H, W) maps (or (H, W, C) where `last`), or a transformer's (N, D) tokens, as
    (H', W', K): tokens on their patch grid, the class token dropped (pytorch-grad-cam's
    reshape_transform)."""
    array = model.torch.array(value)
    if array.ndim == 2:
        return _attention.tokens_as_grid(array, _attention.token_grid(model))
    return array if last else array.transpose(1, 2, 0)


def channels_last(module, output) -> bool:
    """Whether a module's 4-D output is (N, H, W, C), as Swin's stages and LayerNorms give it: its
    last axis, not its second, is the channel count of the module's last layer that has one (a
    convolution's or linear layer's outputs, a normalization's features)."""
    counts = [_channels(inner) for inner in module.modules()]
    count = next((count for count in reversed(counts) if count), None)
    return output.dim() == 4 and count is not None and output.shape[-1] == count != output.shape[1]


def _channels(module) -> int | None:
    for attribute in ("out_channels", "num_features", "out_features", "num_channels"):
        if isinstance(getattr(module, attribute, None), int):
            return getattr(module, attribute)
    shape = getattr(module, "normalized_shape", None)
    return shape[-1] if isinstance(shape, tuple) and shape else None


def block_output(model, framework: str) -> str:
    """The layer the CAM family explains by default: the last layer whose output is a spatial grid
    (both sides above 1, a global pooling's excluded), named by the deepest module or layer that
    gives it, which is a network's last block (ResNet's layer4[-1], pytorch-grad-cam's
    recommendation; a Swin's normalized features), not the last convolution inside it (timm's
    resnet18d zero-initializes that branch's BatchNorm, and every CAM there was 0). Found from one
    probe pass, once per model."""
    if framework == "keras":
        return model.keras.once(("block output",), lambda: _keras_block_output(model.keras))
    return model.torch.once("block output", lambda: _torch_block_output(model))


def _torch_block_output(model) -> str:
    torch = frameworks.torch()
    net = model.torch
    probe = net.tensor(np.zeros((1, *net.input_shape)))
    finished = []  # (module, output, its version) as each module finished: a block after the layers inside it
    if net.scripted:  # a Sequential, run module by module (no hooks in TorchScript)
        with torch.no_grad():
            finished = [(module, output, output._version) for module, output in run_recording(net, probe)[1].items()]
    else:
        hooks = [module.register_forward_hook(lambda module, _, output: finished.append((module, output,
                                                                                          getattr(output, "_version", 0))))
                 for module in net.module.modules() if module is not net.module]
        try:
            with torch.no_grad():
                net.forward(probe)
        finally:
            for hook in hooks:
                hook.remove()
    names = {module: name for name, module in net.module.named_modules()}
    pooled = (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d)
    grids = [(module, output, version) for module, output, version in finished if isinstance(output, torch.Tensor)
             and output.dim() == 4 and not isinstance(module, pooled) and min(_grid(module, output)) > 1]
    if not grids:
        raise NotApplicable(f"no layer of the model gives a spatial grid larger than 1x1 at its input size "
                            f"{net.input_shape[0]}x{net.input_shape[1]}; give a larger --input-size")
    # The modules that gave that tensor as it ended (an in-place addition and ReLU make a ResNet block's
    # output the very tensor its last BatchNorm gave, before they changed it), but an activation module,
    # which a block may call twice: the deepest of them is the block
    last, version = grids[-1][1], grids[-1][2]
    givers = [module for module, output, at in grids if output is last and at == version and
              type(module).__module__ != "torch.nn.modules.activation"]
    return max((names[module] for module in givers or [grids[-1][0]]), key=lambda name: name.count("."))


def _grid(module, output) -> tuple[int, int]:
    return tuple(output.shape[1:3]) if channels_last(module, output) else tuple(output.shape[2:4])


def _keras_block_output(net) -> str:
    tf = frameworks.tensorflow()
    pooled = (tf.keras.layers.GlobalAveragePooling2D, tf.keras.layers.GlobalMaxPooling2D)
    grids = [(name, layer) for name, layer in named_layers(net.model) if not isinstance(layer, pooled)
             and not isinstance(layer, tf.keras.layers.InputLayer) and _keras_grid(layer)]
    if not grids:
        raise NotApplicable("no layer of the model gives a spatial grid larger than 1x1")
    last = grids[-1][1].output
    return max((name for name, layer in grids if layer.output is last), key=lambda name: name.count("/"))


def _keras_grid(layer) -> bool:
    shape = layer.output_shape
    return isinstance(shape, tuple) and len(shape) == 4 and all(side is None or side > 1 for side in shape[1:3])


def module_named(model, name: str):
    """The PyTorch module of a layer name (a twin's modules carry its Keras layers' names)."""
    if "twin" in model.card:
        return layer_modules(model.torch.module, name)[-1]
    return _modules(model)[name]


def keras_output(model, name: str):
    """The output of the layer named `name` (outer/inner in a nested model) where the model's input
    reaches it: a nested model's layers also have an output in that model's own graph, cut off
    from the input (and a nested model's `output` is that one)."""
    tf = frameworks.tensorflow()
    layer = layer_named(model, name)
    outputs = [output for node in layer._inbound_nodes for output in tf.nest.flatten(node.output_tensors)]
    reached = [output for output in outputs if _reaches(output, model.inputs[0])]
    if not reached:
        raise UsageError(f"layer {name!r} does not depend on the model's input; choose a layer between input and "
                         "output")
    return reached[-1]  # a layer called twice: its last call


def _reaches(tensor, source) -> bool:
    """Whether `source` is among the tensors `tensor` is computed from."""
    seen, ops = set(), [tensor.op]
    while ops:
        op = ops.pop()
        if op is source.op:
            return True
        if op not in seen:
            seen.add(op)
            ops += [inner.op for inner in op.inputs]
    return False


def _layer_gradients(net, names: list[str]):
    """A function of (batch, class) giving the named layers' outputs, then the class logit's
    gradients with respect to them."""
    tf = frameworks.tensorflow()
    target = tf.compat.v1.placeholder(tf.int32, ())
    outputs = [keras_output(net.model, name) for name in names]
    gradients = tf.gradients(net.logits_model.output[:, target], outputs)
    return net.session.make_callable(outputs + gradients, feed_list=[net.model.inputs[0], target])


def _all_layers(model, framework: str) -> list[str]:
    if framework == "keras":
        return [name for name, _ in named_layers(model.keras.model)]
    return [name for name in _modules(model) if name]


def upsample(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A layer-resolution map at the input's resolution (bilinear, pixel centers aligned, as
    captum's and torch's interpolate), as the contract's float32: two matrix products, the
    columns' first (taken second, the transposed operand made numpy's product ten times slower).
    skimage's resize took a fiftieth of Grad-CAM's call on a ResNet-18."""
    return (bilinear(cam.shape[0], shape[0]) @ (cam @ bilinear(cam.shape[1], shape[1]).T)).astype(np.float32)


def bilinear(size: int, resized: int, corners_aligned: bool = False) -> np.ndarray:
    """(resized, size) matrix of bilinear resizing along one axis: with pixel centers aligned,
    the edge value beyond the outer centers, or with the corners aligned (torch's
    UpsamplingBilinear2d, pytorch-grad-cam's Score-CAM masks)."""
    if corners_aligned:
        position = np.linspace(0.0, size - 1, resized)
    else:
        position = np.clip((np.arange(resized) + 0.5) * size / resized - 0.5, 0.0, size - 1)
    below = np.minimum(np.floor(position).astype(int), max(size - 2, 0))
    above = np.minimum(below + 1, size - 1)
    fraction = position - below
    matrix = np.zeros((resized, size))
    np.add.at(matrix, (np.arange(resized), below), 1.0 - fraction)
    np.add.at(matrix, (np.arange(resized), above), fraction)
    return matrix
