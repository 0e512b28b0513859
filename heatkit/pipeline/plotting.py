"""The heatmap figure, a pure function of arrays: no pyplot state, no rcParams changes that outlive it.

Per image, the input and every method's full map, in rows of a settable length, each with a row
of the maps' center crops below it where the center is what the model's ground truth is about.
A map with both signs uses a diverging colormap symmetric about 0; a map of one sign spans its
own range (color_scale). Crops share their full map's scale, so a crop shows how the center
compares with the whole map.
"""
from __future__ import annotations

import functools
import textwrap

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from heatkit.pipeline.scores import center_crop

LEFT_MARGIN = 1.9  # inches, for the label text
RIGHT_MARGIN = 1.9  # inches, for the top-k list
ROW_HEIGHT = 2.0  # inches per row of panels
TITLE_HEIGHT = 0.75  # inches above each row pair for the column titles
WARNING_HEIGHT = 0.45  # inches above everything for a warning line
INCOMPLETE = "incomplete: the run was interrupted, and only the maps it finished are shown"  # figure and page
MARGIN_FONT = 9  # points, of the label text and the top-k list


def literal_text(make):
    """A figure function whose every text is drawn as written: file names, labels and settings
    are the user's, and matplotlib read "$...$" in them as mathtext (a file named a$x^$b.png was a
    ParseSyntaxException; one such name hung for 400 s)."""
    @functools.wraps(make)
    def made(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False}):
            return make(*args, **kwargs)
    return made


@literal_text
def heatmap_figure(results: list, names: dict[str, str], options: dict, ground_truth: bool,
                   class_names: list[str] | None = None, warning: str | None = None) -> Figure:
    """Per ImageResult, the input and its maps in rows of at most options["maps_per_row"] maps,
    each with a row of their center crops below it where options["crop_row"] asks for one ("auto":
    where the model declares a ground truth). `names` gives each map key's display name, in column
    order; `options` are the figure settings; `warning`, where given, heads the figure in red (an
    interrupted run's). options["overlay"] draws each full map over the photo ("auto": on a model
    that declares no ground truth, whose images are photos), its colors as opaque as the map is
    strong (overlay_alpha at the map's largest |value|), as show_cam_on_image and
    visualize_image_attr blend them; the colorbar keeps the map's own scale."""
    # a method that applies to none of the images gets no column (the table says why)
    keys = [key for key in names if any(key in r.maps or key in r.failures for r in results)]
    crop = options["crop"] if options["crop_row"] is True or (options["crop_row"] == "auto" and ground_truth) else None
    overlay = options["overlay_alpha"] if options["overlay"] is True or (options["overlay"] == "auto" and
                                                                          not ground_truth) else 0.0
    per_row = options["maps_per_row"] or max(1, len(keys))
    blocks = [keys[start:start + per_row] for start in range(0, max(1, len(keys)), per_row)]
    columns, rows = 1 + min(per_row, max(1, len(keys))), 2 if crop else 1
    label = (lambda c: str(c) if class_names[c] == str(c) else f"{c} {class_names[c]}") if class_names else str
    margins = [(_label_lines(result, label), _top_lines(result, label)) for result in results]
    left = max(LEFT_MARGIN, max(_text_inches(lines) for lines, _ in margins) + 0.3)
    right = max(RIGHT_MARGIN, max(_text_inches(lines) for _, lines in margins) + 0.75)
    width = left + columns * options["column_width"] + right
    block_count = len(results) * len(blocks)
    head = WARNING_HEIGHT if warning else 0.0
    height = block_count * (rows * ROW_HEIGHT + TITLE_HEIGHT) + head
    fig = Figure(figsize=(width, height))
    if warning:
        fig.text(0.5, 1 - 0.5 * head / height, warning, ha="center", va="center", color="red", fontsize=11)
    grid = fig.add_gridspec(
        (rows + 1) * block_count, columns, height_ratios=[TITLE_HEIGHT, *[ROW_HEIGHT] * rows] * block_count,
        left=left / width, right=1 - right / width, top=1.0 - head / height, bottom=0.1 / height, wspace=0.45,
        hspace=0.08)
    for index, (result, (label_lines, top_lines)) in enumerate(zip(results, margins)):
        for number, block in enumerate(blocks):
            full_row = (rows + 1) * (index * len(blocks) + number) + 1
            pairs = [[fig.add_subplot(grid[full_row + row, column]) for row in range(rows)]
                     for column in range(1 + len(block))]
            if number == 0:
                _input_panels(pairs[0], result, crop)
                _margins(fig, grid, full_row, 1 + len(block), label_lines, top_lines)
            else:
                for panel in pairs[0]:
                    panel.set_axis_off()
            for key, axes in zip(block, pairs[1:]):
                if key in result.maps:
                    _map_panels(axes, result.maps[key], names[key], crop, options["cmap"], options["scale"])
                    if overlay:
                        _over_the_photo(axes[0], result.maps[key], result.image, overlay, options)
                elif key in result.skipped:
                    _failed_panels(axes, names[key], f"not applicable: {result.skipped[key]}")
                else:
                    _failed_panels(axes, names[key], result.failures.get(key, "not computed"))
    return fig


