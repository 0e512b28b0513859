"""What explaining an image gives: its maps and everything shown or scored beside them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from heatkit.metrics import registry as metrics
from heatkit.metrics.curves import AREAS
from heatkit.pipeline import config
from heatkit.pipeline.scores import center_scores


@dataclass
class ImageResult:
    """One image explained by the chosen methods, on one framework."""

    name: str
    image: np.ndarray  # (H, W, C) in [0, 1]: the image as shown
    probabilities: np.ndarray  # (classes,): the model's on the image
    target: int  # the class explained
    settings: dict  # the settings it was computed with (a copy: the scores never follow later edits)
    top_k: int = 5  # classes the figure lists
    true_label: int | None = None
    mask: np.ndarray | None = None  # (H, W) bool: the ground truth the localisation metrics grade against
    ground_truth: bool = False  # the model declares where its answer lies: the center scores grade the maps
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # map key -> (H, W) float32
    failures: dict[str, str] = field(default_factory=dict)  # method key -> the error it raised
    skipped: dict[str, str] = field(default_factory=dict)  # method key -> why it does not apply
    extras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # method key -> its extra arrays
    seconds: dict[str, float] = field(default_factory=dict)  # map key -> time taken
    layers: dict[str, str] = field(default_factory=dict)  # map key -> the layer it explains (the CAM family)
    frameworks: dict[str, str] = field(default_factory=dict)  # method key -> the framework that ran it
    evaluations: dict[str, dict[str, int]] = field(default_factory=dict)  # method key -> engine evaluations by path
    curves: dict[str, dict] = field(default_factory=dict)  # map key or "random" -> faithfulness curves and scores
    model_scores: dict[str, dict] = field(default_factory=dict)  # map key -> the metrics that evaluate the model
    interrupted: bool = False  # Ctrl-C stopped it before every method finished

    @property
    def predicted(self) -> int:
        return int(self.probabilities.argmax())

    @property
    def target_probability(self) -> float:
        return float(self.probabilities[self.target])

    @property
    def top(self) -> list[tuple[int, float]]:
        """(class, probability) of the most probable classes, most probable first."""
        order = np.argsort(-self.probabilities, kind="stable")[: self.top_k]
        return [(int(c), float(self.probabilities[c])) for c in order]

    def add_scores(self, found: dict[str, dict]) -> None:
        """Metrics computed beside the map (per map key, by name) added to those it has."""
        for key, scores in found.items():
            self.model_scores[key] = {**self.model_scores.get(key, {}), **scores}

    def __post_init__(self):
        self.settings = config.copied(self.settings)

    def scores(self) -> dict[str, dict]:
        """Per map key: its center scores (on a model that declares a ground truth), faithfulness
        areas, metrics, seconds and framework (and engine evaluations); per method that gave no
        map: why. Computed with the settings of the run, whatever they have become since."""
        table = {}
        for key, attribution in self.maps.items():
            method = key.partition("@")[0]
            center = center_scores(attribution, self.settings["figure"]["crop"]) if self.ground_truth else {}
            table[key] = {**({"layer": self.layers[key]} if key in self.layers else {}), **center, **self._areas(key),
                          **self.model_scores.get(key, {}), **metrics.score(attribution, self.mask, self.settings),
                          "seconds": round(self.seconds[key], 4), "framework": self.frameworks[method],
                          **({"evaluations": self.evaluations[method]} if method in self.evaluations else {})}
        table.update({key: {"not_applicable": reason} for key, reason in self.skipped.items()})
        table.update({key: {"error": reason} for key, reason in self.failures.items()})
        return table

    @property
    def drawn_curves(self) -> dict[str, dict]:
        """The faithfulness curves of each map that has them (a constant map has none), and the
        random rankings'."""
        return {key: scored for key, scored in self.curves.items() if "deletion" in scored}

    def random_ranking(self) -> dict:
        """The faithfulness scores of the random rankings: mean, standard deviation, draws."""
        random = self.curves.get("random", {})
        return {name: value for name, value in random.items() if not isinstance(value, np.ndarray)}

    def _areas(self, key: str) -> dict[str, float | None]:
        """The map's faithfulness areas, and why they are undefined where they are."""
        if key not in self.curves:
            return {}
        return {name: self.curves[key][name] for name in (*AREAS, "undefined") if name in self.curves[key]}


@dataclass
class Explained:
    """One input image and its results, one per framework (two with compare_backends)."""

    stem: str  # its name in file names and npz keys
    source: str  # the image file, or a description of the image given
    results: list[ImageResult]
