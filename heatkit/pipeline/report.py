"""What a heatmap run writes: the figure(s), the raw maps, the scores, the extras and the record,
into a run folder that appears whole or not at all."""
from __future__ import annotations

from pathlib import Path

from heatkit.pipeline import html
from heatkit.base.errors import UsageError
from heatkit.pipeline.output import atomic, publish_run, save_figure, write_csv, write_json, write_npz
from heatkit.pipeline.plotting import extras_figure, faithfulness_figure
from heatkit.pipeline.record import run_record


def write_run(run, out: Path, command: list[str] | None) -> Path:
    """The run's folder in `out`, named after its first image: heatmaps.npz, scores.json,
    scores.csv, the methods' extras, run.json and report.html first, then the figures: heatmaps.png
    (or one figure per image past figure.max_images), curves.png (faithfulness curves, one per
    image), the extras' panels. Ctrl-C and SIGTERM as output.publish_run says: a run stopped while
    it is written keeps what is whole, its run.json and page saying incomplete.

    One layout, whatever the number of images: heatmaps.npz keys each array `<stem>/<map key>`
    (`<stem>/input`, `<stem>/curves/<map key>/deletion`, `<stem>/torch/<map key>` for the second
    framework); scores.json holds the run's header and "images", a list of the images in order,
    each with its stem and its "methods"; scores.csv has one row per image and map."""
    items = run.items
    if not items:
        raise UsageError("the run was interrupted before any image was explained: there is nothing to write")

    def incomplete(path: Path) -> None:  # what is written is whole: keep it, and say the run is incomplete
        run.interrupted = True
        record = run_record(command, run.settings, run.request, True)
        write_json(path / "run.json", record)
        _write_page(path, html.run_page(run, record))

    stem = items[0].stem if len(items) == 1 else f"{items[0].stem}+{len(items) - 1}"
    folder, run.interrupted = publish_run(out, stem, run.interrupted, lambda path: _write_data(path, run, command),
                                          lambda path: _write_figures(path, run), incomplete)
    return folder


def _write_page(folder: Path, text: str) -> None:
    with atomic(folder / "report.html") as handle:
        handle.write(text.encode())


def _write_data(folder: Path, run, command: list[str] | None) -> None:
    items, several = run.items, len(run.items) > 1
    maps = {}
    for item in items:
        prefix = f"{item.stem}/"
        first = item.results[0]
        maps[f"{prefix}input"] = first.image.squeeze(-1) if first.image.shape[-1] == 1 else first.image
        maps.update({f"{prefix}{key}": value for key, value in first.maps.items()})
        for backend, other in zip(run.backends[1:], item.results[1:]):
            maps.update({f"{prefix}{backend}/{key}": value for key, value in other.maps.items()})
        for key, extras in first.extras.items():
            target = _extras_folder(folder, key, item, several)
            target.mkdir(parents=True)
            write_npz(target / "extras.npz", extras)
        maps.update({f"{prefix}curves/{key}/{curve}": scored[curve] for key, scored in first.drawn_curves.items()
                     for curve in ("deletion", "insertion")})
    write_npz(folder / "heatmaps.npz", maps)
    write_json(folder / "scores.json", {**run.header(), "images": run.rows()})
    write_csv(folder / "scores.csv", run.table())
    record = run_record(command, run.settings, run.request, run.interrupted)
    write_json(folder / "run.json", record)
    _write_page(folder, html.run_page(run, record))


def _write_figures(folder: Path, run) -> None:
    figure_cfg, items, several = run.settings["figure"], run.items, len(run.items) > 1
    if len(items) <= figure_cfg["max_images"]:
        save_figure(run.figure(), folder / "heatmaps.png", figure_cfg["dpi"])
    else:
        for item in items:
            save_figure(run.figure([item]), folder / f"heatmaps_{item.stem}.png", figure_cfg["dpi"])
    for item in items:
        first = item.results[0]
        for key, extras in first.extras.items():
            save_figure(extras_figure(extras, f"{run.names.get(key, key)}: {item.stem}"),
                        _extras_folder(folder, key, item, several) / "panels.png", figure_cfg["dpi"])
        if first.curves:
            save_figure(faithfulness_figure(first, run.names), folder / (f"curves_{item.stem}.png" if several else
                                                                          "curves.png"), figure_cfg["dpi"])


def _extras_folder(folder: Path, key: str, item, several: bool) -> Path:
    return folder / key / item.stem if several else folder / key
