"""Agreement of two maps of the same method: the Keras model's and its PyTorch twin's."""
from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr


def agreement(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """max |first - second| relative to max |first|, and the Pearson and Spearman correlations."""
    a, b = first.astype(np.float64).ravel(), second.astype(np.float64).ravel()
    scale = np.abs(a).max()
    constant = a.std() == 0 or b.std() == 0  # correlations are undefined; equal maps count as 1
    same = float(np.array_equal(a, b))
    return {
        "max_abs_diff_relative": float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(b).max()),
        "pearson": same if constant else float(pearsonr(a, b).statistic),
        "spearman": same if constant else float(spearmanr(a, b).statistic),
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
