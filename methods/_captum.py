"""captum attributions of a PyTorch model's logits (its head cut off: heatkit/model/heads.py),
returned as NHWC numpy arrays."""
from __future__ import annotations

import numpy as np


def attribute(model, algorithm: str, batch: np.ndarray, target, **kwargs) -> np.ndarray:
    """captum.attr.<algorithm> explaining logit `target` (one class, or one per image) for each
    image of an NHWC batch."""
    import captum.attr

    net = model.torch
    inputs = net.tensor(batch).requires_grad_()
    target = int(target) if np.ndim(target) == 0 else [int(t) for t in target]
    attribution = getattr(captum.attr, algorithm)(net.forward).attribute(inputs, target=target, **kwargs)
    return net.array(attribution).transpose(0, 2, 3, 1)
