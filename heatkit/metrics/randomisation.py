"""Does the map depend on what it should? Random Logit (Sixt et al. 2020): the SSIM of the map and
the same method's map of another class, drawn at random (seeded) among the others; a map that
ignores the class scores 1. The Model Parameter Randomisation Test (Adebayo et al. 2018): how alike
the map stays once `--sanity cascading` has re-initialized every layer, from the output down; a map
that ignores the weights scores 1.

MPRT's score is the similarity at the last step (Quantus 0.6's return_last_correlation), by default
its Spearman correlation of |a|, as Quantus's default. Quantus seeds every layer's draw alike (seed +
1); the sanity check seeds layer k with seed + k, so that two layers of one shape get different
weights. tests/test_metrics.py replays our seeds into Quantus and finds the same score.

SSIM here is the sanity checks' (heatkit/base/similarity.py): both maps as images, each scaled to
[0, 1], a 7 x 7 window, as the paper compares them. Quantus 0.6 computes it on the maps flattened
to one row, each first divided by its largest |value|; tests/test_metrics.py checks ours against
the paper's definition and Quantus's against its own."""
from __future__ import annotations

import numpy as np

from heatkit.base.rules import Bool, Choice
from heatkit.metrics._entry import Category, Metric, Reads, Recomputation
from heatkit.base.declared import SEED, Paper, Setting, Settings

SETTINGS = Settings("random_logit", "Random Logit (Sixt et al. 2020): each map recomputed for a random other class.", {
    "enabled": Setting(False, Bool(), "recompute each map for another class (a map more each)"),
    "seed": Setting(0, SEED),
})


def other_class(target: int, classes: int, seed: int) -> int:
    """A seeded class other than `target`."""
    drawn = int(np.random.default_rng(seed).integers(0, classes - 1))
    return drawn + (drawn >= target)


def random_logit(again: Recomputation, image, attribution, params) -> float | None:
    """SSIM of the map and its method's map of another class; None where either map is constant."""
    if not params["enabled"]:
        return None
    from heatkit.base.similarity import ssim

    others = again.maps([image], other_class(again.target, again.classes, params["seed"]))
    if others is None or np.ptp(attribution) == 0 or np.ptp(others[0]) == 0:
        return None
    return ssim(attribution, others[0])


MPRT_SETTINGS = Settings("mprt", "The Model Parameter Randomisation Test (Adebayo et al. 2018), scored by "
                         "--sanity cascading.", {
                             "similarity": Setting("spearman_abs", Choice(("spearman_abs", "spearman", "ssim")),
                                                   "how alike the original and the randomized model's maps are: "
                                                   "Spearman's correlation of |a| (Quantus's), of a, or SSIM"),
                         })


def mprt(original: np.ndarray, randomised: np.ndarray, params: dict) -> float | None:
    """The similarity of the map and the map of the fully randomized model; None where either is
    constant."""
    from heatkit.base.similarity import similarities

    found = similarities(original, randomised)
    return None if "undefined" in found else float(found[params["similarity"]])


METRICS = [
    Metric("random_logit", "Random Logit",
           Paper("Sixt et al. 2020", "When explanations lie: why many modified BP attributions fail",
                 "https://arxiv.org/abs/1912.09818"),
           Category.RANDOMISATION, False, Reads.METHOD, random_logit, SETTINGS),
    Metric("mprt", "Model Parameter Randomisation Test",
           Paper("Adebayo et al. 2018", "Sanity checks for saliency maps", "https://arxiv.org/abs/1810.03292"),
           Category.RANDOMISATION, False, Reads.RANDOMISED, mprt, MPRT_SETTINGS),
]
