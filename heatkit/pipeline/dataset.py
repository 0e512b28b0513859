"""Dataset mode: every image of a dataset explained by the chosen methods, on Dask workers (or in
this process), resumable, ending in one table.

A dataset run's folder holds one file per image, maps/<key>.npz (its maps, and its rows of
scores as JSON), written whole or not at all. The key hashes the image's pixels, the model's
files, the methods and the settings that change a result (not where the folder is): rerunning
the same command, from wherever the folder was moved, finds what is done and whole and computes
only the rest; a changed setting computes everything anew. One run at a time holds the folder.
At the end the rows of the images asked for become results.parquet and results.csv, a
leaderboard (printed, and leaderboard.txt) and summary.png, beside run.json.

Tasks are batches of images. A worker process loads the model once per run and keeps it. A task
whose worker dies is rerun on another (Dask reschedules it; `retries` covers a task that raises);
a rerun writes the same file, so nothing is lost or duplicated. Every image runs the same code on
one torch thread, so its maps do not depend on the scheduling.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from heatkit.base.errors import UsageError
from heatkit.base.images import IMAGE_SUFFIXES, load_image
from heatkit.metrics import registry as metrics
from heatkit.metrics.registry import METRICS, ROW_METRICS, Needs
from heatkit.pipeline.faithfulness import AREAS
from heatkit.pipeline.plotting import literal_text

SCORES = (*(metric.key for metric in ROW_METRICS), "seconds")  # the columns every method row has
SUMMARY_COLUMNS = 5  # score panels a row of summary.png
RESAMPLES = 1000  # bootstrap resamples of a leaderboard interval
WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}  # one core a worker


@dataclass(frozen=True)
class Job:
    """What every task needs to rebuild the run in a worker process: plain, picklable values."""

    model: str  # the model file, or net.py:factory
    trust: bool
    cfg: dict  # the validated settings
    methods: tuple[str, ...]
    backend: str
    out: str  # the dataset run's folder


@dataclass
class Item:
    """One image of the dataset."""

    stem: str
    source: str
    pixels: np.ndarray | None  # (H, W, C) in [0, 1]; None where the file cannot be read
    label: str | int | None = None  # from the folder, the CSV, or the generator
    key: str = ""
    error: str | None = None  # why the file cannot be read: the image is a row with it, the others run


@dataclass
class DatasetRun:
    """What a dataset run found: one row per image x method, and where it wrote them."""

    folder: Path
    rows: list[dict]
    computed: int  # images computed by this run (the others were done before)
    ground_truth: bool
    notes: list[str] = field(default_factory=list)  # images stretched by the resize, metrics left out
    leaderboard: list[dict] = field(default_factory=list)
    text: str = ""  # the leaderboard as printed

    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows)


# ---- the images ----
def items(source: str, model, cfg: dict) -> tuple[list[Item], list[str]]:
    """The dataset's images, and the notes of reading them: `random:N` (seeded, with chosen center
    classes, on a center-pixel model), `digits` (the held-out digits the digits CNN was not trained
    on), or a folder of images (recursively; labels from the first subfolder's name, or from
    labels.csv with `file,label` rows). A file that cannot be read is an Item with its error."""
    from heatkit.base import data

    height, width, channels = model.input_shape
    if source.startswith("random:"):
        count = _count(source)
        if data.ground_truth_mask(model.ground_truth, (height, width)) is None:
            raise UsageError(f"--dataset {source} makes center-pixel (or region) images; {model.name} is neither "
                             "a center-pixel nor a region model")
        centers = np.random.default_rng(cfg["seed"]).integers(0, model.num_classes, count)
        images = data.center_pixel_images(count, height, model.num_classes, cfg["seed"], centers, model.ground_truth)
        return [Item(f"random{i}", f"random:{i}", image, int(center)) for i, (image, center) in
                enumerate(zip(images, centers))], []
    if source == "digits":
        made = model.card.get("settings", {})
        if (height, width, channels) != (made.get("image_size"), made.get("image_size"), 1):
            raise UsageError(f"--dataset digits needs the digits CNN (models/digits.h5); {model.name} is another model")
        _, _, images, labels = data.digits(height, made["held_out"], made["seed"])
        return [Item(f"digit{i}", f"digits:{i}", image, int(label))
                for i, (image, label) in enumerate(zip(images, labels))], []
    folder = Path(source)
    if not folder.is_dir():
        raise UsageError(f"--dataset {source}: give a folder of images, random:N or digits")
    files = dataset_files(folder)
    if not files:
        raise UsageError(f"--dataset {source}: the folder and its subfolders hold no image files "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    labels = _csv_labels(folder, {relative.as_posix() for relative in files}) \
        if (folder / "labels.csv").is_file() else {}
    found, notes = [], []
    for relative in files:
        label = labels.get(relative.as_posix(), relative.parts[0] if len(relative.parts) > 1 else None)
        stem, path = relative.with_suffix("").as_posix().replace("/", "_"), folder / relative
        try:
            pixels = load_image(path, model.input_shape, cfg["max_image_pixels"], cfg["preprocess"]["resize"],
                                cfg["preprocess"]["max_stretch"], notes)
            found.append(Item(stem, str(path), pixels, label))
        except UsageError as error:
            found.append(Item(stem, str(path), None, label, error=str(error)))
    return found, notes


def dataset_files(folder: Path) -> list[Path]:
    """The image files below `folder`, relative to it, sorted: its own and every subfolder's, links
    followed but never twice into one folder (a link to a folder above makes no loop). Hidden
    files and folders are left out."""
    found, seen = [], set()
    for root, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found += [Path(root, name).relative_to(folder) for name in names
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _count(source: str) -> int:
    count = source.partition(":")[2]
    if not count.isdigit() or int(count) < 1:
        raise UsageError(f"--dataset {source}: give random:N with N a positive number of images")
    return int(count)


def _csv_labels(folder: Path, files: set[str]) -> dict[str, str]:
    """labels.csv's labels by file (relative to the folder): a header row `file,label`, then one row
    per image. A file named twice, a file not in the folder or a row without a label refuses it."""
    import csv
    import io

    path = folder / "labels.csv"
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except UnicodeDecodeError as error:
        raise UsageError(f"{path} is not UTF-8 text (byte {error.start} is 0x{error.object[error.start]:02x}); save "
                         "it as UTF-8") from None
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror})") from None
    if not rows or [cell.strip().lower() for cell in rows[0][:2]] != ["file", "label"]:
        raise UsageError(f"{path} must begin with the header row file,label; its first row is "
                         f"{','.join(rows[0]) if rows else 'empty'}")
    labels, first, problems = {}, {}, []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        name, label = row[0].strip(), row[1].strip() if len(row) > 1 else ""
        if not label:
            problems.append(f"row {number} ({name}) has no label")
        elif name in first:
            problems.append(f"row {number} names {name} again (row {first[name]})")
        elif name not in files:
            problems.append(f"row {number} names {name}, which is no image of the folder")
        else:
            first[name], labels[name] = number, label
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise UsageError(f"{path}: {'; '.join(problems[:5])}{more}; fix those rows")
    return labels


# Settings that change no map and no score: a dataset folder moved, copied or given another
# model path, or the figure re-styled, still resumes (figure.crop sets crop_share: it counts)
NOT_RESULTS = ("out_path", "model_path", "weights", "custom_objects", "max_image_pixels", "skip_bad_images",
               "scheduler_timeout", "figure.", "sanity.", "growing_patch.", "center_pixel.", "digits.", "image_size",
               "num_classes", "perturbation.warn_seconds")


def result_settings(cfg: dict) -> dict:
    """The settings that change an image's maps or scores."""
    from heatkit.pipeline.config import flatten

    def counts(key: str) -> bool:
        return key == "figure.crop" or not any(key == name or name.endswith(".") and key.startswith(name)
                                               for name in NOT_RESULTS)
    return {key: value for key, value in flatten(cfg).items() if counts(key)}


