"""Altered copies of a model for the sanity checks: layers re-initialized, or weights noised.

A copy is saved with its PyTorch twin (where the model has one) into a scratch folder and
loaded like any model; the original files are never touched.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from heatkit.base import frameworks
from heatkit.model.twins import twin_of


def weighted_layers(model) -> list[str]:
    """Names of the Keras layers with weights, from the output down to the input."""
    return [layer.name for layer in reversed(model.keras.model.layers) if layer.weights]


def variant(model, folder: Path, change: Callable, label: str):
    """A copy of `model` after change(keras_model), loaded from `folder`/<label>."""
    from heatkit.model import Model

    tf = frameworks.tensorflow()
    target = folder / label
    target.mkdir(parents=True)
    path = target / "model.h5"
    with model.keras.scope():
        weights = model.keras.model.get_weights()
    graph = tf.Graph()  # the copy's own, so that the original's graph does not grow with every variant
    with frameworks.session(graph) as session, frameworks.keras_graph(graph, session, model.keras.dtype):
        copy = tf.keras.models.clone_model(model.keras.model)
        copy.set_weights(weights)
        change(copy)
        copy.save(path, save_format="h5")
        twin, arguments = twin_of(copy) if "torch" in model.frameworks else (None, None)
    if twin is not None:
        frameworks.torch().save(twin.state_dict(), target / "model.pt")
        card = {"twin": arguments, "input_shape": list(model.input_shape),
                "num_classes": model.num_classes, "class_names": model.card.get("class_names")}
        (target / "model.json").write_text(json.dumps(card))
    return Model(path, model.evaluate_with, model.engine_options, model.preprocess, model.device, model.trust,
                 model.input_size)


def reinitializer(names: list[str], initializer: str, std: float, seed: int) -> Callable:
    """A change that re-draws the named layers' weights: with each layer's own initializers
    (seeded), or from a truncated normal of standard deviation `std` (biases become 0)."""
    def change(keras_model):
        for offset, name in enumerate(names):
            layer = keras_model.get_layer(name)
            rng = np.random.default_rng([seed, offset])
            if initializer == "truncated_normal":
                fresh = [_truncated_normal(rng, weights.shape, std) if index == 0 else np.zeros_like(weights)
                         for index, weights in enumerate(layer.get_weights())]
            else:
                fresh = _own_initializers(layer, seed + offset)
            layer.set_weights(fresh)
    return change


def noiser(level: float, seed: int) -> Callable:
    """A change that adds zero-mean Gaussian noise to every weight array, with standard deviation
    `level` times that array's own."""
    def change(keras_model):
        rng = np.random.default_rng(seed)
        for layer in keras_model.layers:
            layer.set_weights([w + rng.normal(0.0, level * w.std(), w.shape) for w in layer.get_weights()])
    return change


def _truncated_normal(rng, shape, std: float) -> np.ndarray:
    values = rng.normal(0.0, std, shape)
    outside = np.abs(values) > 2 * std
    while outside.any():  # redraw beyond two standard deviations, as Keras' TruncatedNormal does
        values[outside] = rng.normal(0.0, std, outside.sum())
        outside = np.abs(values) > 2 * std
    return values


def _own_initializers(layer, seed: int) -> list[np.ndarray]:
    tf = frameworks.tensorflow()
    session = tf.compat.v1.keras.backend.get_session()
    fresh = []
    for weights, attribute in zip(layer.get_weights(), ("kernel_initializer", "bias_initializer")):
        initializer = getattr(layer, attribute)
        config = initializer.get_config()
        if "seed" in config:
            config["seed"] = seed
        tensor = type(initializer).from_config(config)(weights.shape, dtype=weights.dtype.name)
        fresh.append(session.run(tensor))
    return fresh
