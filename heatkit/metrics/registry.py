"""The registry: the one list of metrics, in the order tables show them. Each metric's module
declares its entry (name, paper, category, direction, what it needs) and the settings it reads;
the score tables, scores.json, the dataset's columns, settings.py's metric dicts and the README's
metric table come from here. Importing this module imports no framework."""
from __future__ import annotations

import numpy as np

from heatkit.metrics import (axiomatic, builtin, complexity, faithfulness, localisation, randomisation, road,
                             robustness, sufficiency)
from heatkit.metrics._entry import Category, Metric, Reads, Recomputation
from heatkit.base.declared import Settings

__all__ = ["Category", "METRICS", "Metric", "Reads", "REGISTRY", "ROW_METRICS", "SETTINGS", "COMPUTED", "score",
           "score_images",
           "score_randomised", "score_with_method", "score_with_model"]

METRICS: list[Metric] = [*builtin.METRICS, *faithfulness.METRICS, *road.METRICS, *sufficiency.METRICS,
                         *robustness.METRICS, *randomisation.METRICS, *axiomatic.METRICS, *complexity.METRICS,
                         *localisation.METRICS]
REGISTRY = {metric.key: metric for metric in METRICS}
SETTINGS: dict[str, Settings] = {m.settings.name: m.settings for m in METRICS if m.settings}
# the metrics this package computes (the others are computed in the pipeline), in table order
COMPUTED = [metric for metric in METRICS if metric.function is not None]
# the metrics a map's row of scores can hold: all but MPRT, which a sanity check computes
ROW_METRICS = [metric for metric in METRICS if metric.reads is not Reads.RANDOMISED]


def score(attribution: np.ndarray, mask: np.ndarray | None, settings: dict) -> dict[str, float | None]:
    """Every computed metric of one map that its inputs allow (the mask's only with a mask);
    None where a metric is undefined (a map of zeros has no Sparseness)."""
    return {metric.key: metric.function(attribution, mask, _params(metric, settings))
            for metric in COMPUTED if metric.reads is Reads.MAP or metric.reads is Reads.MASK and mask is not None}


def score_with_model(model, image: np.ndarray, target: int, maps: dict[str, np.ndarray],
                     settings: dict) -> dict[str, dict[str, float | None]]:
    """Per map key, every computed metric that evaluates the model (perturbed inputs through the engine)."""
    return {key: {metric.key: metric.function(model, image, target, attribution, _params(metric, settings))
                  for metric in COMPUTED if metric.reads is Reads.MODEL}
            for key, attribution in maps.items()}


def score_with_method(recompute, image: np.ndarray, target: int, classes: int, maps: dict[str, np.ndarray],
                      settings: dict) -> dict[str, dict[str, float | None]]:
    """Per map key, every computed metric that recomputes the method: `recompute(key, images, target)`
    gives map `key` of each image for that class (None where the method fails on one)."""
    scores = {}
    for key, attribution in maps.items():
        again = Recomputation(lambda images, target, key=key: recompute(key, images, target), target, classes)
        scores[key] = {metric.key: metric.function(again, image, attribution, _params(metric, settings))
                       for metric in COMPUTED if metric.reads is Reads.METHOD}
    return scores


def score_images(maps: list[dict[str, np.ndarray]], predicted: np.ndarray,
                 settings: dict) -> list[dict[str, dict[str, float | None]]]:
    """Per image, per map key every image has, every computed metric that grades the run's images
    together."""
    scores: list[dict[str, dict]] = [{} for _ in maps]
    shared = [key for key in maps[0] if all(key in found for found in maps)] if maps else []
    for metric in (metric for metric in COMPUTED if metric.reads is Reads.IMAGES):
        for key in shared:
            for index, value in enumerate(metric.function([found[key] for found in maps], predicted,
                                                          _params(metric, settings))):
                scores[index].setdefault(key, {})[metric.key] = value
    return scores


def score_randomised(original: dict[str, np.ndarray], randomised: dict[str, np.ndarray],
                     settings: dict) -> dict[str, dict[str, float | None]]:
    """Per map key both runs have, every computed metric that compares a map with the map of the
    model whose layers are all re-initialized."""
    return {key: {metric.key: metric.function(attribution, randomised[key], _params(metric, settings))
                  for metric in COMPUTED if metric.reads is Reads.RANDOMISED}
            for key, attribution in original.items() if key in randomised}


def _params(metric: Metric, settings: dict) -> dict:
    return settings[metric.settings.name] if metric.settings else {}