def fingerprint(model) -> str:
    """A hash of the model's files (a model object: its weights)."""
    digest = hashlib.sha256()
    paths = [model.path, model.path.with_suffix(".pt"), model.path.with_suffix(".json")] if model.path else []
    paths += [path for path in (model.weights, model.custom_objects) if path is not None]
    if model.source and ".py:" in model.source:
        paths.append(Path(model.source.rpartition(":")[0]))
    if model.named:  # the architecture and its arguments are in the name
        digest.update(model.named.source.encode())
    for path in paths:
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def key_of(pixels: np.ndarray, model_hash: str, job: Job) -> str:
    """The image's file name: a hash of its pixels, the model's files and what changes its results."""
    what = json.dumps({"cfg": result_settings(job.cfg), "methods": job.methods, "backend": job.backend},
                      sort_keys=True, default=str)
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes() + model_hash.encode() + what.encode()).hexdigest()[:20]


# ---- the work of one task ----
_MODELS: dict = {}  # in each worker process: the model of each job, loaded once


def explain_batch(job: Job, batch: list[Item]) -> list[dict]:
    """Explains the batch's images (the methods that take a batch of images on all at once) and
    writes each image's file as it is done; their rows."""
    from heatkit.pipeline.explain import explain_images

    model = _worker_model(job)
    rows = []
    results = explain_images(model, [model.preprocess(item.pixels) for item in batch], [item.pixels for item in batch],
                             [item.stem for item in batch], list(job.methods), job.cfg, [None] * len(batch), job.backend)
    for item, result in zip(batch, results):
        image_rows = _rows(item, result, job.cfg)
        _write_item(Path(job.out) / "maps" / f"{item.key}.npz", result.maps, image_rows)
        rows += image_rows
    return rows


