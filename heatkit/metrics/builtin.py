"""Scores computed elsewhere than by a metric function, registered for their names, papers and
directions: the center scores (heatkit/pipeline/scores.py), the completeness gap of the methods
that explain a change from their own reference (heatkit/pipeline/maps.py) and the faithfulness
curves' areas (heatkit/metrics/curves.py, walked for all of a run's maps at once)."""
from __future__ import annotations

from heatkit.metrics._entry import Category, Metric, Reads
from heatkit.base.declared import Paper

_CENTER = Paper("this toolkit", "The center-pixel model: its probabilities depend on the center pixel alone",
                "center-pixel.md")
_PETSIUK = Paper("Petsiuk et al. 2018", "RISE: randomized input sampling for explanation of black-box models",
                 "https://arxiv.org/abs/1806.07421")

_CURVES = "the `faithfulness` dict"

METRICS = [
    Metric("center_value", "center value", _CENTER, Category.LOCALISATION, None, Reads.MAP),
    Metric("center_rank", "center rank", _CENTER, Category.LOCALISATION, False, Reads.MAP),
    Metric("center_share", "center share", _CENTER, Category.LOCALISATION, True, Reads.MAP),
    Metric("crop_share", "center crop share", _CENTER, Category.LOCALISATION, True, Reads.MAP, settings_read="`figure.crop`"),
    Metric("completeness_gap", "completeness gap",
           Paper("Sundararajan et al. 2017", "Axiomatic attribution for deep networks",
                 "https://arxiv.org/abs/1703.01365"),
           Category.AXIOMATIC, False, Reads.MAP, settings_read="`ig.reference`, `deeplift.baseline`"),
    Metric("deletion_area", "Deletion", _PETSIUK, Category.FAITHFULNESS, False, Reads.CURVES, settings_read=_CURVES),
    Metric("insertion_area", "Insertion", _PETSIUK, Category.FAITHFULNESS, True, Reads.CURVES, settings_read=_CURVES),
    Metric("aopc", "AOPC (MoRF)",
           Paper("Samek et al. 2017", "Evaluating the visualization of what a deep neural network has learned",
                 "https://arxiv.org/abs/1509.06321"),
           Category.FAITHFULNESS, True, Reads.CURVES, settings_read=_CURVES),
]
