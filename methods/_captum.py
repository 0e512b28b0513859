"""captum attributions of a PyTorch model's logits (its head cut off: heatkit/model/heads.py),
returned as NHWC numpy arrays."""
from __future__ import annotations

import numpy as np

from heatkit.base.engine import gradient_batch


def attribute(model, algorithm: str, batch: np.ndarray, target, **kwargs) -> np.ndarray:
    """captum.attr.<algorithm> explaining logit `target` (one class, or one per image) for each
    image of an NHWC batch, in the engine's batches of gradient passes."""
    import captum.attr

    net = model.torch
    explainer = getattr(captum.attr, algorithm)(net.forward)
    size = gradient_batch(model)
    targets = np.broadcast_to(np.asarray(target), (len(batch),))
    parts = []
    for start in range(0, len(batch), size):
        inputs = net.tensor(batch[start:start + size]).requires_grad_()
        found = explainer.attribute(inputs, target=[int(t) for t in targets[start:start + size]], **kwargs)
        parts.append(net.array(found))
    return np.concatenate(parts).transpose(0, 2, 3, 1)
