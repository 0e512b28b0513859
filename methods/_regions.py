"""Feature masks: the regions a perturbation method switches as one feature, given by a spec
("pixels", "patch:N" or "superpixels") as an (H, W) map of region numbers 0..R-1."""
from __future__ import annotations

import numpy as np

# SLIC's settings for "superpixels" where a method has none of its own: KernelSHAP's defaults
SLIC = {"n_segments": 50, "compactness": 0.1, "sigma": 1.0}


def labels(image: np.ndarray, mask: str, slic: dict = SLIC) -> np.ndarray:
    """Region numbers of an (H, W, C) image's pixels: one per pixel (its channels together), N x N
    squares from the top left (the last row and column of squares cut by the edges), or SLIC
    superpixels."""
    height, width = image.shape[:2]
    kind, _, size = mask.partition(":")
    if kind == "pixels":
        return np.arange(height * width).reshape(height, width)
    if kind == "patch":
        side = int(size)
        return (np.arange(height) // side)[:, None] * -(-width // side) + (np.arange(width) // side)[None, :]
    return superpixels(image, **slic)


def count(shape: tuple[int, int, int], mask: str, slic: dict = SLIC) -> int | None:
    """The regions of a mask on an input of `shape`, without an image: None for superpixels, which
    only the image tells (about n_segments)."""
    height, width, _ = shape
    kind, _, size = mask.partition(":")
    if kind == "pixels":
        return height * width
    if kind == "patch":
        return -(-height // int(size)) * -(-width // int(size))
    return None


def superpixels(image: np.ndarray, n_segments: int, compactness: float, sigma: float) -> np.ndarray:
    from skimage.segmentation import slic

    gray = image.shape[-1] == 1
    segments = slic(image[..., 0] if gray else image, n_segments=n_segments, compactness=compactness, sigma=sigma,
                    start_label=0, channel_axis=None if gray else -1)
    return np.unique(segments, return_inverse=True)[1].reshape(segments.shape)  # numbered 0..R-1 without gaps
