"""Does the map stay put when the input barely moves? The method is recomputed for the same class
on noisy copies of the input (the gradient family in batches):

    Max- and Avg-Sensitivity (Yeh et al. 2019): uniform noise in [-radius, radius] on each value;
        the largest and the mean of ||map(noisy) - map|| / ||map|| (Frobenius norms)
    Local Lipschitz Estimate (Alvarez-Melis & Jaakkola 2018): Gaussian noise of std `std`; the
        largest ||map(noisy) - map|| / ||noisy - x|| (Euclidean)

Each equals Quantus 0.6 given the same noise (tests/test_metrics.py): the sensitivities at its
defaults, the Lipschitz estimate with normalise=False, since the paper's maps are not rescaled
(Quantus rescales each map by its largest |value| first). Each copy costs a map, so they are off
until their `samples` are set (Quantus's default is 200); the two sensitivities share their copies."""
from __future__ import annotations

import numpy as np

from heatkit.base.rules import Float, Int
from heatkit.metrics._entry import Category, Metric, Reads, Recomputation
from heatkit.base.declared import SEED, Paper, Setting, Settings

SETTINGS = Settings("sensitivity", "Max- and Avg-Sensitivity (Yeh et al. 2019): the method recomputed on noisy "
                    "copies of the input.", {
                        "samples": Setting(0, Int(min=0), "noisy copies, each a map; 0 leaves both metrics out"),
                        "radius": Setting(0.2, Float(min=0.0, exclusive_min=True),
                                          "noise drawn uniformly in [-radius, radius], in the model's input scale"),
                        "seed": Setting(0, SEED),
                    })


LIPSCHITZ = Settings("lipschitz", "Local Lipschitz Estimate (Alvarez-Melis & Jaakkola 2018): the method recomputed "
                     "on noisy copies of the input.", {
                         "samples": Setting(0, Int(min=0), "noisy copies, each a map; 0 leaves the metric out"),
                         "std": Setting(0.1, Float(min=0.0, exclusive_min=True),
                                        "Gaussian noise's standard deviation, in the model's input scale"),
                         "seed": Setting(0, SEED),
                     })


def noisy_copies(image: np.ndarray, params: dict) -> list[np.ndarray]:
    """Seeded copies of the input with uniform noise within `radius` on each value."""
    rng = np.random.default_rng(params["seed"])
    return [image + rng.uniform(-params["radius"], params["radius"], image.shape) for _ in range(params["samples"])]


def gaussian_copies(image: np.ndarray, params: dict) -> list[np.ndarray]:
    """Seeded copies of the input with Gaussian noise of `std` on each value."""
    rng = np.random.default_rng(params["seed"])
    return [image + rng.normal(0.0, params["std"], image.shape) for _ in range(params["samples"])]


def ratios(again: Recomputation, image: np.ndarray, attribution: np.ndarray, params: dict) -> np.ndarray | None:
    """||map(noisy) - map|| / ||map|| per noisy copy; None for a map of zeros, no copies, or a method
    that failed on a copy."""
    if params["samples"] == 0:
        return None
    norm = np.linalg.norm(attribution.astype(np.float64))
    if norm == 0:
        return None
    others = again.maps(noisy_copies(image, params))
    if others is None:
        return None
    return np.array([np.linalg.norm(other.astype(np.float64) - attribution) / norm for other in others])


def max_sensitivity(again: Recomputation, image, attribution, params) -> float | None:
    found = ratios(again, image, attribution, params)
    return None if found is None else float(found.max())


def avg_sensitivity(again: Recomputation, image, attribution, params) -> float | None:
    found = ratios(again, image, attribution, params)
    return None if found is None else float(found.mean())


def lipschitz(again: Recomputation, image, attribution, params) -> float | None:
    """The largest ||map(noisy) - map|| / ||noisy - x|| over the copies."""
    if params["samples"] == 0:
        return None
    copies = gaussian_copies(image, params)
    others = again.maps(copies)
    if others is None:
        return None
    return float(max(np.linalg.norm(other.astype(np.float64) - attribution) / np.linalg.norm(copy - image)
                     for other, copy in zip(others, copies)))


_YEH = Paper("Yeh et al. 2019", "On the (in)fidelity and sensitivity of explanations",
             "https://arxiv.org/abs/1901.09392")

METRICS = [
    Metric("max_sensitivity", "Max-Sensitivity", _YEH, Category.ROBUSTNESS, False, Reads.METHOD, max_sensitivity,
           SETTINGS),
    Metric("avg_sensitivity", "Avg-Sensitivity", _YEH, Category.ROBUSTNESS, False, Reads.METHOD, avg_sensitivity,
           SETTINGS),
    Metric("local_lipschitz_estimate", "Local Lipschitz Estimate",
           Paper("Alvarez-Melis & Jaakkola 2018", "On the robustness of interpretability methods",
                 "https://arxiv.org/abs/1806.08049"),
           Category.ROBUSTNESS, False, Reads.METHOD, lipschitz, LIPSCHITZ),
]
