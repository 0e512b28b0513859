"""Are images with alike maps predicted alike? Sufficiency (Dasgupta et al. 2022), over the images
of one run: two maps are alike when their distance is at most `threshold` of the largest distance
between the run's maps (standardized Euclidean on |a|, each pixel scaled by its variance over the
run); an image's score is the share of the images alike to it that the model predicts as it does,
0 where none is alike. It needs two images or more.

As Quantus 0.6 computes it, with one difference: a pixel whose attribution is the same in every
map (a variance of 0) is left out of the distance, where Quantus divides by its 0 and finds no map
alike to any other (tests/test_metrics.py checks both)."""
from __future__ import annotations

import numpy as np

from heatkit.base.rules import Float
from heatkit.metrics._entry import Category, Metric, Reads
from heatkit.base.declared import Paper, Setting, Settings

SETTINGS = Settings("sufficiency", "Sufficiency (Dasgupta et al. 2022): images with alike maps should be predicted "
                    "alike.", {
                        "threshold": Setting(0.6, Float(min=0.0, max=1.0),
                                             "alike: at most this share of the largest distance between the maps"),
                    })


def sufficiency(maps: list[np.ndarray], predicted: np.ndarray, params: dict) -> list[float | None]:
    """Per image, the share of the images whose maps are alike to its own that share its prediction."""
    from scipy.spatial.distance import cdist

    if len(maps) < 2:
        return [None] * len(maps)
    flat = np.abs(np.stack([attribution.astype(np.float64).ravel() for attribution in maps]))
    varying = flat.var(axis=0) > 0
    if not varying.any():
        return [None] * len(maps)
    distances = cdist(flat[:, varying], flat[:, varying], "seuclidean")
    alike = (distances <= params["threshold"] * distances.max()) & ~np.eye(len(maps), dtype=bool)
    same = predicted[None, :] == predicted[:, None]
    counts = alike.sum(1)
    return [float((alike[i] & same[i]).sum() / counts[i]) if counts[i] else 0.0 for i in range(len(maps))]


METRICS = [
    Metric("sufficiency", "Sufficiency",
           Paper("Dasgupta et al. 2022", "Framework for evaluating faithfulness of local explanations",
                 "https://arxiv.org/abs/2202.00734"),
           Category.FAITHFULNESS, True, Reads.IMAGES, sufficiency, SETTINGS),
]
