"""Does the map keep the axioms attribution papers state? Completeness (Sundararajan et al. 2017):
the map sums to the change of the explained logit from a baseline input to the image. Non-
Sensitivity (Nguyen & Martínez 2020): a pixel whose removal leaves the explained probability
unchanged gets no attribution, and one whose removal changes it gets some.

    completeness      |Σa - (f(x) - f(baseline))| / |f(x) - f(baseline)|, f the explained logit;
                      0 for a complete map (Integrated Gradients from the same baseline)
    non_sensitivity   the number of pixels that break the rule: each set to the baseline alone
                      (the engine's one-pixel edits), the probability "unchanged" within `eps`, an
                      attribution "none" below `eps` of the map's largest |value|

Quantus 0.6's Completeness answers True only where Σa equals the change exactly (float equality,
after dividing the map by its largest |value| by default), so it says False of every map with
rounding in it; ours gives the size of the gap. Its Non-Sensitivity counts the same pixels, on
probabilities with softmax=True (tests/test_metrics.py)."""
from __future__ import annotations

import numpy as np

from heatkit.base.rules import Bool, Choice, Float
from heatkit.metrics._entry import Category, Metric, Reads
from heatkit.base.declared import Paper, Setting, Settings

BASELINES = ("black", "zero")

COMPLETENESS = Settings("completeness", "Completeness (Sundararajan et al. 2017): the map's sum against the explained "
                        "logit's change from a baseline.", {
                            "baseline": Setting("zero", Choice(BASELINES),
                                                "the baseline input: 0 everywhere (IG's default reference) or the "
                                                "input's smallest value (Quantus's 'black')"),
                        })
NON_SENSITIVITY = Settings("non_sensitivity", "Non-Sensitivity (Nguyen & Martínez 2020): pixels that change nothing "
                           "must get nothing, and the others something.", {
                               "enabled": Setting(False, Bool(),
                                                  "set each pixel to the baseline alone (an evaluation a pixel: "
                                                  "50,176 ResNet passes at 224 x 224)"),
                               "baseline": Setting("black", Choice(BASELINES),
                                                   "what a pixel is set to: the input's smallest value (Quantus's "
                                                   "'black') or 0"),
                               "eps": Setting(1e-5, Float(min=0.0, exclusive_min=True),
                                              "below this a probability change, or a share of the largest |value|, "
                                              "counts as none"),
                           })


def baseline_value(image: np.ndarray, baseline: str) -> float:
    return float(image.min()) if baseline == "black" else 0.0


def completeness(model, image: np.ndarray, target: int, attribution: np.ndarray, params: dict) -> float | None:
    """The relative gap between the map's sum and the logit's change; None where the logit does not change."""
    baseline = np.full_like(image, baseline_value(image, params["baseline"]))
    logits = model.logits(np.stack([image, baseline]))[:, target].astype(np.float64)
    change = logits[0] - logits[1]
    if change == 0:
        return None
    return float(abs(attribution.astype(np.float64).sum() - change) / abs(change))


def non_sensitivity(model, image: np.ndarray, target: int, attribution: np.ndarray, params: dict) -> float | None:
    """Pixels whose removal changes the probability but which have no attribution, or the reverse;
    None until non_sensitivity.enabled."""
    magnitude = np.abs(attribution.astype(np.float64))
    if not params["enabled"] or magnitude.max() == 0:
        return None
    height, width = attribution.shape
    engine = model.engine(image, target, "probability")
    removed = engine.regions(np.arange(height * width).reshape(height, width),
                             baseline_value(image, params["baseline"]), "non-sensitivity")
    unchanged = np.abs(removed - engine.probability()) < params["eps"]
    unattributed = (magnitude / magnitude.max()).ravel() < params["eps"]
    return float((unchanged ^ unattributed).sum())


METRICS = [
    Metric("completeness", "Completeness",
           Paper("Sundararajan et al. 2017", "Axiomatic attribution for deep networks",
                 "https://arxiv.org/abs/1703.01365"),
           Category.AXIOMATIC, False, Reads.MODEL, completeness, COMPLETENESS),
    Metric("non_sensitivity", "Non-Sensitivity",
           Paper("Nguyen & Martínez 2020", "On quantitative aspects of model interpretability",
                 "https://arxiv.org/abs/2007.07584"),
           Category.AXIOMATIC, False, Reads.MODEL, non_sensitivity, NON_SENSITIVITY),
]
