"""The two-pixel models' weights and their ground truth, in plain numpy: two classes, set by an
interaction of two pixels A and B (on the middle row, a quarter of the way in from each side).

    two_pixels_and   class 1 when min(x_A, x_B) > 1/2:      d = k * (min(x_A, x_B) - 1/2)
    two_pixels_xor   class 1 when |x_A - x_B| > 1/2:          d = k * (|x_A - x_B| - 1/2)

with d = logit_1 - logit_0. Flatten -> Dense (ReLU) -> Dense -> softmax, the ReLU units

    h_1 = relu(x_A - x_B),  h_2 = relu(x_B - x_A),  h_3 = relu(x_A),  h_4 = relu(S(x) + c)

give min(x_A, x_B) = h_3 - h_1 and |x_A - x_B| = h_1 + h_2, and S(x) (seeded random weights on
every other pixel, c keeping it positive over [0, 1]) enters both logits alike: it cancels in the
softmax, so the probabilities depend on A and B alone while every logit, and every gradient,
depends on every pixel. A gradient sees one pixel of the AND at a time (min's derivative); the
Shapley values of the two players, in closed form (shapley_values), split the interaction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TwoPixelWeights:
    hidden: tuple[np.ndarray, np.ndarray]  # (H*W, 4) kernel and (4,) bias
    logits: tuple[np.ndarray, np.ndarray]  # (4, 2) kernel and (2,) bias
    image_size: int


def pixels(image_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(row, column) of A and of B."""
    row = image_size // 2
    return (row, image_size // 4), (row, image_size - 1 - image_size // 4)


def build_weights(kind: str, image_size: int, sharpness: float, weight_seed: int) -> TwoPixelWeights:
    count = image_size * image_size
    (row_a, col_a), (row_b, col_b) = pixels(image_size)
    a, b = row_a * image_size + col_a, row_b * image_size + col_b
    noise = np.random.default_rng(weight_seed).normal(0.0, 1.0, count)
    noise[[a, b]] = 0.0
    hidden = np.zeros((count, 4))
    hidden[a, 0], hidden[b, 0] = 1.0, -1.0
    hidden[a, 1], hidden[b, 1] = -1.0, 1.0
    hidden[a, 2] = 1.0
    hidden[:, 3] = noise
    hidden_bias = np.array([0.0, 0.0, 0.0, np.maximum(0.0, -noise).sum() + 1.0])  # h_4 never clipped
    difference = {"and": np.array([-1.0, 0.0, 1.0]), "xor": np.array([1.0, 1.0, 0.0])}[kind] * sharpness
    kernel = np.zeros((4, 2))
    kernel[:3, 1] = difference
    kernel[3, :] = 1.0  # S(x) + c on both logits
    bias = np.array([0.0, -sharpness / 2])
    return TwoPixelWeights((hidden, hidden_bias), (kernel, bias), image_size)


def decides(kind: str, a, b):
    """The class the rule gives pixels at levels a and b (arrays or numbers)."""
    return ((np.minimum(a, b) > 0.5) if kind == "and" else (np.abs(a - b) > 0.5)).astype(int)


def shapley_values(kind: str, sharpness: float, a: float, b: float, baseline: float,
                   target: int) -> tuple[float, float]:
    """The exact Shapley values of A and B for the probability of `target`, the other pixels (which
    change nothing) and the absent players at `baseline`: two players, four coalitions."""
    def value(x_a, x_b):
        gap = np.minimum(x_a, x_b) if kind == "and" else np.abs(x_a - x_b)
        p_one = 1 / (1 + np.exp(-sharpness * (gap - 0.5)))
        return p_one if target == 1 else 1 - p_one
    empty, only_a, only_b, both = value(baseline, baseline), value(a, baseline), value(baseline, b), value(a, b)
    return ((only_a - empty) + (both - only_b)) / 2, ((only_b - empty) + (both - only_a)) / 2
