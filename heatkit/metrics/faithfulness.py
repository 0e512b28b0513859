"""Does the model's output follow the map? The perturbed inputs run through the perturbation
engine (its exact fast path where the model has one), their draws seeded.

    faithfulness_correlation  (Bhatt et al. 2020) over `runs` random subsets of `subset` pixels,
                              the Pearson correlation between the map's sum over a subset and the
                              drop of the explained class's probability when the subset is set to
                              the baseline
    monotonicity              (Nguyen & Martínez 2020) the Spearman correlation between |a| of
                              each pixel and the mean squared change of the probability when the
                              pixel alone takes `samples` values drawn uniformly in [0, 1]

Features are pixels, all channels together, as in the papers. Quantus 0.6 draws them from the map
broadcast over the channels, so the two agree on one-channel images; run it with softmax=True
to grade the probabilities, as here (tests/test_metrics.py)."""
from __future__ import annotations

import numpy as np

from heatkit.base.rules import Choice, Int
from heatkit.metrics._entry import Category, Metric, Reads
from heatkit.base.declared import SEED, Paper, Setting, Settings

SETTINGS = Settings("faithfulness_correlation", "Faithfulness Correlation (Bhatt et al. 2020): random pixel subsets "
                    "set to a baseline, their map sums against the probability drops.", {
                        "runs": Setting(100, Int(min=2), "random subsets"),
                        "subset": Setting(224, Int(min=1), "pixels in a subset (at most all but one)"),
                        "baseline": Setting("black", Choice(("black", "mean", "zero")),
                                            "what a subset becomes: the input's smallest value (Quantus's "
                                            "'black'), its mean, or 0"),
                        "seed": Setting(0, SEED),
                    })


MONOTONICITY = Settings("monotonicity", "Monotonicity (Nguyen & Martínez 2020): each pixel alone set to random "
                        "values, the probability's mean squared change against |a|.", {
                            "samples": Setting(0, Int(min=0), "values a pixel takes, each an evaluation; 0 leaves "
                                                              "the metric out (Quantus's default is 100)"),
                            "seed": Setting(0, SEED),
                        })


def subsets(params: dict, pixels: int) -> np.ndarray:
    """(runs, subset) pixel numbers, each row drawn without repeats."""
    rng = np.random.default_rng(params["seed"])
    size = min(params["subset"], pixels - 1)
    return np.stack([rng.choice(pixels, size, replace=False) for _ in range(params["runs"])])


def correlation(model, image: np.ndarray, target: int, attribution: np.ndarray, params: dict) -> float | None:
    """Pearson correlation of subset sums and probability drops; None where either is constant."""
    height, width = attribution.shape
    chosen = subsets(params, height * width)
    keep = np.ones((len(chosen), height * width))
    keep[np.arange(len(chosen))[:, None], chosen] = 0
    fill = {"black": image.min(), "mean": image.mean(), "zero": 0.0}[params["baseline"]]
    engine = model.engine(image, target, "probability")
    drops = engine.probability() - engine.segments(np.arange(height * width).reshape(height, width), keep,
                                                   np.full_like(image, fill), "faithfulness correlation")
    sums = attribution.astype(np.float64).ravel()[chosen].sum(1)
    if np.ptp(drops) == 0 or np.ptp(sums) == 0:
        return None
    return float(np.corrcoef(sums, drops)[0, 1])


def pixel_values(params: dict, pixels: int) -> np.ndarray:
    """(pixels, samples) seeded values in [0, 1] that each pixel takes in turn."""
    return np.random.default_rng(params["seed"]).uniform(0.0, 1.0, (pixels, params["samples"]))


def monotonicity(model, image: np.ndarray, target: int, attribution: np.ndarray, params: dict) -> float | None:
    """Spearman correlation of |a| and each pixel's mean squared probability change; None where
    either is constant or the metric is off."""
    from scipy.stats import spearmanr

    if params["samples"] == 0:
        return None
    height, width, channels = image.shape
    values = pixel_values(params, height * width)
    inputs = np.repeat(np.arange(height * width)[:, None] * channels + np.arange(channels), params["samples"], axis=0)
    engine = model.engine(image, target, "probability")
    changed = engine.edits(inputs, np.repeat(values.reshape(-1, 1), channels, axis=1), "monotonicity")
    variance = ((changed - engine.probability()) ** 2).reshape(height * width, params["samples"]).mean(1)
    magnitude = np.abs(attribution.astype(np.float64)).ravel()
    if np.ptp(variance) == 0 or np.ptp(magnitude) == 0:
        return None
    return float(spearmanr(magnitude, variance).statistic)


METRICS = [
    Metric("faithfulness_correlation", "Faithfulness Correlation",
           Paper("Bhatt et al. 2020", "Evaluating and aggregating feature-based model explanations",
                 "https://arxiv.org/abs/2005.00631"),
           Category.FAITHFULNESS, True, Reads.MODEL, correlation, SETTINGS),
    Metric("monotonicity", "Monotonicity",
           Paper("Nguyen & Martínez 2020", "On quantitative aspects of model interpretability",
                 "https://arxiv.org/abs/2007.07584"),
           Category.FAITHFULNESS, True, Reads.MODEL, monotonicity, MONOTONICITY),
]