def _worker_model(job: Job):
    from heatkit.base import frameworks
    from heatkit.model import Model

    which = json.dumps([job.model, job.trust, job.cfg], sort_keys=True, default=str)
    if which not in _MODELS:
        frameworks.torch().set_num_threads(1)  # the same arithmetic in every process, whatever its cores
        _MODELS.clear()
        model = Model.from_settings(job.model, job.cfg, job.trust, progress=False)
        # a dataset's progress is its images: every worker's cost warnings would bury it
        model.engine_options = replace(model.engine_options, warn_seconds=0.0)
        _MODELS[which] = model
    return _MODELS[which]


def _rows(item: Item, result, cfg: dict) -> list[dict]:
    base = {"image": item.source, "key": item.key, "label": item.label, "predicted": result.predicted,
            "explained_probability": result.target_probability}
    rows = []
    for method, scores in result.scores().items():
        row = {**base, "method": method, **{name: scores.get(name) for name in SCORES}}
        row["error"] = scores.get("error") or (f"not applicable: {scores['not_applicable']}"
                                               if "not_applicable" in scores else None)
        rows.append(row)
    if result.curves.get("random"):
        rows.append({**base, "method": "random", **{name: result.curves["random"][name] for name in AREAS}})
    return rows


def _write_item(path: Path, maps: dict[str, np.ndarray], rows: list[dict]) -> None:
    """The image's maps and rows, whole or not at all."""
    from heatkit.pipeline.output import write_npz

    write_npz(path, {"rows": np.array(json.dumps(rows, default=_plain)), **maps})


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def read_item(path: Path) -> tuple[dict[str, np.ndarray], list[dict]]:
    """An image's maps and rows from its file."""
    with np.load(path, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files if name != "rows"}, json.loads(str(stored["rows"]))


def read_rows(path: Path) -> list[dict]:
    """An image's rows from its file, without decompressing its maps."""
    with np.load(path, allow_pickle=False) as stored:
        return json.loads(str(stored["rows"]))


def finished(path: Path) -> bool:
    """Whether the image's file is there and whole; a damaged one (cut short, emptied) is removed,
    so that the image is computed again."""
    if not path.is_file():
        return False
    try:
        read_rows(path)
        return True
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)
        return False


def error_rows(item: Item) -> list[dict]:
    """The one row of an image that could not be read."""
    return [{"image": item.source, "key": item.key, "label": item.label, "method": None, "error": item.error}]


