"""What a run writes: the figure(s), the raw maps, the scores and the extras, for one or more images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from core.compare import agreement
from core.explain import scores
from core.output import save_figure, write_json, write_npz
from core.plotting import ImageResult, extras_figure, heatmap_figure


@dataclass
class Explained:
    """One input image and its results, one per backend (two with --compare-backends)."""

    stem: str
    source: str  # the image file, or a description of the random image
    results: list[ImageResult]


def image_scores(item: Explained, backends: list[str], names: dict[str, str], crop: int) -> dict:
    first = item.results[0]
    row = {"image": item.source, "true_label": first.true_label, "predicted_label": first.predicted,
           "explained_class": first.target, "explained_probability": first.target_probability,
           "methods": scores(first, crop)}
    if len(item.results) > 1:
        second = item.results[1]
        row["compare_backends"] = {
            "backends": backends,
            f"methods_{backends[1]}": scores(second, crop),
            "agreement": {key: agreement(first.maps[key], second.maps[key])
                          for key in names if key in first.maps and key in second.maps}}
    return row


def write(folder: Path, items: list[Explained], backends: list[str], names: dict[str, str], cfg: dict,
          header: dict, class_names: list[str] | None) -> list[dict]:
    """Writes the run's files into `folder`; returns each image's scores. One image keeps plain keys
    in heatmaps.npz and a flat scores.json; several prefix the keys with `<stem>/` and list the
    images under "images"."""
    figure_cfg = cfg["figure"]
    several = len(items) > 1
    rows = [image_scores(item, backends, names, figure_cfg["crop"]) for item in items]

    def draw(group: list[Explained], path: Path):
        figure = heatmap_figure([r for item in group for r in item.results], names, crop=figure_cfg["crop"],
                                column_width=figure_cfg["column_width"], cmap=figure_cfg["cmap"],
                                class_names=class_names)
        save_figure(figure, path, figure_cfg["dpi"])

    if len(items) <= figure_cfg["max_images"]:
        draw(items, folder / "heatmaps.png")
    else:
        for item in items:
            draw([item], folder / f"heatmaps_{item.stem}.png")

    maps = {}
    for item in items:
        prefix = f"{item.stem}/" if several else ""
        first = item.results[0]
        maps[f"{prefix}input"] = first.image.squeeze(-1) if first.image.shape[-1] == 1 else first.image
        maps.update({f"{prefix}{key}": value for key, value in first.maps.items()})
        for backend, other in zip(backends[1:], item.results[1:]):
            maps.update({f"{prefix}{backend}/{key}": value for key, value in other.maps.items()})
        for key, extras in first.extras.items():
            target = folder / key / item.stem if several else folder / key
            target.mkdir(parents=True)
            write_npz(target / "extras.npz", extras)
            save_figure(extras_figure(extras, f"{names.get(key, key)}: {item.stem}"), target / "panels.png",
                        figure_cfg["dpi"])
    write_npz(folder / "heatmaps.npz", maps)
    write_json(folder / "scores.json", {**header, "images": rows} if several else {**header, **rows[0]})
    return rows


def unique_stems(stems: list[str]) -> list[str]:
    """The stems, with _2, _3, ... added where two images share one."""
    seen: dict[str, int] = {}
    unique = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return unique
