"""What a heatmap run writes: the figure(s), the raw maps, the scores, the extras and the record,
into a run folder that appears whole or not at all."""
from __future__ import annotations

from pathlib import Path

from heatkit.pipeline.output import RunFolder, save_figure, write_json, write_npz
from heatkit.pipeline.plotting import extras_figure, faithfulness_figure
from heatkit.pipeline.record import run_record


def write_run(run, out: Path, command: list[str] | None) -> Path:
    """The run's folder in `out`, named after its first image: heatmaps.png (or one figure per
    image past figure.max_images), curves.png (faithfulness curves, one per image), heatmaps.npz
    (the maps, and the curves under curves/), scores.json, the methods' extras and run.json.
    One image keeps plain keys in heatmaps.npz and a flat scores.json; several prefix the keys
    with `<stem>/` and list the images under "images"."""
    items = run.items
    folder = RunFolder(out, items[0].stem if len(items) == 1 else f"{items[0].stem}+{len(items) - 1}")
    try:
        _write(folder.path, run, command)
    except BaseException:
        folder.discard()
        raise
    return folder.publish()


def _write(folder: Path, run, command: list[str] | None) -> None:
    figure_cfg, items, several = run.settings["figure"], run.items, len(run.items) > 1
    if len(items) <= figure_cfg["max_images"]:
        save_figure(run.figure(), folder / "heatmaps.png", figure_cfg["dpi"])
    else:
        for item in items:
            save_figure(run.figure([item]), folder / f"heatmaps_{item.stem}.png", figure_cfg["dpi"])
    maps = {}
    for item in items:
        prefix = f"{item.stem}/" if several else ""
        first = item.results[0]
        maps[f"{prefix}input"] = first.image.squeeze(-1) if first.image.shape[-1] == 1 else first.image
        maps.update({f"{prefix}{key}": value for key, value in first.maps.items()})
        for backend, other in zip(run.backends[1:], item.results[1:]):
            maps.update({f"{prefix}{backend}/{key}": value for key, value in other.maps.items()})
        for key, extras in first.extras.items():
            target = folder / key / item.stem if several else folder / key
            target.mkdir(parents=True)
            write_npz(target / "extras.npz", extras)
            save_figure(extras_figure(extras, f"{run.names.get(key, key)}: {item.stem}"), target / "panels.png",
                        figure_cfg["dpi"])
        if first.curves:
            save_figure(faithfulness_figure(first, run.names), folder / (f"curves_{item.stem}.png" if several else
                                                                          "curves.png"), figure_cfg["dpi"])
            maps.update({f"{prefix}curves/{key}/{curve}": scored[curve] for key, scored in first.curves.items()
                         for curve in ("deletion", "insertion")})
    write_npz(folder / "heatmaps.npz", maps)
    rows = run.rows()
    write_json(folder / "scores.json", {**run.header(), "images": rows} if several else {**run.header(), **rows[0]})
    write_json(folder / "run.json", run_record(command, run.settings, run.request, run.interrupted))