# ---- the run ----
def run(job: Job, dataset: list[Item], model, scheduler: str | None, workers: int | None, batch_size: int,
        progress: bool, timeout: float = 60.0) -> DatasetRun:
    """Every image not done yet, on Dask (a LocalCluster of `workers` processes, or the cluster at
    `scheduler`, which must answer within `timeout` seconds) or, with workers=0, in this process;
    then the table of all the dataset's images. One run at a time writes a folder (a lock), and a
    run that ends in an error leaves no folder it made."""
    folder = Path(job.out)
    model_hash = fingerprint(model)
    for item in dataset:
        item.key = key_of(item.pixels, model_hash, job) if item.error is None else \
            hashlib.sha256(item.source.encode()).hexdigest()[:20]
    made = not folder.exists()
    try:
        with _lock(folder):
            (folder / "maps").mkdir(parents=True, exist_ok=True)
            # an image's map is computed once, however many files hold its pixels (each keeps its row)
            todo = list({item.key: item for item in dataset
                         if item.error is None and not finished(_file_of(folder, item))}.values())
            batches = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
            if batches:
                with _cluster(scheduler, workers, timeout) as client:
                    if client is None:
                        _sequential(job, batches, progress)
                    else:
                        _on_dask(client, job, batches, progress)
            rows = [row for item in dataset for row in (error_rows(item) if item.error is not None else
                                                         _rows_of(job, folder, item))]
            notes = grade_together(rows, [_file_of(folder, item) for item in dataset if item.error is None], job.cfg)
    except UsageError:  # a folder this run made goes, unless it holds finished images (a full disk keeps them)
        if made and not any((folder / "maps").glob("*.npz")):
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return DatasetRun(folder, rows, len(todo), model.ground_truth is not None, notes)


def grade_together(rows: list[dict], files: list[Path], cfg: dict) -> list[str]:
    """The metrics that grade a dataset's images together (Sufficiency), one method at a time from
    the images' files, written into their rows; a note where a method's maps would not fit in
    perturbation.memory_mb."""
    graded = [metric for metric in metrics.COMPUTED if metric.needs is Needs.IMAGES]
    by_image = {(row["key"], row["method"]): row for row in rows if row.get("method") not in (None, "random")}
    predicted = {row["key"]: row["predicted"] for row in by_image.values()}
    notes = []
    for method in dict.fromkeys(method for _, method in by_image):
        maps = []
        for path in (path for path in files if (path.stem, method) in by_image):
            with np.load(path, allow_pickle=False) as stored:
                if method in stored.files:
                    maps.append((path.stem, stored[method]))
                    if len(maps) * stored[method].size * 8 > cfg["perturbation"]["memory_mb"] << 20:
                        notes.append(f"{', '.join(m.name for m in graded)} of {method}: the dataset's maps need more "
                                     f"than perturbation.memory_mb ({cfg['perturbation']['memory_mb']} MB); left out")
                        break
        else:
            found = metrics.score_images([{method: found} for _, found in maps],
                                         np.array([predicted[key] for key, _ in maps]), cfg)
            for (key, _), scores in zip(maps, found):
                by_image[key, method].update(scores.get(method, {}))
    return notes


def _file_of(folder: Path, item: Item | str) -> Path:
    """The file of an image (or of its key)."""
    return folder / "maps" / f"{item if isinstance(item, str) else item.key}.npz"


def _rows_of(job: Job, folder: Path, item: Item) -> list[dict]:
    """An image's rows, computed again here where its file was damaged after its task wrote it: the
    file is the pixels', the rows the file's (two files of the same pixels share the maps, each
    keeping its own name and label)."""
    rows = read_rows(_file_of(folder, item)) if finished(_file_of(folder, item)) else explain_batch(job, [item])
    return [{**row, "image": item.source, "label": item.label} for row in rows]