def color_scale(values: np.ndarray, cmap: str, scale: str) -> tuple[str, float, float, list[float]]:
    """(colormap, low, high, colorbar ticks) for a map. "symmetric": the diverging colormap about 0.
    "auto": that, for a map with both signs; a map of one sign spans its own range on the
    colormap's half of that sign (white to red, or blue to white), so that a narrow range such as
    RISE's 0.487 to 0.554 shows its structure instead of one color."""
    low, high = float(values.min()), float(values.max())
    if scale == "auto" and low >= 0 and high > low:
        return "Reds", low, high, [low, high]
    if scale == "auto" and high <= 0 and high > low:
        return "Blues_r", low, high, [low, high]
    extreme = max(abs(low), abs(high)) or 1.0
    return cmap, -extreme, extreme, [-extreme, 0.0, extreme]


def show(figure: Figure) -> None:
    """Shows a figure in a window through pyplot, which adopts it: only when a caller asks."""
    import matplotlib.pyplot as plt

    plt.figure(figure)
    plt.show()


def _input_panels(axes, result, crop):
    image = result.image[..., 0] if result.image.shape[-1] == 1 else result.image
    full = axes[0]
    full.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    full.set_title(f"{result.name}\nInput", fontsize=9)
    if crop:
        height, width = image.shape[:2]
        full.add_patch(Rectangle((width // 2 - crop / 2, height // 2 - crop / 2), crop, crop,
                                 fill=False, edgecolor="red", linewidth=0.8))
        axes[1].imshow(center_crop(image, crop), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        _outline_center(axes[1], crop)
        axes[1].set_title(f"center {crop}x{crop}", fontsize=8)
    for panel in axes:
        _bare(panel)


def _map_panels(axes, attribution, name, crop, cmap, scale):
    colormap, low, high, ticks = color_scale(attribution, cmap, scale)
    shown = [(axes[0], attribution)] + ([(axes[1], center_crop(attribution, crop))] if crop else [])
    for panel, values in shown:
        image = panel.imshow(values, cmap=colormap, vmin=low, vmax=high, interpolation="nearest")
        colorbar = panel.figure.colorbar(image, ax=panel, fraction=0.046, pad=0.03, ticks=ticks)
        colorbar.ax.set_yticklabels([f"{tick:.3g}" for tick in ticks], fontsize=6)
        _bare(panel)
    if crop:
        _outline_center(axes[1], crop)
    axes[0].set_title(f"{name}\nmax {attribution.max():.3g}\nmin {attribution.min():.3g}", fontsize=9)


def _over_the_photo(panel, attribution, photo, alpha: float, options: dict) -> None:
    """The map's panel redrawn over the photo in gray: each pixel's color as opaque as its |value|
    is large, up to `alpha` (its colorbar stays the map's)."""
    from matplotlib import colormaps

    colormap, low, high, _ = color_scale(attribution, options["cmap"], options["scale"])
    colors = colormaps[colormap]((attribution - low) / ((high - low) or 1.0))
    strength = np.abs(attribution) / (np.abs(attribution).max() or 1.0)
    if low >= 0 or high <= 0:  # a map of one sign: strength over its own range
        strength = (attribution - low) / ((high - low) or 1.0) if low >= 0 else (high - attribution) / ((high - low) or 1.0)
    colors[..., 3] = alpha * strength
    gray = photo.mean(axis=-1)
    panel.images[0].set_visible(False)  # the map alone stays in the colorbar
    panel.imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    panel.imshow(colors, interpolation="nearest")


def _failed_panels(axes, name, reason):
    axes[0].set_title(name, fontsize=9)
    axes[0].text(0.5, 0.5, textwrap.fill(reason, 28, max_lines=8), ha="center", va="center", fontsize=7,
                 color="0.3", transform=axes[0].transAxes)
    for panel in axes:
        _bare(panel)
        panel.set_frame_on(False)


def _label_lines(result, label) -> list[str]:
    return [f"true: {label(result.true_label)}" if result.true_label is not None else "true: unknown",
            f"predicted: {label(result.predicted)}",
            f"explained: {label(result.target)}",
            f"p(explained) = {_probability(result.target_probability)}"]


def _top_lines(result, label) -> list[str]:
    return [f"top {len(result.top)}"] + [f"{label(c)}: {_probability(p)}" for c, p in result.top]


def _text_inches(lines: list[str]) -> float:
    """A generous width of the longest line at the margins' 9-point font."""
    return max(map(len, lines)) * 0.6 * MARGIN_FONT / 72


def _margins(fig, grid, full_row, columns, label_lines, top_lines):
    first = grid[full_row, 0].get_position(fig)
    fig.text(first.x0 - 0.1 / fig.get_figwidth(), (first.y0 + first.y1) / 2, "\n".join(label_lines),
             ha="right", va="center", fontsize=MARGIN_FONT)
    last = grid[full_row, columns - 1].get_position(fig)
    fig.text(last.x1 + 0.55 / fig.get_figwidth(), (last.y0 + last.y1) / 2, "\n".join(top_lines),
             ha="left", va="center", fontsize=MARGIN_FONT)


def _probability(p: float) -> str:
    return f"{p:.5f}" if p >= 1e-3 else f"{p:.2e}"


def _outline_center(axes, crop):
    axes.add_patch(Rectangle((crop // 2 - 0.5, crop // 2 - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1))


def _bare(axes):
    axes.set_xticks([])
    axes.set_yticks([])



@literal_text
def extras_figure(extras: dict[str, np.ndarray], title: str) -> Figure:
    """A method's extra arrays: each image in a panel, then every curve on one set of axes."""
    images = {name: values for name, values in extras.items() if values.ndim >= 2}
    curves = {name: values for name, values in extras.items() if values.ndim == 1}
    columns = len(images) + bool(curves)
    fig = Figure(figsize=(3.2 * columns, 3.4))
    axes = fig.subplots(1, columns, squeeze=False)[0]
    for panel, (name, values) in zip(axes, images.items()):
        gray = values.ndim == 2 or values.shape[-1] == 1
        panel.imshow(values[..., 0] if values.ndim == 3 and gray else values, cmap="gray" if gray else None,
                     vmin=0, vmax=1, interpolation="nearest")
        panel.set_title(name, fontsize=9)
        _bare(panel)
    if curves:
        plot = axes[-1]
        for name, values in curves.items():
            plot.plot(np.arange(1, len(values) + 1), values, label=name, linewidth=1)
        plot.set_xlabel("step", fontsize=8)
        if all((values > 0).all() for values in curves.values()):
            plot.set_yscale("log")
        plot.legend(fontsize=7)
        plot.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


@literal_text
def grid_figure(rows: list[tuple[str, list[np.ndarray | None], list[str]]], *, column_width: float,
                cmap: str, title: str) -> Figure:
    """A montage: one row per (label, maps, panel titles); each map on its own symmetric scale.
    A missing map (None) leaves its panel blank; a text in its place (why it is missing) is written there."""
    columns = max(len(maps) for _, maps, _ in rows)
    width, height = 1.6 + column_width * columns, 0.6 + 2.1 * len(rows)
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for row, (label, maps, titles) in enumerate(rows):
        for column in range(columns):
            panel = axes[row, column]
            _bare(panel)
            values = maps[column] if column < len(maps) else None
            if not isinstance(values, np.ndarray):
                panel.set_frame_on(False)
                if values is not None:
                    panel.text(0.5, 0.5, textwrap.fill(values, 24, max_lines=6), ha="center", va="center", fontsize=6,
                               color="0.3", transform=panel.transAxes)
                continue
            colormap, low, high, _ = color_scale(values, cmap, "auto")
            panel.imshow(values, cmap=colormap, vmin=low, vmax=high, interpolation="nearest")
            panel.set_title(textwrap.fill(titles[column], 24), fontsize=7)
        axes[row, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(textwrap.fill(title, int(width * 11)), fontsize=9)
    fig.subplots_adjust(left=1.4 / width, right=0.98, top=1 - 0.75 / height, bottom=0.02, wspace=0.08, hspace=0.12)
    return fig


@literal_text
def curves_figure(steps: list[str], curves: dict[str, dict[str, list[float]]], *, title: str) -> Figure:
    """One panel per metric: each method's similarity to the original map against the step."""
    metrics = list(next(iter(curves.values())))
    fig = Figure(figsize=(3.4 * len(metrics), 3.6))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    positions = np.arange(len(steps))
    for panel, metric in zip(axes, metrics):
        for method, values in curves.items():
            panel.plot(positions, values[metric], marker="o", markersize=3, linewidth=1, label=method)
        panel.set_xticks(positions, steps, rotation=60, ha="right", fontsize=7)
        panel.set_ylim(-1.05, 1.05)
        panel.axhline(0, color="0.8", linewidth=0.5)
        panel.set_title(metric, fontsize=9)
        panel.tick_params(labelsize=7)
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


@literal_text
def faithfulness_figure(result, names: dict[str, str]) -> Figure:
    """Deletion and insertion curves of every map of one image (ImageResult.curves), the random
    rankings' mean dashed, each with its area in the legend."""
    fig = Figure(figsize=(8.0, 3.4))
    axes = fig.subplots(1, 2)
    for panel, curve in zip(axes, ("deletion", "insertion")):
        for key, scored in result.drawn_curves.items():
            values = scored[curve]
            label = f"{names.get(key, key) if key != 'random' else 'random ranking'}: {scored[curve + '_area']:.3f}"
            panel.plot(np.linspace(0, 1, values.size), values, linewidth=1, label=label,
                       **({"linestyle": "--", "color": "0.4"} if key == "random" else {}))
        panel.set_xlabel(f"fraction of the image {'deleted' if curve == 'deletion' else 'inserted'}", fontsize=8)
        panel.set_ylabel(f"p(class {result.target})", fontsize=8)
        panel.set_title(f"{curve} (area: {'low' if curve == 'deletion' else 'high'} is faithful)", fontsize=9)
        panel.set_ylim(-0.02, 1.02)
        panel.tick_params(labelsize=7)
        panel.legend(fontsize=6)
    fig.suptitle(f"faithfulness curves: {result.name}", fontsize=10)
    fig.tight_layout()
    return fig
