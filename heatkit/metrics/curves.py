"""Faithfulness curves: does the explained class's probability follow the map's ranking?

Regions (patch x patch tiles of the image; pixels at patch 1) are ranked by the sum of the
map over them, most relevant first (signed, or by magnitude). Step k has the first k * per_step
regions switched, k = 0..K:

    deletion   from the image, ranked regions set to the baseline (Petsiuk et al. 2018);
               its area, the trapezoid mean over k / K in [0, 1], is low for a faithful map
    insertion  from the baseline image, the image's regions put back in the same order; its
               area is high for a faithful map
    aopc       MoRF AOPC (Samek et al. 2017): the mean over k = 0..K of p(image) - deletion[k];
               high for a faithful map

Tied regions are ranked in a seeded random order, and a constant map has no curves: its scores
are None, with the reason under "undefined" (heatkit/base/ranking.py). The curves are walks of
the perturbation engine (exact fast paths where the model has one). A seeded random ranking, `random_draws` times, is scored beside the maps: a map that does not beat
it says nothing about the model.
"""
from __future__ import annotations

import math

import numpy as np

from heatkit.base import ranking as ranking_module

AREAS = ("deletion_area", "insertion_area", "aopc")


def baseline_image(image: np.ndarray, params: dict) -> np.ndarray:
    """What deleted regions become and insertion starts from: the constant `fill` (in the model's
    input space: one value, or one a channel), the image's per-channel mean, or the image blurred."""
    if params["baseline"] == "constant":
        return np.full_like(image, params["fill"])
    if params["baseline"] == "mean":
        return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).copy()
    from scipy.ndimage import gaussian_filter

    sigma = params["blur_sigma"]
    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest")


def regions(shape: tuple[int, int], patch: int) -> np.ndarray:
    """(H, W) region number of each pixel: patch x patch tiles, row by row (edge tiles smaller)."""
    rows, cols = np.arange(shape[0]) // patch, np.arange(shape[1]) // patch
    return rows[:, None] * math.ceil(shape[1] / patch) + cols[None, :]


def region_sums(attribution: np.ndarray, labels: np.ndarray, ranking: str) -> np.ndarray:
    """The map summed over each region (its magnitude with ranking "absolute")."""
    values = np.abs(attribution) if ranking == "absolute" else attribution
    return np.bincount(labels.ravel(), weights=values.astype(np.float64).ravel())


def ranked_regions(attribution: np.ndarray, labels: np.ndarray, ranking: str, seed: int) -> np.ndarray:
    """Region numbers, most relevant first, tied regions in a seeded random order
    (heatkit/base/ranking.py)."""
    return ranking_module.descending(region_sums(attribution, labels, ranking), seed)


def walk_of(region_order: np.ndarray, labels: np.ndarray, channels: int,
            per_step: int) -> tuple[np.ndarray, np.ndarray]:
    """The input elements in the regions' order, and the number switched after each step."""
    rank = np.empty_like(region_order)
    rank[region_order] = np.arange(region_order.size)
    pixels = np.argsort(rank[labels.ravel()], kind="stable")  # by their region's rank, in row order within it
    elements = (pixels[:, None] * channels + np.arange(channels)).ravel()
    sizes = np.bincount(labels.ravel(), minlength=region_order.size)[region_order] * channels
    ends = np.cumsum(sizes)
    points = ends[np.minimum(np.arange(per_step, region_order.size + per_step, per_step), region_order.size) - 1]
    return elements, points


def area(curve: np.ndarray) -> float:
    """Trapezoid mean of a curve over k / K in [0, 1]."""
    return float(((curve[:-1] + curve[1:]) / 2).mean())


def curves(deletion_engine, insertion_engine, image: np.ndarray, baseline: np.ndarray, region_order: np.ndarray,
           labels: np.ndarray, per_step: int, desc: str) -> dict:
    """The deletion and insertion curves of one ranking, and their scores."""
    elements, points = walk_of(region_order, labels, image.shape[-1], per_step)
    deletion = deletion_engine.walks(image, elements[None], desc, points)[0]
    insertion = insertion_engine.walks(baseline, elements[None], desc, points)[0]
    return {"deletion": deletion, "insertion": insertion, "deletion_area": area(deletion),
            "insertion_area": area(insertion), "aopc": float(deletion[0] - deletion.mean())}


def per_step(params: dict, region_count: int) -> int:
    """Regions switched per step: the setting, or about 1% of them (0)."""
    return params["regions_per_step"] or math.ceil(region_count / 100)


def score_maps(model, image: np.ndarray, target: int, maps: dict[str, np.ndarray], params: dict) -> dict[str, dict]:
    """Per map key: its curves and scores; and under "random", the random rankings' mean and spread."""
    baseline = baseline_image(image, {**params, "fill": model.input_value(params["fill"])})
    labels = regions(image.shape[:2], params["patch"])
    step = per_step(params, int(labels.max()) + 1)
    deletion_engine = model.engine(baseline, target, "probability")
    insertion_engine = model.engine(image, target, "probability")
    scored = {}
    for key, attribution in maps.items():
        if ranking_module.is_constant(region_sums(attribution, labels, params["ranking"])):
            scored[key] = {**dict.fromkeys(AREAS), "undefined": ranking_module.CONSTANT}
            continue
        scored[key] = curves(deletion_engine, insertion_engine, image, baseline,
                             ranked_regions(attribution, labels, params["ranking"], params["seed"]), labels, step,
                             f"curves {key}")
    rng = np.random.default_rng(params["seed"])
    draws = [curves(deletion_engine, insertion_engine, image, baseline, rng.permutation(int(labels.max()) + 1),
                    labels, step, "curves random") for _ in range(params["random_draws"])]
    if draws:
        scored["random"] = {
            "deletion": np.mean([draw["deletion"] for draw in draws], axis=0),
            "insertion": np.mean([draw["insertion"] for draw in draws], axis=0),
            **{name: float(np.mean([draw[name] for draw in draws])) for name in AREAS},
            **{f"{name}_sd": float(np.std([draw[name] for draw in draws])) for name in AREAS},
            "draws": len(draws)}
    return scored
