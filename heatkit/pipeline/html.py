"""report.html: one static page a run folder (or a dataset folder) holds, to look at without a
server or a network. The page is its data (JSON in the page: the maps as float32, the scores, the
curves, the run record) and one script (report.js) that draws the maps on canvases with the
figure's colormaps, for zoom and hover, and sorts the tables. Functions of arrays and rows."""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from importlib import resources

import numpy as np

from heatkit.metrics.registry import ROW_METRICS
from heatkit.pipeline.plotting import INCOMPLETE, color_scale

THUMBNAIL = 64  # largest side of a dataset image's maps in its drill-down
DRILL_DOWN_IMAGES = 500  # a dataset page holds its first images' maps only (500 of 5 methods: about 10 MB)


def run_page(run, record: dict) -> str:
    """The page of a heatmap run: each image with its maps, the scores table, the curves, the record."""
    names, luts, figure, table = run.names, {}, run.settings["figure"], run.table()
    images = []
    named = (lambda c: f"{c} {run.class_names[c]}") if run.class_names else str
    for item in run.items:
        first = item.results[0]
        maps = [_map_entry(key, names[key], first, figure, luts) for key in names
                if key in first.maps or key in first.failures or key in first.skipped]
        images.append({"stem": item.stem, "source": item.source, "input": _png(first.image),
                       "gray": _png(first.image.mean(axis=-1, keepdims=True)),
                       "caption": f"predicted {named(first.predicted)}, explained {named(first.target)} "
                                  f"(p = {first.target_probability:.3g})"
                                  + (f", true {named(first.true_label)}" if first.true_label is not None else ""),
                       "top": [[named(c), p] for c, p in first.top],
                       "maps": maps, "curves": _curves(first.drawn_curves, names)})
    data = {"kind": "run", "title": f"heatkit: {', '.join(item.stem for item in run.items)}",
            "header": run.header(), "incomplete": INCOMPLETE if run.interrupted else None, "luts": luts,
            "images": images, "overlay": figure["overlay"] is True or (figure["overlay"] == "auto" and
                                                                       run.model.ground_truth is None),
            "overlay_alpha": figure["overlay_alpha"], "columns": _columns(table), "rows": table, "record": record}
    return page(data)


def dataset_page(rows: list[dict], total: int, leaderboard: list[dict], boards: str,
                 maps: dict[str, dict[str, np.ndarray]], figure: dict, record: dict) -> str:
    """The page of a dataset run: the leaderboard, the boards per category, the table of the first
    rows of the `total` (results.csv holds them all), and a drill-down to each image's maps (at
    most THUMBNAIL pixels a side, their values kept to 8 bits of their range). `maps` holds each
    image's maps by its key, for the images whose maps the page shows (the others' are named by
    their file)."""
    luts = {}
    images = [{"key": key, "maps": [_drawn(method, method, _shrink(attribution.astype(np.float64)), figure, luts,
                                           eight_bit=True) for method, attribution in found.items()]}
              for key, found in maps.items()]
    data = {"kind": "dataset", "title": f"heatkit dataset: {record.get('request', {}).get('dataset', '')}",
            "incomplete": None, "luts": luts, "images": images, "leaderboard": leaderboard, "boards": boards,
            "columns": _columns(rows), "rows": rows, "total": total, "record": record}
    return page(data)


def page(data: dict) -> str:
    """The page: its data as JSON, its style and its script inline. Every user string (a file
    name, a label, a setting, the output folder) is escaped for where it lands: the title as HTML
    text, the data as JSON whose <, > and & are \\u escapes (a name holding "<!--<script>" ended
    the data's script block, and the page stayed blank), the rest set by the script as text or
    attribute values, never as markup. A Content-Security-Policy lets only the page's own script
    run (by its hash): no inline handler, no other script, nothing fetched."""
    assets = resources.files("heatkit.pipeline")
    text = json.dumps(_json_safe(data), default=str, allow_nan=False)
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                              ("\u2029", "\\u2029")):
        text = text.replace(character, escape)
    script = f"\n{assets.joinpath('report.js').read_text()}"
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
              "base-uri 'none'; form-action 'none'")
    return (f"<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">\n"
            f"<title>{html.escape(data['title'])}</title>\n"
            f"<style>\n{assets.joinpath('report.css').read_text()}</style>\n</head>\n<body>\n"
            "<noscript><p>This page draws its maps, tables and curves with JavaScript, which is off: the figure "
            "is <a href=\"heatmaps.png\">heatmaps.png</a> beside it, the scores scores.csv.</p></noscript>\n"
            f"<script type=\"application/json\" id=\"data\">{text}</script>\n"
            f"<script>{script}</script>\n</body>\n</html>\n")


def _map_entry(key: str, name: str, result, figure: dict, luts: dict) -> dict:
    """A map of a run as the page draws it, or why the method gave none."""
    if key not in result.maps:
        reason = result.failures.get(key) or f"not applicable: {result.skipped[key]}"
        return {"key": key, "name": name, "error": reason}
    return _drawn(key, name, result.maps[key].astype(np.float32), figure, luts)


def _drawn(key: str, name: str, values: np.ndarray, figure: dict, luts: dict, eight_bit: bool = False) -> dict:
    """A map as the page draws it: its values (float32, or 8-bit levels of its range), its colormap
    and range (the figure's), whose lookup table joins `luts`."""
    colormap, low, high, _ = color_scale(values, figure["cmap"], figure["scale"])
    luts.setdefault(colormap, _lut(colormap))
    stored = np.round((values - low) / ((high - low) or 1.0) * 255).clip(0, 255).astype(np.uint8) if eight_bit \
        else values
    return {"key": key, "name": name, "shape": list(values.shape), "bytes": _base64(stored),
            "type": "uint8" if eight_bit else "float32", "cmap": colormap, "low": low, "high": high}


def _curves(curves: dict, names: dict[str, str]) -> list[dict]:
    return [{"key": key, "name": "random ranking" if key == "random" else names.get(key, key),
             **{curve: [round(float(v), 5) for v in scored[curve]] for curve in ("deletion", "insertion")},
             **{f"{curve}_area": float(scored[f"{curve}_area"]) for curve in ("deletion", "insertion")}}
            for key, scored in curves.items()]


def _columns(rows: list[dict]) -> list[dict]:
    """The scores table's metric columns, each with its name and better direction: those some row
    has a value of (a model without a ground truth has no center scores)."""
    return [{"key": metric.key, "name": metric.name, "direction": metric.direction} for metric in ROW_METRICS
            if any(row.get(metric.key) is not None for row in rows)]


def _lut(name: str) -> str:
    """A matplotlib colormap as 256 RGB bytes."""
    from matplotlib import colormaps

    return _base64((colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8))


def _shrink(values: np.ndarray) -> np.ndarray:
    """The map averaged over blocks, to at most THUMBNAIL pixels a side."""
    step = max(1, -(-max(values.shape) // THUMBNAIL))
    height, width = (-(-side // step) * step for side in values.shape)
    padded = np.pad(values, ((0, height - values.shape[0]), (0, width - values.shape[1])), mode="edge")
    return padded.reshape(height // step, step, width // step, step).mean(axis=(1, 3))


def _png(image: np.ndarray) -> str:
    from PIL import Image

    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _base64(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()).decode()


def _json_safe(value):
    """The data as JSON takes it: numpy scalars as Python's, NaN and infinite numbers as None (JSON
    has no NaN)."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
