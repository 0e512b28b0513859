"""What a metric module declares: its registry entry (name, paper, category, direction, what it
needs) and the settings it reads. heatkit/metrics/registry.py collects the entries; the score
tables, scores.json, the dataset's columns, settings.py's metric dicts and the README's metric
table come from them."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

from heatkit.methods._entry import Paper, Settings


class Category(Enum):
    """Quantus's six families of metrics (Hedström et al. 2023)."""

    LOCALISATION = "localisation"
    COMPLEXITY = "complexity"
    FAITHFULNESS = "faithfulness"
    ROBUSTNESS = "robustness"
    RANDOMISATION = "randomisation"
    AXIOMATIC = "axiomatic"


class Needs(Enum):
    """What a metric reads besides the map."""

    MAP = "the map"
    MASK = "the map and a ground-truth mask"
    MODEL = "the model, through the perturbation engine"
    METHOD = "the method, recomputed on changed inputs"
    CURVES = "the model, through the faithfulness curves"


@dataclass(frozen=True)
class Metric:
    key: str
    name: str
    paper: Paper
    category: Category
    higher_is_better: bool | None  # None: it describes a map, it does not grade it
    needs: Needs
    # MAP and MASK: function(attribution (H, W), mask (H, W) bool or None, params); MODEL:
    # function(model, image, target, attribution, params); METHOD: function(recompute, image,
    # attribution, params), recompute(images) giving the map of each; each -> float, or None where
    # undefined.
    # None for scores another part computes (the center scores, the faithfulness curves)
    function: Callable | None = None
    settings: Settings | None = None  # the settings.py dict this metric reads
    reads: str = ""  # the settings a score computed elsewhere reads, for the README's table

    @property
    def direction(self) -> str:
        return {True: "higher", False: "lower", None: "-"}[self.higher_is_better]
