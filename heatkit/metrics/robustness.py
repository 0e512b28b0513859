"""Does the map stay put when the input barely moves? Max-Sensitivity and Avg-Sensitivity (Yeh et
al. 2019): over `samples` copies of the input with uniform noise in [-radius, radius] added to each
value, the largest and the mean of ||map(noisy) - map|| / ||map|| (Frobenius norms), the method
recomputed for the same class on each copy (the gradient family in batches).

As in Quantus 0.6 (normalise=False, abs=False, its defaults), and equal to it given the same
noise (tests/test_metrics.py). Each copy costs a map, so both are off until `sensitivity.samples`
is set (Quantus's default is 200); the two share their copies."""
from __future__ import annotations

import numpy as np

from heatkit.base.rules import Float, Int
from heatkit.metrics._entry import Category, Metric, Needs
from heatkit.methods._entry import SEED, Paper, Setting, Settings

SETTINGS = Settings("sensitivity", "Max- and Avg-Sensitivity (Yeh et al. 2019): the method recomputed on noisy "
                    "copies of the input.", {
                        "samples": Setting(0, Int(min=0), "noisy copies, each a map; 0 leaves both metrics out"),
                        "radius": Setting(0.2, Float(min=0.0, exclusive_min=True),
                                          "noise drawn uniformly in [-radius, radius], in the model's input scale"),
                        "seed": Setting(0, SEED),
                    })


def noisy_copies(image: np.ndarray, params: dict) -> list[np.ndarray]:
    rng = np.random.default_rng(params["seed"])
    return [image + rng.uniform(-params["radius"], params["radius"], image.shape) for _ in range(params["samples"])]


def ratios(recompute, image: np.ndarray, attribution: np.ndarray, params: dict) -> np.ndarray | None:
    """||map(noisy) - map|| / ||map|| per noisy copy; None for a map of zeros, no copies, or a method
    that failed on a copy."""
    norm = np.linalg.norm(attribution.astype(np.float64))
    if params["samples"] == 0 or norm == 0:
        return None
    others = recompute(noisy_copies(image, params))
    if others is None:
        return None
    return np.array([np.linalg.norm(other.astype(np.float64) - attribution) / norm for other in others])


def max_sensitivity(recompute, image, attribution, params) -> float | None:
    found = ratios(recompute, image, attribution, params)
    return None if found is None else float(found.max())


def avg_sensitivity(recompute, image, attribution, params) -> float | None:
    found = ratios(recompute, image, attribution, params)
    return None if found is None else float(found.mean())


_YEH = Paper("Yeh et al. 2019", "On the (in)fidelity and sensitivity of explanations", "https://arxiv.org/abs/1901.09392")

METRICS = [
    Metric("max_sensitivity", "Max-Sensitivity", _YEH, Category.ROBUSTNESS, False, Needs.METHOD, max_sensitivity,
           SETTINGS),
    Metric("avg_sensitivity", "Avg-Sensitivity", _YEH, Category.ROBUSTNESS, False, Needs.METHOD, avg_sensitivity,
           SETTINGS),
]
