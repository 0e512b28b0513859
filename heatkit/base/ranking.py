"""Orders of a map's values for the metrics that rank them (the faithfulness curves, ROAD).

A map's ties carry no order: regions of equal relevance (a LIME superpixel's pixels, an all-zero
background) are ranked among themselves by a seeded random draw, so that a tie scores as chance
would, not as the pixels' row order happens to (in row order, LIME's one-superpixel map of a
32x32 digit scored deletion 0.103 against the random rankings' 0.518). A constant map ranks
nothing above anything: its ranking scores are undefined (CONSTANT says why).
"""
from __future__ import annotations

import numpy as np

CONSTANT = "the map is constant: it ranks no region above another, so its ranking scores are undefined"


def is_constant(values: np.ndarray) -> bool:
    return values.size == 0 or bool(np.all(values == values.flat[0]))


def descending(values: np.ndarray, seed: int) -> np.ndarray:
    """Indices of `values` (any shape, read flat), largest first, ties in a random order drawn
    with `seed` (the same draw for every map of that size)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    shuffled = np.random.default_rng(seed).permutation(values.size)
    return shuffled[np.argsort(-values[shuffled], kind="stable")]
