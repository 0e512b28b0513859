"""The center-pixel model's weights and its ground truth, in plain numpy, and the region
model's: the same construction with a square of pixels in the center pixel's place.

One Dense layer (then an optional ReLU, then softmax) over the flattened image. With
K = num_classes and p = (K-1) * x_center (the region's mean, on the region model), the deciding
pixels' weights and the biases give

    logit_j = alpha * (2*p*j - j^2) + S(x) + B,    S(x) = sum of w_i * x_i over the other pixels

S and B are the same for every class, so they cancel in the softmax: the probabilities are
softmax_j(-alpha * (j - p)^2), a function of the deciding pixels alone, peaking at j = p. The
logits, and so their gradients, depend on every pixel through the seeded random w_i.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CenterPixelWeights:
    kernel: np.ndarray  # (H*W, K) float64: Dense weights, rows in row-major pixel order
    bias: np.ndarray  # (K,) float64
    image_size: int
    relu: bool


def build_weights(image_size: int, num_classes: int, alpha: float, relu: bool,
                  weight_seed: int, noise_weight_scale: float,
                  deciding: np.ndarray | None = None) -> CenterPixelWeights:
    """`deciding`: the (H, W) bool mask of the pixels whose mean sets the class; None: the center."""
    pixels = image_size * image_size
    deciding_pixels = np.flatnonzero(deciding) if deciding is not None else pixels // 2
    levels = num_classes - 1
    classes = np.arange(num_classes, dtype=np.float64)

    # Non-center weights on the scale of the center's (2 * alpha * levels * j, j ~ levels / 2), so
    # that a gradient map of any logit looks like noise over the whole image.
    rng = np.random.default_rng(weight_seed)
    noise = rng.normal(0.0, noise_weight_scale * alpha * levels**2, pixels)
    noise[deciding_pixels] = 0.0

    kernel = np.repeat(noise[:, None], num_classes, axis=1)
    kernel[deciding_pixels] = 2.0 * alpha * levels * classes / np.size(deciding_pixels)
    bias = -alpha * classes**2
    if relu:
        # The smallest pre-activation over all images in [0, 1] is then 1: the ReLU never clips.
        bias += np.maximum(0.0, -noise).sum() + alpha * levels**2 + 1.0
    return CenterPixelWeights(kernel, bias, image_size, relu)
