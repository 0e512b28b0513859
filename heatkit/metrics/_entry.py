"""What a metric module declares: its registry entry (name, paper, category, direction, what it
needs) and the settings it reads. heatkit/metrics/registry.py collects the entries; the score
tables, scores.json, the dataset's columns, settings.py's metric dicts and the README's metric
table come from them."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

import numpy as np

from heatkit.base.declared import Paper, Settings


class Category(Enum):
    """Quantus's six families of metrics (Hedström et al. 2023)."""

    LOCALISATION = "localisation"
    COMPLEXITY = "complexity"
    FAITHFULNESS = "faithfulness"
    ROBUSTNESS = "robustness"
    RANDOMISATION = "randomisation"
    AXIOMATIC = "axiomatic"


class Reads(Enum):
    """What a metric reads besides the map (a method's Needs says what it asks of the model)."""

    MAP = "the map"
    MASK = "the map and a ground-truth mask"
    MODEL = "the model, through the perturbation engine"
    METHOD = "the method, recomputed on changed inputs"
    IMAGES = "the maps of the run's other images"
    RANDOMISED = "the method, recomputed on the model with its layers re-initialized (--sanity cascading)"
    CURVES = "the model, through the faithfulness curves"


@dataclass(frozen=True)
class Metric:
    key: str
    name: str
    paper: Paper
    category: Category
    higher_is_better: bool | None  # None: it describes a map, it does not grade it
    reads: Reads
    # MAP and MASK: function(attribution (H, W), mask (H, W) bool or None, params); MODEL:
    # function(model, image, target, attribution, params); METHOD: function(again: Recomputation,
    # image, attribution, params); each -> float, or None where undefined. IMAGES: function(maps of
    # the run's images, their predicted classes, params) -> one score an image. RANDOMISED:
    # function(the map, the fully randomized model's map, params) -> float or None.
    # None for scores another part computes (the center scores, the faithfulness curves)
    function: Callable | None = None
    settings: Settings | None = None  # the settings.py dict this metric reads
    settings_read: str = ""  # the settings a score computed elsewhere reads, for the README's table

    @property
    def direction(self) -> str:
        return {True: "higher", False: "lower", None: "-"}[self.higher_is_better]


@dataclass
class Recomputation:
    """One map's method, recomputed on other inputs or for another class, for the metrics that ask
    how its map changes. `compute(images, target)` gives the map of each image (None where the
    method fails on one); the maps of the same inputs and class are computed once, however many
    metrics ask."""

    compute: Callable[[list[np.ndarray], int], list[np.ndarray] | None]
    target: int  # the class the map explains
    classes: int  # the model's class count
    _done: dict = field(default_factory=dict)

    def maps(self, images: list[np.ndarray], target: int | None = None) -> list[np.ndarray] | None:
        target = self.target if target is None else target
        digest = (hashlib.sha1(np.stack(images).tobytes()).hexdigest(), target)
        if digest not in self._done:
            self._done[digest] = self.compute(images, target)
        return self._done[digest]

