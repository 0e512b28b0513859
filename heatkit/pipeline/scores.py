"""How much of a map's attribution falls on the center pixel and the center crop, and the
printed tables of every score.

For the center-pixel model, whose probabilities depend on the center pixel alone, these
are ground-truth scores: a faithful map has center_rank 1 and center_share near 1.
"""
from __future__ import annotations

import numpy as np

from heatkit.metrics.curves import AREAS


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """The size x size block around the center of an (H, W, ...) array."""
    row, col = array.shape[0] // 2, array.shape[1] // 2
    half = size // 2
    return array[row - half:row + half + 1, col - half:col + half + 1]


def center_scores(attribution: np.ndarray, crop: int) -> dict[str, float | int]:
    magnitude = np.abs(attribution.astype(np.float64))
    total = magnitude.sum()
    center = attribution[attribution.shape[0] // 2, attribution.shape[1] // 2]
    return {
        "center_value": float(center),
        # pixels at least as large as the center, itself included: a tie counts against it, so an
        # all-zero map ranks the center last, not first
        "center_rank": int(np.count_nonzero(magnitude >= abs(float(center)))),
        "center_share": float(abs(float(center)) / total) if total > 0 else 0.0,
        "crop_share": float(center_crop(magnitude, crop).sum() / total) if total > 0 else 0.0,
    }


# the printed table's columns: (score, heading, width, format); those no map has are left out (the
# center scores of a model that declares no ground truth, the areas of a run without curves)
COLUMNS = (("center_value", "center_value", 14, ".4g"), ("center_rank", "center_rank", 13, "d"),
           ("center_share", "center_share", 14, ".3g"), ("crop_share", "crop_share", 12, ".3g"),
           ("deletion_area", "deletion", 10, ".3f"), ("insertion_area", "insertion", 10, ".3f"),
           ("aopc", "aopc", 9, ".3f"), ("completeness_gap", "gap", 9, ".2g"), ("seconds", "seconds", 10, ".2f"))


def format_table(table: dict[str, dict], names: dict[str, str], random: dict | None = None) -> str:
    """The scores as a fixed-width text table, one method per line (and the random rankings')."""
    width = max(len(f"{names[key]} ({key})") for key in table) + 2
    columns = [column for column in COLUMNS if any(row.get(column[0]) is not None for row in table.values())]

    def cells(row: dict) -> str:
        return "".join(f"{'-' if row.get(key) is None else format(row[key], spec):>{size}}"
                       for key, _, size, spec in columns)
    header = f"{'method':<{width}}" + "".join(f"{heading:>{size}}" for _, heading, size, _ in columns)
    lines = [header, "-" * len(header)]
    for key, row in table.items():
        label = f"{names[key]} ({key})"
        if "error" in row:
            lines.append(f"{label:<{width}}  failed: {row['error']}")
        elif "not_applicable" in row:
            lines.append(f"{label:<{width}}  not applicable: {row['not_applicable']}")
        else:
            lines.append(f"{label:<{width}}{cells(row)}")
    undefined = [key for key, row in table.items() if "undefined" in row]
    if undefined:
        lines.append(f"({', '.join(undefined)}: {table[undefined[0]]['undefined']})")
    if random:
        lines.append(f"{'random ranking (sd of ' + str(random['draws']) + ')':<{width}}{cells(random)}")
        lines.append(f"{'':<{width}}{cells({f'{name}': random.get(f'{name}_sd') for name in AREAS})}")
    return "\n".join(lines)


def format_metrics(table: dict[str, dict], names: dict[str, str]) -> str:
    """The registry's metrics of each map as a fixed-width text table, each column's better
    direction under its name; a metric no map has a value of (one left out by its settings) is
    left out; "" when no map has any."""
    from heatkit.metrics.registry import COMPUTED

    columns = [metric for metric in COMPUTED if any(row.get(metric.key) is not None for row in table.values())]
    rows = {key: row for key, row in table.items() if any(metric.key in row for metric in columns)}
    if not rows:
        return ""
    width = max(len(f"{names[key]} ({key})") for key in rows) + 2
    widths = [max(len(metric.key), 8) + 2 for metric in columns]
    header = f"{'metric':<{width}}" + "".join(f"{m.key:>{w}}" for m, w in zip(columns, widths))
    better = f"{'better':<{width}}" + "".join(f"{m.direction:>{w}}" for m, w in zip(columns, widths))
    lines = [header, better, "-" * len(header)]
    for key, row in rows.items():
        cells = "".join(f"{'-':>{w}}" if row.get(m.key) is None else f"{row[m.key]:>{w}.4g}"
                        for m, w in zip(columns, widths))
        lines.append(f"{names[key] + f' ({key})':<{width}}{cells}")
    return "\n".join(lines)

