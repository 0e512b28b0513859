"""How alike two attribution maps are: the metrics of Adebayo et al. 2018 and Bansal et al. 2020
(sanity checks, growing patch, sweeps), and the agreement of one method's maps on two frameworks
(--compare-backends).

Every metric of a map with itself is 1. SSIM compares maps scaled to [0, 1] by their own range
(as the sanity-check papers do). The similarity of a constant map (an all-zero one) is undefined:
every metric is NaN, with the reason in `undefined`; so is a correlation with one.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from skimage.feature import hog
from skimage.metrics import structural_similarity
from skimage.transform import pyramid_gaussian

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest scale first


def _unit(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def _correlation(function, a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(function(a, b).statistic)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    side = min(a.shape)
    window = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(_unit(a), _unit(b), data_range=1.0, win_size=window))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM over a Gaussian pyramid, combined with Wang et al.'s weights (renormalized over the
    scales that fit: each needs a side of at least 7)."""
    scores, weights = [], []
    for weight, (x, y) in zip(MS_SSIM_WEIGHTS, zip(pyramid_gaussian(_unit(a)), pyramid_gaussian(_unit(b)))):
        if min(x.shape) < 7:
            break
        scores.append(max(ssim(x, y), 1e-12))
        weights.append(weight)
    weights = np.asarray(weights) / np.sum(weights)
    return float(np.prod(np.asarray(scores) ** weights))


def hog_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the maps' HOG features (cells of 1/8 of the side, at least 2 pixels)."""
    cell = max(2, min(a.shape) // 8)
    features = [hog(_unit(m), pixels_per_cell=(cell, cell), cells_per_block=(2, 2)) for m in (a, b)]
    return _correlation(pearsonr, *features)


def constant_reason(original: np.ndarray, other: np.ndarray) -> str | None:
    """Why a similarity of the two maps is undefined (one is constant), or None."""
    constant = [name for name, values in (("original", original), ("compared", other)) if np.ptp(values) == 0]
    return f"the {' and the '.join(constant)} map is constant: a similarity to it is undefined" if constant else None


def similarities(original: np.ndarray, other: np.ndarray) -> dict[str, float | str]:
    undefined = constant_reason(original, other)
    if undefined:
        return {**dict.fromkeys(("spearman", "spearman_abs", "ssim", "hog"), float("nan")), "undefined": undefined}
    return {
        "spearman": _correlation(spearmanr, original, other),
        "spearman_abs": _correlation(spearmanr, np.abs(original), np.abs(other)),
        "ssim": ssim(original, other),
        "hog": hog_similarity(original, other),
    }


def agreement(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """max |first - second| relative to max |first|, and the Pearson and Spearman correlations."""
    a, b = first.astype(np.float64).ravel(), second.astype(np.float64).ravel()
    scale = np.abs(a).max()
    return {
        "max_abs_diff_relative": float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(b).max()),
        "pearson": _correlation(pearsonr, a, b),
        "spearman": _correlation(spearmanr, a, b),
    }


def format_agreement(table: dict[str, dict], names: dict[str, str], first: str, second: str) -> str:
    if not table:
        return f"{first} vs {second}: no method gave a map on both, so there is nothing to compare"
    width = max(len(f"{names[key]} ({key})") for key in table) + 2
    header = f"{'method':<{width}}{f'max|{first}-{second}|/max':>22}{'pearson':>12}{'spearman':>12}"
    lines = [f"{first} vs {second}", header, "-" * len(header)]
    for key, row in table.items():
        lines.append(f"{names[key] + f' ({key})':<{width}}{row['max_abs_diff_relative']:>22.2e}"
                     f"{row['pearson']:>12.9f}{row['spearman']:>12.9f}")
    return "\n".join(lines)
