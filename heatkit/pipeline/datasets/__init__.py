"""Dataset mode: every image of a dataset explained by the chosen methods, in this process or on a
Dask cluster that shares no disk with it, resumable, ending in one table.

The client lists the images (sources.py) and keys each by its content, the model's files and the
settings that change a result; it skips those whose file its folder holds (store.py), sends the
rest with the model to the workers (shipping.py, execution.py) and stores what comes back. At the
end the rows of the images asked for become results.parquet and results.csv, a leaderboard
(printed, and leaderboard.txt), summary.png and report.html (summary.py), beside run.json.
"""
from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heatkit.base.errors import UsageError
from heatkit.metrics import registry as metrics
from heatkit.metrics.registry import Reads
from heatkit.pipeline.datasets.execution import ImageOutcome, Job
from heatkit.pipeline.datasets.shipping import Bundle
from heatkit.pipeline.datasets.sources import Item, content_of, image_bytes, items, key_of, mask_of
from heatkit.pipeline.datasets.store import Store
from heatkit.pipeline.datasets.summary import Scores, Tables, category_boards, leaderboard, summary_figure, text_of

__all__ = ["DatasetRun", "Item", "Job", "category_boards", "items", "leaderboard", "run", "summary_figure"]
NOTES = 20  # notes of stretched images said, at most; the rest counted


@dataclass
class DatasetRun:
    """What a dataset run found, and where it wrote it: its rows are in results.parquet."""

    folder: Path
    images: int
    computed: int  # images computed by this run (the others were done before)
    failed: int  # maps that failed, and images that could not be read
    ground_truth: bool
    scores: Scores = field(default_factory=Scores)
    notes: list[str] = field(default_factory=list)  # images stretched by the resize, metrics left out
    leaderboard: list[dict] = field(default_factory=list)
    text: str = ""  # the leaderboard and the boards, as printed

    def table(self):
        import pandas as pd

        return pd.read_parquet(self.folder / "results.parquet")

    @property
    def rows(self) -> list[dict]:
        """One row per image x method (and one per image that could not be read), read from
        results.parquet: a missing value is None."""
        table = self.table()
        return table.astype(object).where(table.notna(), None).to_dict("records")


def run(job: Job, bundle: Bundle, dataset: list[Item], model, folder: Path, connect: Callable, batch_size: int,
        progress: bool, record: dict) -> DatasetRun:
    """Every image not done yet, where `connect()` says (a context giving a Dask client, or None
    for this process; entered only where there is work), then the summary of all of them. One run
    at a time writes a folder (a lock), and a run that ends in an error leaves no folder it made,
    unless it holds finished images."""
    from heatkit.base.progress import progress_bar
    from heatkit.pipeline.datasets import execution

    store = Store(folder)
    made = not folder.exists()
    notes: list[str] = []
    computed = [0]

    def stored(item: Item, outcome: ImageOutcome) -> None:
        item.data = item.mask = None
        if outcome.error is not None:
            item.error = outcome.error
            return
        item.key = outcome.key
        store.write(outcome.key, outcome.maps, outcome.rows)
        if item.url:
            store.remember(item.source, item.size, outcome.key)
        notes.extend(outcome.notes)
        computed[0] += 1

    try:
        with store.held():
            with progress_bar(len(dataset), "images", "image", progress) as bar:
                batches = _batches(dataset, store, job, bundle, batch_size, bar.update)
                first = next(batches, None)
                if first is not None:
                    batches = itertools.chain([first], batches)
                    kept = lambda: sum(store.finished(item.key) for item in dataset if item.key)  # noqa: E731
                    with connect() as cluster:
                        if cluster is None:
                            execution.in_process(model, job, batches, stored, bar.update)
                        else:
                            execution.on_dask(cluster, job, bundle, batches, stored, bar.update, kept)
            found = DatasetRun(folder, len(dataset), computed[0], failed=0, ground_truth=model.ground_truth is not None,
                               notes=_few(notes))
            _summarise(found, store, dataset, job.cfg, record)
    except UsageError:
        if made and not any(store.maps.glob("*.npz")):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return found


def _batches(dataset: list[Item], store: Store, job: Job, bundle: Bundle, size: int,
             skipped: Callable[[int], None]) -> Iterator[list[Item]]:
    """The images to compute, a batch at a time, read as they are asked for: each file's bytes
    (and its mask's) for the worker, its key from them; a URL is left to its worker, unless an
    earlier run stored it. An image whose key another holds is computed once. Those done, and
    those that cannot be read, are counted by `skipped`."""
    remembered, seen, batch = store.remembered(), set(), []
    for item in dataset:
        if item.url:
            item.key = remembered.get((item.source, item.size), "")
            if item.key and store.finished(item.key):
                skipped(1)
                continue
        else:
            try:
                item.data = None if item.pixels is not None else image_bytes(item)
            except OSError as error:
                item.error = f"cannot read {item.source} ({error.strerror or error})"
                skipped(1)
                continue
            item.key = key_of(content_of(item), bundle.fingerprint, job.what)
            if item.key in seen or store.finished(item.key):
                item.data = None
                skipped(1)
                continue
            seen.add(item.key)
        item.mask = mask_of(item, job.cfg)
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _few(notes: list[str]) -> list[str]:
    return notes[:NOTES] + ([f"and {len(notes) - NOTES} more images stretched"] if len(notes) > NOTES else [])


