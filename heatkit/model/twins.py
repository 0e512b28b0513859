"""PyTorch twins of Keras models: the same layers, in the same order, with the same weights.

A twin is an nn.Sequential built from a spec, a list of plain dicts saved in the model's card,
so its .pt file is a state dict and loading it runs no pickled code. Each module is named
after the Keras layer it mirrors (a Conv2D or Dense with a ReLU becomes two modules, both
named after the layer), which is how methods find a layer on either framework.
Supported: Flatten, Dense, Conv2D (stride 1, or padding "valid" without dilation), ReLU, GlobalAveragePooling2D,
MaxPooling2D, AveragePooling2D, Dropout (the identity at inference), and a final softmax.
"""
from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import UsageError


def spec_of(keras_model) -> list[dict]:
    """The twin's layers for a Keras chain model, up to the logits (a final softmax is left out)."""
    tf = frameworks.tensorflow()
    layers, activations = tf.keras.layers, tf.keras.activations
    spec: list[dict] = []
    chain = [layer for layer in keras_model.layers if not isinstance(layer, layers.InputLayer)]
    if chain and isinstance(chain[-1], layers.Activation) and chain[-1].activation is activations.softmax:
        chain = chain[:-1]
    for layer in chain:
        name, activation = layer.name, getattr(layer, "activation", None)
        if isinstance(layer, layers.Flatten):
            spec.append({"layer": "flatten", "name": name, "shape": list(layer.input_shape[1:])})
        elif isinstance(layer, layers.Dense):
            spec.append({"layer": "dense", "name": name, "inputs": int(layer.input_shape[-1]), "units": layer.units,
                         "bias": layer.use_bias})
        elif isinstance(layer, layers.Conv2D) and type(layer) is layers.Conv2D:
            if layer.strides != (1, 1) and (layer.padding != "valid" or layer.dilation_rate != (1, 1)) \
                    or layer.padding == "same" and any(k % 2 == 0 for k in layer.kernel_size):
                raise UsageError(f"layer {name}: a PyTorch twin needs stride 1 with odd kernels, or padding 'valid'")
            spec.append({"layer": "conv2d", "name": name, "in": int(layer.input_shape[-1]), "out": layer.filters,
                         "kernel": list(layer.kernel_size), "stride": list(layer.strides),
                         "dilation": list(layer.dilation_rate), "padding": layer.padding, "bias": layer.use_bias})
        elif isinstance(layer, layers.GlobalAveragePooling2D):
            spec.append({"layer": "global_average", "name": name})
        elif isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)) and layer.padding == "valid":
            kind = "max_pool" if isinstance(layer, layers.MaxPooling2D) else "average_pool"
            spec.append({"layer": kind, "name": name, "size": list(layer.pool_size), "stride": list(layer.strides)})
        elif isinstance(layer, layers.Dropout):
            continue
        elif not isinstance(layer, (layers.ReLU, layers.Activation)):
            raise UsageError(f"layer {name} ({type(layer).__name__}) has no PyTorch twin")
        if activation is activations.relu or isinstance(layer, layers.ReLU):
            spec.append({"layer": "relu", "name": name})
        elif activation not in (None, activations.linear):
            raise UsageError(f"layer {name}: activation {activation.__name__} has no PyTorch twin")
    return spec


def build(spec: list[dict], dtype: str = "float64"):
    """The twin's nn.Sequential, in the Keras model's float type, with its weights still to be copied."""
    torch = frameworks.torch()
    nn, modules = torch.nn, []
    for entry in spec:
        kind, kwargs = entry["layer"], {"dtype": getattr(torch, dtype)}
        if kind == "flatten":
            module = nn.Flatten()
        elif kind == "dense":
            module = dense_type()(entry["inputs"], entry["units"], bias=entry["bias"], **kwargs)
        elif kind == "conv2d":
            padding = "same" if entry["padding"] == "same" else 0
            module = nn.Conv2d(entry["in"], entry["out"], tuple(entry["kernel"]), tuple(entry["stride"]), padding,
                               tuple(entry["dilation"]), bias=entry["bias"], **kwargs)
        elif kind == "relu":
            module = nn.ReLU()
        elif kind == "global_average":
            module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        elif kind == "max_pool":
            module = nn.MaxPool2d(tuple(entry["size"]), tuple(entry["stride"]))
        else:
            module = nn.AvgPool2d(tuple(entry["size"]), tuple(entry["stride"]))
        modules.append((f"{len(modules)}_{entry['name']}", module))
    return nn.Sequential(OrderedDict(modules)).eval()


@functools.cache
def dense_type():
    """nn.Linear that adds its bias after the matmul, as Keras' Dense does. nn.Linear's fused addmm
    accumulates the products onto the bias; with the center-pixel model's ~1e10 bias that rounding
    moved probabilities by ~1e-8, this order by ~1e-12."""
    torch = frameworks.torch()

    class Dense(torch.nn.Linear):
        def forward(self, x):
            return torch.nn.functional.linear(x, self.weight) + (0 if self.bias is None else self.bias)

    return Dense


def twin_of(keras_model):
    """The PyTorch twin of a Keras chain model, weights copied, and the arguments that rebuild it
    (its spec and float type), which its card keeps."""
    torch = frameworks.torch()
    spec, dtype = spec_of(keras_model), keras_model.inputs[0].dtype.name
    twin = build(spec, dtype)
    with torch.no_grad():
        for entry, module in zip(spec, twin.children()):
            if entry["layer"] not in ("dense", "conv2d"):
                continue
            kernel, *bias = keras_model.get_layer(entry["name"]).get_weights()
            if entry["layer"] == "dense":
                kernel = _rows_in_chw_order(kernel, spec, entry).T
            else:
                kernel = kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            if bias:
                module.bias.copy_(torch.from_numpy(bias[0]))
    return twin, {"spec": spec, "dtype": dtype}


def layer_modules(twin, name: str) -> list:
    """The twin's modules that mirror Keras layer `name`, in order (a Conv2D with a ReLU gives two)."""
    return [module for key, module in twin.named_children() if key.split("_", 1)[1] == name]


def _rows_in_chw_order(kernel: np.ndarray, spec: list[dict], dense: dict) -> np.ndarray:
    """Keras flattens (H, W, C) and PyTorch (C, H, W): a Dense after a Flatten of a feature map
    takes its rows in PyTorch's order."""
    before = spec[: spec.index(dense)]
    flatten = next((entry for entry in reversed(before) if entry["layer"] == "flatten"), None)
    if flatten is None or len(flatten["shape"]) != 3 or any(e["layer"] == "dense" for e in before[before.index(flatten):]):
        return kernel
    height, width, channels = flatten["shape"]
    return kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3).reshape(kernel.shape)
