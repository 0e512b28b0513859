"""innvestigate 2.1.2 analyzers on the model's Keras logits (the pre-softmax output).

Each analyzer is built once per model and settings, for any class (neuron_selection_mode
"index"), in the model's own graph and float type (heatkit/model/keras_net.py's KerasNet.scope).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from heatkit.base import frameworks


def analyze(model, analyzer: str, batch: np.ndarray, target: int, **kwargs) -> np.ndarray:
    """innvestigate's `analyzer` explaining logit `target` for each image of an NHWC batch."""
    net = model.keras
    analyzed, prepare = net.analysis_model(lrp=analyzer.startswith("lrp"))
    instance = net.once(("innvestigate", analyzer, *sorted(kwargs.items())),
                        lambda: _create(net, analyzed, analyzer, kwargs))
    with net.scope(), _constants_kept_symbolic():  # innvestigate builds its graph on the first call
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
    tf = frameworks.tensorflow()
    import innvestigate
    from innvestigate.analyzer import Deconvnet, GuidedBackprop

    seeded_with_logit = {"guided_backprop": GuidedBackprop, "deconvnet": Deconvnet}
    if analyzer in seeded_with_logit:
        # innvestigate 2.1.2 starts these two backward passes from the logit's value, which scales
        # the map by it (and flips it where the logit is negative). Springenberg et al. and Zeiler &
        # Fergus start from 1, as innvestigate's own Gradient does; so do we.
        base = seeded_with_logit[analyzer]
        starts_from_one = type(f"{base.__name__}FromOne", (base,), {"_head_mapping": lambda self, x: tf.ones_like(x)})
        return starts_from_one(analyzed, neuron_selection_mode="index", allow_lambda_layers=net.trusted,
                               disable_model_checks=True, **kwargs)
    return innvestigate.create_analyzer(analyzer, analyzed, neuron_selection_mode="index",
                                        allow_lambda_layers=net.trusted, disable_model_checks=True, **kwargs)