def _summarise(found: DatasetRun, store: Store, dataset: list[Item], cfg: dict, record: dict) -> None:
    """The rows of every image, from its file (two files of one image's bytes share it, each
    keeping its name and label), into the tables and the scores; then the boards, the figure,
    run.json and report.html."""
    from heatkit.pipeline import html
    from heatkit.pipeline.output import atomic, save_figure, write_json

    graded, notes = grade_together(store, dataset, cfg)
    found.notes += notes
    try:
        tables = Tables(store.folder)
    except OSError as error:
        raise UsageError(f"cannot write in {store.folder} ({error.strerror or error}); free some space or choose "
                         "another folder with -op") from None
    published = False
    try:
        for item in dataset:
            for row in _rows_of(item, store):
                row.update(graded.get((row["key"], row["method"]), {}))
                tables.add(row)
                found.scores.add(row)
                found.failed += bool(row.get("error")) and not str(row["error"]).startswith("not applicable")
        published = True
    except OSError as error:
        raise UsageError(f"cannot write the tables in {store.folder} ({error.strerror or error}); free some space or "
                         "choose another folder with -op") from None
    finally:
        tables.close(published)
    found.text, found.leaderboard = text_of(found.scores, found.ground_truth, cfg["seed"])
    with atomic(store.folder / "leaderboard.txt") as handle:
        handle.write((found.text + "\n").encode())
    save_figure(summary_figure(found.scores, cfg["seed"]), store.folder / "summary.png", 120)
    record = {**record, "images": found.images, "computed": found.computed, "leaderboard": found.leaderboard}
    write_json(store.folder / "run.json", record)
    shown = list(dict.fromkeys(row["key"] for row in tables.first if row["method"] is not None))
    maps = {key: store.read(key)[0] for key in shown[:html.DRILL_DOWN_IMAGES]}
    with atomic(store.folder / "report.html") as handle:
        handle.write(html.dataset_page(tables.first, tables.count, found.leaderboard, found.text, maps,
                                       record["settings"]["figure"], record).encode())


def _rows_of(item: Item, store: Store) -> list[dict]:
    if item.error is None and not store.finished(item.key):  # removed, or damaged, since this run stored it
        item.error = f"the maps file of {item.source} went missing during the run; rerun to compute it again"
    if item.error is not None:
        return [{"image": item.source, "key": item.key or None, "label": item.label, "method": None,
                 "error": item.error}]
    return [{**row, "image": item.source, "label": item.label} for row in store.rows(item.key)]


def grade_together(store: Store, dataset: list[Item], cfg: dict) -> tuple[dict, list[str]]:
    """The metrics that grade a dataset's images together (Sufficiency), one method at a time from
    the images' files, by (key, method); a note where a method's maps and their distances would
    not fit in perturbation.memory_mb."""
    graded = [metric for metric in metrics.COMPUTED if metric.reads is Reads.IMAGES]
    keys = list(dict.fromkeys(item.key for item in dataset if item.error is None and store.finished(item.key)))
    predicted, methods = {}, {}
    for key in keys:
        for row in store.rows(key):
            if row.get("method") not in (None, "random") and not row.get("error"):
                predicted[key] = row["predicted"]
                methods.setdefault(row["method"], []).append(key)
    budget, found, notes = cfg["perturbation"]["memory_mb"] << 20, {}, []
    for method, holding in methods.items():
        maps = []
        for key in holding:
            with np.load(store.file(key), allow_pickle=False) as stored:
                maps.append(stored[method])
            if len(maps) * (maps[0].size * 8 + len(holding) * 10) > budget:  # the maps, then the distances
                limit = cfg["perturbation"]["memory_mb"]
                notes.append(f"{', '.join(metric.name for metric in graded)} of {method}: the dataset's maps and "
                             f"their distances need more than perturbation.memory_mb ({limit} MB); left out")
                break
        else:
            scores = metrics.score_images([{method: attribution} for attribution in maps],
                                          np.array([predicted[key] for key in holding]), cfg)
            found.update({(key, method): score.get(method, {}) for key, score in zip(holding, scores)})
    return found, notes

