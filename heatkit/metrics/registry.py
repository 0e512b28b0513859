"""The registry: the one list of metrics, in the order tables show them. Each metric's module
declares its entry (name, paper, category, direction, what it needs) and the settings it reads;
the score tables, scores.json, the dataset's columns, settings.py's metric dicts and the README's
metric table come from here. Importing this module imports no framework."""
from __future__ import annotations

import numpy as np

from heatkit.metrics import builtin, complexity, faithfulness, localisation, robustness
from heatkit.metrics._entry import Category, Metric, Needs
from heatkit.methods._entry import Settings

__all__ = ["Category", "METRICS", "Metric", "Needs", "REGISTRY", "SETTINGS", "COMPUTED", "score", "score_with_method", "score_with_model"]

METRICS: list[Metric] = [*builtin.METRICS, *faithfulness.METRICS, *robustness.METRICS, *complexity.METRICS,
                         *localisation.METRICS]
REGISTRY = {metric.key: metric for metric in METRICS}
SETTINGS: dict[str, Settings] = {m.settings.name: m.settings for m in METRICS if m.settings}
# the metrics this package computes from a map (and a mask), in table order
COMPUTED = [metric for metric in METRICS if metric.function is not None]


def score(attribution: np.ndarray, mask: np.ndarray | None, settings: dict) -> dict[str, float | None]:
    """Every computed metric of one map that its inputs allow (the mask's only with a mask);
    None where a metric is undefined (a map of zeros has no Sparseness)."""
    return {metric.key: metric.function(attribution, mask, _params(metric, settings))
            for metric in COMPUTED if metric.needs is Needs.MAP or metric.needs is Needs.MASK and mask is not None}


def score_with_model(model, image: np.ndarray, target: int, maps: dict[str, np.ndarray],
                     settings: dict) -> dict[str, dict[str, float | None]]:
    """Per map key, every computed metric that evaluates the model (perturbed inputs through the engine)."""
    return {key: {metric.key: metric.function(model, image, target, attribution, _params(metric, settings))
                  for metric in COMPUTED if metric.needs is Needs.MODEL}
            for key, attribution in maps.items()}


def score_with_method(recompute, image: np.ndarray, maps: dict[str, np.ndarray],
                      settings: dict) -> dict[str, dict[str, float | None]]:
    """Per map key, every computed metric that recomputes the method: `recompute(key, images)` gives
    map `key` of each image (None where the method fails on one). The maps of the same inputs are
    computed once, however many metrics ask."""
    import hashlib

    def memoized(key: str):
        done: dict[str, list[np.ndarray]] = {}

        def again(images: list[np.ndarray]) -> list[np.ndarray] | None:
            digest = hashlib.sha1(np.stack(images).tobytes()).hexdigest() if images else ""
            if digest not in done:
                done[digest] = recompute(key, images) if images else []
            return done[digest]
        return again

    scores = {}
    for key, attribution in maps.items():
        again = memoized(key)
        scores[key] = {metric.key: metric.function(again, image, attribution, _params(metric, settings))
                       for metric in COMPUTED if metric.needs is Needs.METHOD}
    return scores


def _params(metric: Metric, settings: dict) -> dict:
    return settings[metric.settings.name] if metric.settings else {}
