"""How much of a map's attribution falls on the center pixel and the center crop, and the
printed tables of every score.

For the center-pixel model, whose probabilities depend on the center pixel alone, these
are ground-truth scores: a faithful map has center_rank 1 and center_share near 1.
"""
from __future__ import annotations

import numpy as np


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


def format_table(table: dict[str, dict], names: dict[str, str], random: dict | None = None) -> str:
    """The scores as a fixed-width text table, one method per line (and the random rankings')."""
    width = max(len(f"{names[key]} ({key})") for key in table) + 2
    curves = any("deletion_area" in row for row in table.values())
    header = f"{'method':<{width}}{'center_value':>14}{'center_rank':>13}{'center_share':>14}{'crop_share':>12}" + \
        (f"{'deletion':>10}{'insertion':>10}{'aopc':>9}" if curves else "") + f"{'seconds':>10}"
    lines = [header, "-" * len(header)]
    for key, row in table.items():
        label = f"{names[key]} ({key})"
        if "error" in row:
            lines.append(f"{label:<{width}}  failed: {row['error']}")
            continue
        if "not_applicable" in row:
            lines.append(f"{label:<{width}}  not applicable: {row['not_applicable']}")
            continue
        areas = "".join(f"{'-' if row.get(name) is None else format(row[name], '.3f'):>{width}}"
                        for name, width in (("deletion_area", 10), ("insertion_area", 10), ("aopc", 9))) \
            if curves else ""
        lines.append(f"{label:<{width}}{row['center_value']:>14.4g}{row['center_rank']:>13d}"
                     f"{row['center_share']:>14.3g}{row['crop_share']:>12.3g}{areas}{row['seconds']:>10.2f}")
    undefined = [key for key, row in table.items() if "undefined" in row]
    if undefined:
        lines.append(f"({', '.join(undefined)}: {table[undefined[0]]['undefined']})")
    if random:
        label = f"random ranking (sd of {random['draws']})"
        lines.append(f"{label:<{width}}{'':>53}{random['deletion_area']:>10.3f}{random['insertion_area']:>10.3f}"
                     f"{random['aopc']:>9.3f}")
        lines.append(f"{'':<{width}}{'':>53}{random['deletion_area_sd']:>10.3f}{random['insertion_area_sd']:>10.3f}"
                     f"{random['aopc_sd']:>9.3f}")
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