@contextmanager
def _lock(folder: Path):
    """The folder held by this run alone: a second run on it at once is told so (the lock goes
    with the process, however it ends)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another dataset run is writing {folder}; wait for it to end (the same command then "
                             "finds its images done), or choose another folder with -op") from None
        yield


def _sequential(job: Job, batches: list[list[Item]], progress: bool) -> None:
    from heatkit.base.progress import progress_bar

    with progress_bar(sum(map(len, batches)), "images", "image", progress) as bar:
        for batch in batches:
            explain_batch(job, batch)
            bar.update(len(batch))


@contextmanager
def _cluster(scheduler: str | None, workers: int | None, timeout: float):
    """A Dask client: of a LocalCluster of `workers` processes (at most one per core), of the cluster
    at `scheduler`, or None for this process alone (workers=0)."""
    if scheduler is None and workers == 0:
        yield None
        return
    if scheduler is not None:
        client = _connect(scheduler, timeout)
        try:
            yield client
        finally:
            client.close()
        return
    import dask
    from distributed import Client, LocalCluster

    cores = os.cpu_count() or 1
    if workers is not None and workers > cores:
        raise UsageError(f"--workers {workers}: this machine has {cores} cores; give at most {cores}, or the "
                         "--scheduler of a cluster")
    # Dask's nanny gives workers MALLOC_TRIM_THRESHOLD_, which makes glibc map and unmap every
    # large array anew: the perturbation engine ran 4x slower under it (PDA 31 s an image, not 8)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRONMENT}):
        cluster = LocalCluster(n_workers=workers or cores, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _connect(address: str, timeout: float):
    """A client of the scheduler at `address`, connected within `timeout` seconds. distributed's own
    timeout does not bound its handshake (a plain HTTP server at the address held it for 420 s and
    more): the client is made in a thread, waited for, and given up on."""
    import threading

    from distributed import Client

    made: dict = {}

    def connect():
        try:
            made["client"] = Client(address, timeout=f"{timeout}s")
        except BaseException as error:  # handed to the caller below
            made["error"] = error

    thread = threading.Thread(target=connect, daemon=True)  # a stuck handshake must not hold the process
    thread.start()
    thread.join(timeout)
    if "client" in made:
        return made["client"]
    reason = f"{type(made['error']).__name__}: {made['error']}" if "error" in made else \
        f"no Dask scheduler answered within {timeout:g} s (scheduler_timeout)"
    raise UsageError(f"--scheduler {address}: cannot reach a Dask scheduler there ({reason}); give the address "
                     "`dask scheduler` prints (tcp://HOST:PORT), or leave --scheduler out for a local cluster")


def _on_dask(client, job: Job, batches: list[list[Item]], progress: bool) -> None:
    from distributed import as_completed

    from heatkit.base.progress import progress_bar

    sizes = {client.submit(explain_batch, job, batch, key=f"explain-{batch[0].key}", retries=2): len(batch)
             for batch in batches}
    with progress_bar(sum(sizes.values()), "images", "image", progress) as bar:
        for future in as_completed(sizes):
            future.result()  # a task that failed past its retries ends the run: the rest is kept
            bar.update(sizes[future])


# ---- the summary ----
def leaderboard(rows: list[dict], ground_truth: bool, seed: int = 0) -> tuple[str, list[dict]]:
    """Per method (and the random ranking): mean, median and a 95% bootstrap interval of the mean
    of the score that ranks them, center_share where the model declares a ground truth, else AOPC
    (higher is better for both), and the mean seconds."""
    score = "center_share" if ground_truth else "aopc"
    rng = np.random.default_rng(seed)
    board = []
    for method in dict.fromkeys(row["method"] for row in rows):
        values = np.array([row[score] for row in rows if row["method"] == method and row.get(score) is not None],
                          dtype=float)
        if values.size == 0:
            continue
        means = rng.choice(values, (RESAMPLES, values.size)).mean(axis=1)
        seconds = [row["seconds"] for row in rows if row["method"] == method and row.get("seconds") is not None]
        board.append({"method": method, "images": int(values.size), "mean": float(values.mean()),
                      "median": float(np.median(values)), "low": float(np.percentile(means, 2.5)),
                      "high": float(np.percentile(means, 97.5)),
                      "seconds": float(np.mean(seconds)) if seconds else None})
    board.sort(key=lambda entry: -entry["mean"])
    if not board:
        return f"no map has the score that ranks the methods ({score})" + (
            " (faithfulness.curves is off)" if score == "aopc" else ""), board
    lines = [f"leaderboard by {score} (higher is better), mean with a 95% bootstrap interval",
             f"{'method':<16}{'images':>7}{'mean':>9}{'median':>9}{'95% interval':>20}{'seconds':>9}"]
    for entry in board:
        interval = f"[{entry['low']:.3f}, {entry['high']:.3f}]"
        seconds = f"{entry['seconds']:>9.2f}" if entry["seconds"] is not None else f"{'-':>9}"
        lines.append(f"{entry['method']:<16}{entry['images']:>7}{entry['mean']:>9.3f}{entry['median']:>9.3f}"
                     f"{interval:>20}{seconds}")
    return "\n".join(lines), board


def category_boards(rows: list[dict]) -> str:
    """Per category of the metric registry, the mean of each of its metrics per method, the better
    direction under each name, the methods ordered by the category's first metric."""
    from heatkit.metrics.registry import Category

    methods = [method for method in dict.fromkeys(row["method"] for row in rows) if method not in (None, "random")]
    blocks = []
    for category in Category:
        columns = [metric for metric in METRICS if metric.category is category and metric.higher_is_better is not None
                   and any(row.get(metric.key) is not None for row in rows)]
        if not columns:
            continue
        means = {method: [np.mean([row[m.key] for row in rows if row["method"] == method and row.get(m.key) is not None]
                                  or [np.nan]) for m in columns] for method in methods}
        first = columns[0]
        order = sorted(methods, key=lambda method: (np.isnan(means[method][0]),
                                                    -means[method][0] if first.higher_is_better else means[method][0]))
        widths = [max(len(m.key), 9) + 2 for m in columns]
        lines = [f"{category.value}, mean over the images, by {first.key}",
                 f"{'method':<16}" + "".join(f"{m.key:>{w}}" for m, w in zip(columns, widths)),
                 f"{'better':<16}" + "".join(f"{m.direction:>{w}}" for m, w in zip(columns, widths))]
        lines += [f"{method:<16}" + "".join(f"{'-':>{w}}" if np.isnan(value) else f"{value:>{w}.3g}"
                                           for value, w in zip(means[method], widths)) for method in order]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


