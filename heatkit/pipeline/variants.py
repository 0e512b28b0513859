"""Altered copies of a model for the sanity checks: layers re-initialized, or weights noised.

A change works on a framework-neutral view of the model's weights (Weights): each weighted layer
by name, its arrays, and fresh arrays from the layer's own initializer. A Keras model's copy is a
clone in a graph of its own, with its PyTorch twin (where it has one) built from it; a PyTorch
model's copy is a deep copy of its module. Copies live in memory; the original is never touched.
"""
from __future__ import annotations

import copy
import re
from typing import Callable

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.model.keras_net import layer_named, named_layers
from heatkit.model.twins import twin_of

# keras.applications' blocks by their layers' names: ResNet's conv2_block1_, EfficientNet's block1a_,
# MobileNetV2's block_1_, VGG's block1_, ConvNeXt's ..._stage_0_block_0_
KERAS_BLOCK = re.compile(r"^(.*?block_?\d+[a-z]?)_")


def weighted_layers(model) -> list[str]:
    """Names of the model's layers with weights of their own, from the output down to the input:
    Keras layer names where the model has a Keras version, else PyTorch module paths."""
    return list(reversed(_weights(model).names()))


def blocks(model, by: str = "block") -> list[tuple[str, list[str]]]:
    """The sanity check's units, from the output down, each a name and its weighted layers: with
    `by` "layer" one each; with "block", as Adebayo et al. randomise a network, its blocks: a
    torchvision or timm block (the deepest module that is an element of a Sequential or ModuleList
    and holds modules of its own: layer1.0 of a ResNet, stages.0.blocks.1 of a ConvNeXt,
    features.1.0 of an EfficientNet), a Keras block by its name (conv2_block1_, block1a_,
    block_1_), and a normalisation layer outside any block with the layer before it (a ResNet's
    conv1 and bn1)."""
    weights = _weights(model)
    names = weights.names()
    if by == "layer":
        return [(name, [name]) for name in reversed(names)]
    found: list[tuple[str, list[str]]] = []
    for name in names:
        block = weights.block_of(name)
        if found and (block == found[-1][0] or block == name and weights.is_norm(name)):
            found[-1][1].append(name)
        else:
            found.append((block, [name]))
    return list(reversed(found))


def variant(model, change: Callable):
    """A copy of `model` after change(weights), built in memory."""
    from heatkit.model import Model
    from heatkit.model.keras_net import KerasNet
    from heatkit.model.torch_net import TorchNet

    options = dict(evaluate_with=model.evaluate_with, preprocess=model.preprocess, device=model.device,
                   trust=model.trust)
    if "keras" not in model.frameworks:
        module = copy.deepcopy(model.torch.module)
        change(TorchWeights(module))
        return Model(module, **options, input_size=list(model.input_shape[:2]))
    tf = frameworks.tensorflow()
    with model.keras.scope():
        weights = model.keras.model.get_weights()
    graph, session = frameworks.inference_graph()  # the copy's own: the original's graph must not grow with it
    with frameworks.keras_graph(graph, session, model.keras.dtype):
        keras_copy = tf.keras.models.clone_model(model.keras.model)
        keras_copy.set_weights(weights)
        change(KerasWeights(keras_copy))
        twin = twin_of(keras_copy)[0] if "torch" in model.frameworks else None
    nets = {"keras": KerasNet(keras_copy, graph, session, model.keras.trusted)}
    if twin is not None:
        nets["torch"] = TorchNet(twin, tuple(model.input_shape), device=model.torch_device, name="the altered twin")
    altered = Model(nets, **options, input_size=model.input_size)
    altered.card = {key: model.card[key] for key in ("input_shape", "num_classes", "class_names") if key in model.card}
    return altered


def reinitializer(names: list[str], initializer: str, std: float, seed: int) -> Callable:
    """A change that re-draws the named layers' weights: with each layer's own initializers
    (seeded), or from a truncated normal of standard deviation `std` (biases become 0)."""
    def change(weights):
        for offset, name in enumerate(names):
            rng = np.random.default_rng([seed, offset])
            if initializer == "truncated_normal":
                fresh = [_truncated_normal(rng, values.shape, std) if index == 0 else np.zeros_like(values)
                         for index, values in enumerate(weights.get(name))]
            else:
                fresh = weights.initial(name, seed + offset)
            weights.set(name, fresh)
    return change


def noiser(level: float, seed: int) -> Callable:
    """A change that adds zero-mean Gaussian noise to every weight array, with standard deviation
    `level` times that array's own."""
    def change(weights):
        rng = np.random.default_rng(seed)
        for name in weights.names():
            weights.set(name, [w + rng.normal(0.0, level * w.std(), w.shape) for w in weights.get(name)])
    return change


