"""The method contract: function(model, image, target, params) -> float32 (H, W) attribution.

The map is raw: not normalized, not clipped (normalizing is for plotting only). A method with
more to show (Meaningful Perturbation's mask and loss curves) returns `WithExtras`; its arrays
are saved, and drawn, in the run folder's subfolder named after the method. A method asked for
several layers at once (Grad-CAM) returns `Several`, one map per layer, shown as `key@layer`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class WithExtras:
    attribution: np.ndarray
    # name -> array: (H, W) or (H, W, C) arrays are images, 1-D arrays are curves over steps
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Several:
    maps: dict[str, np.ndarray]  # layer name -> its map


def check(key: str, returned, shape: tuple[int, int]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The maps (by key, or `key@layer`) and extras a method returned; TypeError if it broke the contract."""
    extras = returned.extras if isinstance(returned, WithExtras) else {}
    attribution = returned.attribution if isinstance(returned, WithExtras) else returned
    maps = {f"{key}@{layer}": value for layer, value in attribution.maps.items()} \
        if isinstance(attribution, Several) else {key: attribution}
    for value in maps.values():
        if not (isinstance(value, np.ndarray) and value.dtype == np.float32 and value.shape == shape):
            got = f"{getattr(value, 'dtype', type(value).__name__)} {getattr(value, 'shape', '')}"
            raise TypeError(f"method {key} returned {got}, not a float32 {shape} map")
    return maps, extras
