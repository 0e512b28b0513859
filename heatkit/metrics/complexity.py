"""How concentrated a map is, whatever the model: Sparseness (the Gini index of |a|, Chalasani et
al. 2020) and Complexity (the entropy of |a|'s share per pixel, Bhatt et al. 2020).

Both follow their papers. Quantus 0.6 adds 1e-7 to the max-normalised |a| before the Gini index,
which lowers a one-pixel map's Sparseness by 0.5% on a 227 x 227 image; its Complexity adds
1e-12 inside the logarithm (at most 5e-8 here). tests/test_metrics.py checks both against
Quantus, the first with Quantus's 1e-7 added to the map it is given.
"""
from __future__ import annotations

import numpy as np

from heatkit.metrics._entry import Category, Metric, Reads
from heatkit.base.declared import Paper


def gini(attribution: np.ndarray, mask=None, params=None) -> float | None:
    """Gini index of |a| over the pixels: 0 for a constant map, (n - 1) / n for a one-pixel map."""
    values = np.sort(np.abs(attribution.astype(np.float64)).ravel())
    total = values.sum()
    if total == 0:
        return None
    n = values.size
    return float(((2 * np.arange(1, n + 1) - n - 1) * values).sum() / (n * total))


def entropy(attribution: np.ndarray, mask=None, params=None) -> float | None:
    """Entropy (nats) of |a| / Σ|a|: 0 for a one-pixel map, log(n) for a constant one."""
    magnitude = np.abs(attribution.astype(np.float64)).ravel()
    total = magnitude.sum()
    if total == 0:
        return None
    share = magnitude[magnitude > 0] / total
    return float(-(share * np.log(share)).sum()) + 0.0  # + 0.0: a one-pixel map's -0.0 prints as 0


METRICS = [
    Metric("sparseness", "Sparseness",
           Paper("Chalasani et al. 2020", "Concise explanations of neural networks using adversarial training",
                 "https://arxiv.org/abs/1810.06583"),
           Category.COMPLEXITY, True, Reads.MAP, gini),
    Metric("complexity", "Complexity",
           Paper("Bhatt et al. 2020", "Evaluating and aggregating feature-based model explanations",
                 "https://arxiv.org/abs/2005.00631"),
           Category.COMPLEXITY, False, Reads.MAP, entropy),
]