class KerasWeights:
    """A Keras model's weighted layers, by name (outer/inner inside a nested model), within its
    graph's scope. A layer's weights are what it learned: a BatchNormalization's moving statistics
    are left as they are, as PyTorch keeps them in buffers, not parameters (noise could make a
    variance negative)."""

    def __init__(self, keras_model):
        self.model = keras_model

    def names(self) -> list[str]:
        tf = frameworks.tensorflow()
        return [name for name, layer in named_layers(self.model)
                if layer.weights and not isinstance(layer, tf.keras.Model)]

    def block_of(self, name: str) -> str:
        """The block a layer's name puts it in (keras.applications' conv2_block1_1_conv is in
        conv2_block1), or the name itself."""
        found = KERAS_BLOCK.match(name)
        return found.group(1) if found else name

    def is_norm(self, name: str) -> bool:
        return "Normalization" in type(layer_named(self.model, name)).__name__

    def get(self, name: str) -> list[np.ndarray]:
        layer = layer_named(self.model, name)
        return [values for values, (_, attribute) in zip(layer.get_weights(), _held(layer)) if _learned(attribute)]

    def set(self, name: str, arrays: list[np.ndarray]) -> None:
        layer = layer_named(self.model, name)
        given = iter(arrays)
        layer.set_weights([next(given) if _learned(attribute) else values
                           for values, (_, attribute) in zip(layer.get_weights(), _held(layer))])

    def initial(self, name: str, seed: int) -> list[np.ndarray]:
        """Fresh weights from the layer's own initializers, seeded: each weight's is the one named
        after the attribute that holds it (kernel_initializer, gamma_initializer,
        depthwise_initializer for depthwise_kernel, ...)."""
        tf = frameworks.tensorflow()
        layer, fresh = layer_named(self.model, name), []
        session = tf.compat.v1.keras.backend.get_session()
        for (weight, attribute), values in zip(_held(layer), layer.get_weights()):
            if not _learned(attribute):
                continue
            initializer = getattr(layer, f"{attribute}_initializer", None) or \
                getattr(layer, f"{attribute.removesuffix('_kernel')}_initializer", None)
            if initializer is None:
                raise UsageError(f"sanity: layer {name} ({type(layer).__name__}) keeps no initializer for its weight "
                                 f"{weight.name}; use --set sanity.initializer='truncated_normal'")
            config = initializer.get_config()
            if "seed" in config:
                config["seed"] = seed
            fresh.append(session.run(type(initializer).from_config(config)(values.shape, dtype=values.dtype.name)))
        return fresh


def _held(layer) -> list[tuple[object, str]]:
    """(weight, the name of the layer's attribute that holds it: kernel, bias, gamma, moving_mean, ...)
    for each of the layer's weights, in order."""
    attributes = {id(value): attribute for attribute, value in vars(layer).items()
                  if any(value is weight for weight in layer.weights)}
    return [(weight, attributes.get(id(weight), "")) for weight in layer.weights]


def _learned(attribute: str) -> bool:
    return not attribute.startswith("moving_")


class TorchWeights:
    """A PyTorch module's modules with parameters of their own, by module path."""

    def __init__(self, module):
        self.torch = frameworks.torch()
        self.all = dict(module.named_modules())  # by path; the root's is ""
        self.modules = {name: m for name, m in self.all.items() if list(m.named_parameters(recurse=False))}

    def names(self) -> list[str]:
        return list(self.modules)

    def block_of(self, name: str) -> str:
        """The deepest module holding this one that is an element of a Sequential or ModuleList
        and holds modules of its own (not itself a Sequential), or the name itself."""
        containers = (self.torch.nn.Sequential, self.torch.nn.ModuleList)
        parts, block = name.split("."), name
        for end in range(1, len(parts)):
            prefix, parent = ".".join(parts[:end]), ".".join(parts[:end - 1])
            module = self.all[prefix]
            if isinstance(self.all[parent], containers) and not isinstance(module, containers) and \
                    any(True for _ in module.children()):
                block = prefix
        return block

    def is_norm(self, name: str) -> bool:
        return "Norm" in type(self.modules[name]).__name__

    def get(self, name: str) -> list[np.ndarray]:
        return [p.detach().cpu().numpy() for _, p in self.modules[name].named_parameters(recurse=False)]

    def set(self, name: str, arrays: list[np.ndarray]) -> None:
        with self.torch.no_grad():
            for (_, parameter), values in zip(self.modules[name].named_parameters(recurse=False), arrays):
                parameter.copy_(self.torch.from_numpy(np.asarray(values, dtype=values.dtype)))

    def initial(self, name: str, seed: int) -> list[np.ndarray]:
        """Fresh weights as PyTorch initializes the module (its reset_parameters, seeded; in
        TorchScript, which keeps none, nn.Linear's and nn.Conv2d's default: Kaiming uniform weights,
        biases uniform in +-1/sqrt(fan in), and ones and zeros for a vector layer as BatchNorm)."""
        torch = self.torch
        module = self.modules[name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if hasattr(module, "reset_parameters"):
                fresh = copy.deepcopy(module)
                fresh.reset_parameters()
                return [p.detach().cpu().numpy() for _, p in fresh.named_parameters(recurse=False)]
            arrays = dict(module.named_parameters(recurse=False))
            weight = arrays.get("weight")
            fan_in = weight[0].numel() if weight is not None and weight.dim() > 1 else 1
            fresh = []
            for key, parameter in arrays.items():
                values = torch.empty_like(parameter)
                if parameter.dim() > 1:
                    torch.nn.init.kaiming_uniform_(values, a=5 ** 0.5)
                elif weight is not None and weight.dim() > 1:
                    torch.nn.init.uniform_(values, -fan_in ** -0.5, fan_in ** -0.5)
                else:
                    values.fill_(1.0 if key == "weight" else 0.0)
                fresh.append(values.detach().cpu().numpy())
            return fresh


def _weights(model):
    """The view of the weights a change works on, of the framework the variants are made in."""
    if "keras" in model.frameworks:
        return KerasWeights(model.keras.model)
    return TorchWeights(model.torch.module)


def _truncated_normal(rng, shape, std: float) -> np.ndarray:
    values = rng.normal(0.0, std, shape)
    outside = np.abs(values) > 2 * std
    while outside.any():  # redraw beyond two standard deviations, as Keras' TruncatedNormal does
        values[outside] = rng.normal(0.0, std, outside.sum())
        outside = np.abs(values) > 2 * std
    return values
