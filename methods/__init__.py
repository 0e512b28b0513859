"""Attribution methods, one module each, all behind one contract (heatkit/base/contract.py):

    function(model, image, target, params) -> float32 array (H, W)

`model` is a heatkit.model.Model, `image` one preprocessed input (H, W, C) in the model's
input scale, `target` the class explained, `params` the method's settings dict. The map is
raw: normalizing is for plotting only. A gradient-family module has one such function per
framework, `on_keras` (innvestigate) and `on_torch`. A method that can take several images at once
also declares `function(model, images, targets, params) -> float32 (N, H, W)`, one target per
image, and its one-image function is that batch of one (_entry.one_image). Each module declares
its registry entry and its settings (methods/_entry.py); methods/registry.py lists them all.
They are heatkit.methods, installed as such and, in a checkout, through the link heatkit/methods;
imported as a top-level `methods` they would be a second copy with a registry of its own.
"""
import numpy as np

if __name__ != "heatkit.methods":
    raise ImportError(f"import heatkit.methods, not {__name__}: one registry of methods, under one name")


def per_channel(value, image: np.ndarray) -> np.ndarray:
    """A pixel value in the model's input space (one value, or one a channel, as the run gives a
    PixelValue setting) as one value for each of the image's channels."""
    return np.broadcast_to(np.asarray(value, dtype=np.float64).reshape(-1), image.shape[-1:])


def channel_sum(attribution: np.ndarray) -> np.ndarray:
    """An (H, W, C) attribution as the contract's float32 (H, W) map."""
    return attribution.sum(axis=-1).astype(np.float32)