@literal_text
def summary_figure(rows: list[dict]):
    """Per score, the distribution over the images of each method (box plots), and the seconds, in
    rows of SUMMARY_COLUMNS panels."""
    from matplotlib.figure import Figure

    methods = list(dict.fromkeys(row["method"] for row in rows if row["method"] is not None))
    shown = [name for name in SCORES if any(row.get(name) is not None for row in rows)]
    if not shown:  # every map failed (a model of NaN weights): nothing to draw but that
        fig = Figure(figsize=(6, 1.2))
        fig.text(0.5, 0.5, "no method gave a map of any image: see the errors in results.csv", ha="center",
                 va="center", fontsize=10)
        return fig
    columns = min(len(shown), SUMMARY_COLUMNS)
    lines = -(-len(shown) // columns)
    fig = Figure(figsize=(2.6 * columns, lines * (0.25 * len(methods) + 1.6)))
    panels = fig.subplots(lines, columns, squeeze=False).ravel()
    for panel in panels[len(shown):]:
        panel.set_visible(False)
    for index, (panel, name) in enumerate(zip(panels, shown)):
        values = [[row[name] for row in rows if row["method"] == method and row.get(name) is not None]
                  for method in methods]
        panel.boxplot([v if v else [np.nan] for v in values], vert=False, widths=0.6, flierprops={"markersize": 2})
        panel.set_yticks(np.arange(1, len(methods) + 1), methods if index % columns == 0 else [""] * len(methods),
                         fontsize=7)
        panel.set_title(name, fontsize=8)
        panel.tick_params(labelsize=7)
        if name in ("seconds", "center_rank"):
            panel.set_xscale("log")
    fig.tight_layout()
    return fig


def write_summary(found: DatasetRun, record: dict) -> str:
    """results.parquet, results.csv, leaderboard.txt, summary.png, run.json and report.html, each
    written whole or not at all; the leaderboard, then one board per category of metrics."""
    from heatkit.pipeline import html
    from heatkit.pipeline.output import atomic, save_figure, write_csv, write_json

    text, found.leaderboard = leaderboard(found.rows, found.ground_truth)
    text += "\n\n" + category_boards(found.rows)
    with atomic(found.folder / "results.parquet") as handle:
        found.table().to_parquet(handle, index=False)
    write_csv(found.folder / "results.csv", found.rows)
    with atomic(found.folder / "leaderboard.txt") as handle:
        handle.write((text + "\n").encode())
    save_figure(summary_figure(found.rows), found.folder / "summary.png", 120)
    record = {**record, "images": len({row["key"] for row in found.rows}), "computed": found.computed,
              "leaderboard": found.leaderboard}
    write_json(found.folder / "run.json", record)
    keys = list(dict.fromkeys(row["key"] for row in found.rows if row.get("method") is not None))
    maps = {key: read_item(_file_of(found.folder, key))[0] for key in keys[:html.DRILL_DOWN_IMAGES]}
    with atomic(found.folder / "report.html") as handle:
        handle.write(html.dataset_page(found.rows, found.leaderboard, text, maps, record["settings"]["figure"],
                                       record).encode())
    return text
