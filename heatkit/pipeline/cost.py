"""What a run will cost, said before it starts: counted from the settings and the model's input,
never timed (a count decides what runs, so a command gives the same maps on a busy machine), in
forward passes of one image, a backward pass counted as two. The faithfulness curves and the
metrics that evaluate the model run by default ("auto") where they cost no more than the maps
themselves, or where the model's first layer is affine (its exact fast path makes them cheap):
on a ResNet-50 at 224 x 224 they once took five times as long as the maps."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from heatkit.base.progress import duration
from heatkit.methods.registry import REGISTRY, Needs


@dataclass(frozen=True)
class Plan:
    maps: dict[str, int | None]  # method key -> its passes an image (None: one a channel of its layer)
    scoring: int  # the faithfulness curves and the metrics that evaluate the model, an image
    recomputing: int  # the metrics that recompute a method on changed inputs, an image
    images: int
    curves: bool  # whether the scoring runs

    @property
    def total(self) -> int:
        """The passes of the whole run, the methods whose cost depends on their layer left out."""
        return self.images * (self._methods(None) + self.recomputing + (self.scoring if self.curves else 0))

    def seconds(self, a_pass: float, an_evaluation: float) -> float:
        """The run's time, given a pass's seconds and a perturbation's on the engine's path (the
        exact fast path costs a fraction of a pass)."""
        perturbations = self._methods(True) + (self.scoring if self.curves else 0)
        return self.images * (perturbations * an_evaluation + (self._methods(False) + self.recomputing) * a_pass)

    def _methods(self, perturbing: bool | None) -> int:
        return sum(passes for key, passes in self.maps.items() if passes is not None and
                   perturbing in (None, REGISTRY[key].needs is Needs.PROBABILITIES))


def plan(model, keys: list[str], cfg: dict, images: int) -> Plan:
    """The run's cost, and whether its faithfulness curves run (faithfulness.curves: True, False,
    or "auto", as this module says)."""
    maps = {key: REGISTRY[key].passes(model, cfg[REGISTRY[key].settings.name] if REGISTRY[key].settings else {})
            for key in keys}
    known = sum(passes for passes in maps.values() if passes is not None)
    scoring = len(keys) * per_map(model.input_shape, cfg) + random_rankings(model.input_shape, cfg)
    recomputing = known * (2 * cfg["sensitivity"]["samples"] + cfg["lipschitz"]["samples"] +
                           cfg["random_logit"]["enabled"])
    setting = cfg["faithfulness"]["curves"]
    curves = setting if setting != "auto" else model.affine_split() is not None or scoring <= known
    return Plan(maps, scoring, recomputing, images, bool(curves))


def curve_passes(shape: tuple[int, int, int], params: dict) -> int:
    """The passes of one faithfulness curve: its steps and its start."""
    regions = math.ceil(shape[0] / params["patch"]) * math.ceil(shape[1] / params["patch"])
    step = params["regions_per_step"] or math.ceil(regions / 100)
    return math.ceil(regions / step) + 1


def per_map(shape: tuple[int, int, int], cfg: dict) -> int:
    """Deletion and insertion, and the metrics that evaluate the model, for one map."""
    height, width, _ = shape
    return (2 * curve_passes(shape, cfg["faithfulness"]) + cfg["faithfulness_correlation"]["runs"] + 2
            + cfg["monotonicity"]["samples"] * height * width + len(cfg["road"]["percentages"] or [])
            + height * width * cfg["non_sensitivity"]["enabled"])


def random_rankings(shape: tuple[int, int, int], cfg: dict) -> int:
    return cfg["faithfulness"]["random_draws"] * 2 * curve_passes(shape, cfg["faithfulness"])


def timed(model, batch: int = 4) -> tuple[float, float]:
    """The seconds of a forward pass of one image here, and of one perturbation on the engine's
    path (the affine head's, where the model has one), each from one timed batch: for the
    estimate that is printed, and choices that change no result (a dataset's local workers)."""
    images = np.zeros((batch, *model.input_shape))
    model.probabilities(images[:1])  # warm-up: the first pass pays the framework's set-up
    start = time.perf_counter()
    model.probabilities(images)
    a_pass = (time.perf_counter() - start) / batch
    split = model.affine_split()
    if split is None:
        return a_pass, a_pass
    rows = np.zeros((64, split.weight.shape[1]))
    start = time.perf_counter()
    split.rest(rows)
    return a_pass, (time.perf_counter() - start) / len(rows)


def describe(found: Plan, seconds: tuple[float, float], patience: float) -> str:
    """The estimate as one line: the passes, the dearest methods, the curves' part (or how to turn
    them on), and where it would take longer than `patience` seconds, how to make it cheaper."""
    dearest = sorted(((passes, key) for key, passes in found.maps.items() if passes), reverse=True)[:3]
    parts = [f"{key} {passes:,}" for passes, key in dearest]
    layered = [key for key, passes in found.maps.items() if passes is None]
    if layered:
        parts.append(f"{', '.join(layered)} a pass a channel of the layer")
    curves = (f"faithfulness curves and model metrics {found.scoring:,}, which --no-curves leaves out" if found.curves
              else f"the faithfulness curves are off: they would take {found.scoring:,} more an image, and "
                   "--curves turns them on")
    hints = [REGISTRY[key].cheaper for _, key in dearest if REGISTRY[key].cheaper]
    long = 0 < patience < found.seconds(*seconds)  # 0: never (perturbation.warn_seconds)
    cheaper = f"; to make it cheaper: {'; '.join(dict.fromkeys(hints))}" if hints and long else ""
    images = f" for each of {found.images} images" if found.images > 1 else ""
    fast = " (perturbations on the exact fast path)" if seconds[1] < seconds[0] else ""
    return (f"this run: about {found.total:,} model passes ({', '.join(parts)}{images}; {curves}), about "
            f"{duration(found.seconds(*seconds))} at {seconds[0] * 1e3:.3g} ms a pass here{fast}{cheaper}")
