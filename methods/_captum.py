"""captum attributions of a PyTorch model's logits (its head cut off: heatkit/model/heads.py),
returned as NHWC numpy arrays."""
from __future__ import annotations

import numpy as np

from heatkit.base.engine import in_gradient_batches


def attribute(model, algorithm: str, batch: np.ndarray, target, **kwargs) -> np.ndarray:
    """captum.attr.<algorithm> explaining logit `target` (one class, or one per image) for each
    image of an NHWC batch, in the engine's batches of gradient passes."""
    import captum.attr

    net = model.torch
    explainer = getattr(captum.attr, algorithm)(net.forward)

    def attributions(images, targets):
        inputs = net.tensor(images).requires_grad_()
        return net.array(explainer.attribute(inputs, target=[int(t) for t in targets], **kwargs))
    return in_gradient_batches(model, batch, target, attributions)
