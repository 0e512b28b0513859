"""innvestigate 2.1.2 analyzers on the model's Keras logits (the pre-softmax output)."""
from __future__ import annotations

import numpy as np

from core import frameworks


def analyze(model, analyzer: str, batch: np.ndarray, target: int, **kwargs) -> np.ndarray:
    """innvestigate's `analyzer` explaining logit `target` for each image of an NHWC batch."""
    tf = frameworks.tensorflow()
    import innvestigate
    from innvestigate.analyzer import Deconvnet, GuidedBackprop

    net = model.keras.logits_model
    seeded_with_logit = {"guided_backprop": GuidedBackprop, "deconvnet": Deconvnet}
    if analyzer in seeded_with_logit:
        # innvestigate 2.1.2 starts these two backward passes from the logit's value, which scales
        # the map by it (and flips it where the logit is negative). Springenberg et al. and Zeiler &
        # Fergus start from 1, as innvestigate's own Gradient does; so do we.
        base = seeded_with_logit[analyzer]
        starts_from_one = type(f"{base.__name__}FromOne", (base,), {"_head_mapping": lambda self, x: tf.ones_like(x)})
        instance = starts_from_one(net, neuron_selection_mode="index", **kwargs)
    else:
        instance = innvestigate.create_analyzer(analyzer, net, neuron_selection_mode="index", **kwargs)
    return instance.analyze(batch, neuron_selection=[target] * len(batch))
