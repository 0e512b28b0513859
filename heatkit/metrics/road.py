"""ROAD, Remove And Debias (Rong et al. 2022): the map's most relevant pixels removed, a growing
share at a time, and filled in by noisy linear imputation (each removed pixel the weighted mean of
its eight neighbours, 1/6 for the four beside it and 1/12 for the corners, solved for all removed
pixels at once, then Gaussian noise of std `noise`), so that the filling itself tells the model
nothing about where the pixels were. The score is the share of the percentages at which the
model still predicts the explained class (the mean of the MoRF accuracy curve): lower is better.

Each percentage solves a sparse system as large as the pixels removed, so ROAD waits for its
percentages (QUANTUS_PERCENTAGES are Quantus's). Quantus 0.6 returns the curve; its mean is
ours, given the same noise (tests/test_metrics.py with noise 0), on maps without ties: tied pixels
are removed in a seeded random order here (heatkit/base/ranking.py), in row order by Quantus, and
a constant map has no ROAD score."""
from __future__ import annotations

import numpy as np

from heatkit.base import ranking
from heatkit.base.rules import Float, Int, ListOf, Optional
from heatkit.metrics._entry import Category, Metric, Reads
from heatkit.base.declared import SEED, Paper, Setting, Settings

SETTINGS = Settings("road", "ROAD (Rong et al. 2022): the most relevant pixels removed and filled by noisy linear "
                    "imputation, a growing share at a time.", {
                        "percentages": Setting(None, Optional(ListOf(Int(min=0, max=100))),
                                               "shares of the pixels removed, in percent, each an imputation and "
                                               "an evaluation; None leaves the metric out (Quantus: 1, 3, ..., 99)"),
                        "noise": Setting(0.01, Float(min=0.0), "std of the noise added to the imputed values"),
                        "seed": Setting(0, SEED),
                    })

QUANTUS_PERCENTAGES = list(range(1, 100, 2))

# (row offset, column offset): weight of a neighbour in the imputation
NEIGHBOURS = {(-1, 0): 1 / 6, (1, 0): 1 / 6, (0, -1): 1 / 6, (0, 1): 1 / 6,
              (-1, -1): 1 / 12, (-1, 1): 1 / 12, (1, -1): 1 / 12, (1, 1): 1 / 12}


def impute(image: np.ndarray, removed: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The image with the `removed` pixels (flat indices) set so that each is the weighted mean of its
    neighbours inside the image, removed or not, plus `noise` ((removed, channels))."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    height, width, channels = image.shape
    flat = image.reshape(height * width, channels).astype(np.float64)
    unknown = np.full(height * width, -1)
    unknown[removed] = np.arange(len(removed))
    rows, cols = np.divmod(removed, width)
    diagonal = np.zeros(len(removed))
    entries, known = [], np.zeros((len(removed), channels))
    for (dr, dc), weight in NEIGHBOURS.items():
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        neighbour = r[inside] * width + c[inside]
        diagonal[inside] += weight
        variable = unknown[neighbour]
        free = variable >= 0
        entries.append((np.flatnonzero(inside)[free], variable[free], np.full(free.sum(), -weight)))
        np.add.at(known, np.flatnonzero(inside)[~free], weight * flat[neighbour[~free]])
    where, what, weights = (np.concatenate(parts) for parts in zip(*entries))
    system = coo_matrix((np.concatenate([weights, diagonal]),
                         (np.concatenate([where, np.arange(len(removed))]),
                          np.concatenate([what, np.arange(len(removed))]))), shape=(len(removed),) * 2).tocsc()
    solved = spsolve(system, known).reshape(len(removed), channels)
    filled = flat.copy()
    filled[removed] = solved + noise
    return filled.reshape(image.shape)


def road(model, image: np.ndarray, target: int, attribution: np.ndarray, params: dict) -> float | None:
    """The share of the percentages at which the explained class is still the predicted one."""
    if not params["percentages"] or ranking.is_constant(attribution):
        return None
    rng = np.random.default_rng(params["seed"])
    order = ranking.descending(attribution, params["seed"])
    removed = [order[:int(order.size * share / 100)] for share in params["percentages"]]
    noises = [params["noise"] * rng.standard_normal((image.shape[-1], len(pixels))).T for pixels in removed]

    def imputed(start: int, stop: int) -> np.ndarray:
        return np.stack([impute(image, removed[index], noises[index]) for index in range(start, stop)])
    predicted = model.engine(image, target, "probability").images(len(removed), imputed, "road", all_classes=True).argmax(1)
    return float(np.mean(predicted == target))


METRICS = [
    Metric("road", "ROAD (MoRF)",
           Paper("Rong et al. 2022", "A consistent and efficient evaluation strategy for attribution methods",
                 "https://arxiv.org/abs/2202.00449"),
           Category.FAITHFULNESS, False, Reads.MODEL, road, SETTINGS),
]
