"""The center-pixel CNN's weights, in plain numpy: the center-pixel model with convolutional layers.

    conv1 (3x3, 2 filters, ReLU): c0 = x, the image itself (x >= 0: the ReLU is the identity), and
        c1 = 1, a constant map.
    box1..boxN (3x3, dilated, 2 filters, ReLU): pass c0 through by their center tap, and sum c1
        over a 3x3 box. The dilations (1, 3, 9, ..., and a last one) make the composed box exactly
        S x S (S = image size), positive everywhere on it. With zero padding, the box holds the
        whole image only at the center, so the last layer's e1 is a fixed map that is strictly
        largest at the center (by at least the box's mass along one edge line), and e0 = x.
    Dense on the flattened (H, W, 2) map, then softmax.

The Dense weight of e0 at the center is 2*alpha*L*j for class j (L = classes - 1); every other
weight is the same for every class, and the bias is -alpha*j^2. So, as in the
center-pixel model, logit_j = alpha * (2*p*j - j^2) + (terms equal for every class): the
probabilities depend on the center pixel alone, the logits on every pixel (through e0's seeded
random weights, which sum to 0).

Grad-CAM at the last layer weights e0 by the mean Dense weight of e0 (2*alpha*L*j / pixels, as
the random ones sum to 0) and e1 by that of e1 (w_box at every position). w_box times the box's
edge mass is 4 times the largest of those means over the classes; as e0 varies by at most 1 over
the image, Grad-CAM peaks at the center for every class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CenterCnnWeights:
    conv1: tuple[np.ndarray, np.ndarray]  # kernel (3, 3, 1, 2), bias (2,)
    boxes: list[tuple[int, np.ndarray]]  # (dilation, kernel (3, 3, 2, 2)) per box layer, no bias
    dense: tuple[np.ndarray, np.ndarray]  # kernel (S*S*2, K) in Keras' (H, W, C) order, bias (K,)
    image_size: int


def box_dilations(image_size: int) -> list[int]:
    """Dilations of 3-tap boxes whose composition spans exactly `image_size`: powers of 3 while
    they fit, then the remainder (at most the next power, so every offset stays covered)."""
    half, dilations = image_size // 2, []
    while sum(dilations) + 3 ** len(dilations) <= half:
        dilations.append(3 ** len(dilations))
    if sum(dilations) < half:
        dilations.append(half - sum(dilations))
    return dilations


def build_weights(image_size: int, num_classes: int, alpha: float, weight_seed: int,
                  noise_weight_scale: float) -> CenterCnnWeights:
    size, pixels, levels = image_size, image_size * image_size, num_classes - 1
    classes = np.arange(num_classes, dtype=np.float64)
    center = pixels // 2

    conv1 = np.zeros((3, 3, 1, 2))
    conv1[1, 1, 0, 0] = 1.0
    box = np.zeros((3, 3, 2, 2))
    box[1, 1, 0, 0] = 1.0  # e0: the center tap passes c0 on
    box[:, :, 1, 1] = 1.0  # e1: the 3x3 sum of c1

    noise = np.random.default_rng(weight_seed).normal(0.0, noise_weight_scale * alpha * levels**2, pixels)
    noise[center] = 0.0
    noise[np.arange(pixels) != center] -= noise.sum() / (pixels - 1)  # sum 0: Grad-CAM's mean ignores it
    kernel = np.zeros((pixels, 2, num_classes))
    kernel[:, 0, :] = noise[:, None]
    kernel[center, 0, :] = 2.0 * alpha * levels * classes
    edge_mass = 3 ** len(box_dilations(size))  # the composed box's weights along one edge line
    kernel[:, 1, :] = 4.0 * np.abs(kernel[:, 0, :].mean(axis=0)).max() / edge_mass
    bias = -alpha * classes**2
    return CenterCnnWeights((conv1, np.array([0.0, 1.0])), [(d, box) for d in box_dilations(size)],
                            (kernel.reshape(2 * pixels, num_classes), bias), size)
