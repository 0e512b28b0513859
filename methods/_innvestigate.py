"""innvestigate 2.1.2 analyzers on the model's Keras logits (the pre-softmax output).

Each analyzer is built once per model and settings, for any class (neuron_selection_mode
"index"), in the model's own graph and float type (heatkit/model/keras_net.py's KerasNet.scope).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np


def analyze(model, analyzer: str, batch: np.ndarray, target: int, **kwargs) -> np.ndarray:
    """innvestigate's `analyzer` explaining logit `target` for each image of an NHWC batch."""
    net = model.keras
    analyzed, prepare = net.analysis_model()
    dtype = "float32" if net.analyzed_in_float32 else None  # the float32 copy's (see KerasNet.analysis_model)
    key = [(name, tuple(value) if isinstance(value, list) else value) for name, value in sorted(kwargs.items())]
    instance = net.once(("innvestigate", analyzer, *key), lambda: _create(net, analyzed, analyzer, kwargs))
    with net.scope(dtype), _constants_kept_symbolic():  # innvestigate builds its graph on the first call
        return instance.analyze(batch if prepare is None else prepare(batch), neuron_selection=[target] * len(batch))


@contextmanager
def _constants_kept_symbolic():
    """Keras' documented internal switch that keeps the constant inputs of raw TensorFlow ops as
    tensors while a graph-mode model is built, instead of evaluating each in a session call of its
    own: innvestigate's LRP makes hundreds, and each copies the growing graph into the session
    (measured: 37 of 44 s for every method on a small Keras ResNet). The switch costs the analyzer
    models their get_config, which nothing here uses; innvestigate's analyzers draw no random numbers."""
    from keras.src.engine import base_layer_utils

    before = base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION
    base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION = True
    try:
        yield
    finally:
        base_layer_utils._UNSAFE_GRAPH_OP_LAYER_CREATION = before


def _create(net, analyzed, analyzer: str, kwargs: dict):
    """innvestigate's analyzer of the analysis model. Its model checks are off: innvestigate 2.1.2
    raises an empty NotImplementedError where a check means to warn (of a layer it has not tested,
    a Rescaling or a ReLU layer among them)."""
    import innvestigate

    return innvestigate.create_analyzer(analyzer, analyzed, neuron_selection_mode="index",
                                        allow_lambda_layers=net.trusted, disable_model_checks=True, **kwargs)
