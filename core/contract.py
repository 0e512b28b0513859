"""The method contract: function(model, image, target, params) -> float32 (H, W) attribution.

The map is raw: not normalized, not clipped (normalizing is for plotting only). A method with
more to show (Meaningful Perturbation's mask and loss curves) returns `WithExtras`; its arrays
are saved, and drawn, in the run folder's subfolder named after the method.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class WithExtras:
    attribution: np.ndarray
    # name -> array: (H, W) or (H, W, C) arrays are images, 1-D arrays are curves over steps
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def check(key: str, returned, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The attribution and extras a method returned, or TypeError if it broke the contract."""
    attribution, extras = (returned.attribution, returned.extras) if isinstance(returned, WithExtras) else (returned, {})
    if not (isinstance(attribution, np.ndarray) and attribution.dtype == np.float32 and attribution.shape == shape):
        got = f"{getattr(attribution, 'dtype', type(attribution).__name__)} {getattr(attribution, 'shape', '')}"
        raise TypeError(f"method {key} returned {got}, not a float32 {shape} map")
    return attribution, extras
