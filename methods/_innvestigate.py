"""innvestigate 2.1.2 analyzers on the model's Keras logits (the pre-softmax output).

Each analyzer is built once per model and settings, for any class (neuron_selection_mode
"index"), in the model's own graph and float type (heatkit/model/keras_net.py's KerasNet.scope).
"""
from __future__ import annotations

import numpy as np

from heatkit.base import frameworks


def analyze(model, analyzer: str, batch: np.ndarray, target: int, **kwargs) -> np.ndarray:
    """innvestigate's `analyzer` explaining logit `target` for each image of an NHWC batch."""
    net = model.keras
    instance = net.once(("innvestigate", analyzer, *sorted(kwargs.items())), lambda: _create(net, analyzer, kwargs))
    with net.scope():  # innvestigate builds its graph on the first call
        return instance.analyze(batch, neuron_selection=[target] * len(batch))


def _create(net, analyzer: str, kwargs: dict):
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
        return starts_from_one(net.logits_model, neuron_selection_mode="index", allow_lambda_layers=net.trusted,
                               **kwargs)
    return innvestigate.create_analyzer(analyzer, net.logits_model, neuron_selection_mode="index",
                                        allow_lambda_layers=net.trusted, **kwargs)
