"""captum attributions of a PyTorch model's logits (its head cut off: heatkit/model/heads.py),
returned as NHWC numpy arrays."""
from __future__ import annotations

import numpy as np


def attribute(model, algorithm: str, batch: np.ndarray, target: int, **kwargs) -> np.ndarray:
    """captum.attr.<algorithm> explaining logit `target` for each image of an NHWC batch."""
    import captum.attr

    net = model.torch
    inputs = net.tensor(batch).requires_grad_()
    attribution = getattr(captum.attr, algorithm)(net.forward).attribute(inputs, target=target, **kwargs)
    return net.array(attribution).transpose(0, 2, 3, 1)
