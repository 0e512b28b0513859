"""The Python API. The command line (heatkit/cli.py) is a shell over these functions.

    import heatkit

    run = heatkit.explain("models/center_pixel.h5", "images/chelsea.png", methods=["grad", "occlusion"],
                          settings={"occlusion.patch": 3})
    run.maps["occlusion"]          # float32 (H, W), raw
    run.scores["occlusion"]        # center scores, seconds, framework
    run.probabilities              # the model's probabilities on the image
    run.figure()                   # a matplotlib Figure (shown only with show=True)
    run.save("results")            # the folder the command line writes

    found = heatkit.explain_dataset("models/center_pixel.h5", "random:200", ["grad", "occlusion"], workers=2)
    found.table()                  # pandas: one row per image x method

A model is a file path, a tf.keras.Model or a torch.nn.Module built in this process (Keras models
with the TensorFlow heatkit.tensorflow() gives, quiet and in eager mode; each model the toolkit
analyzes gets a graph of its own, as innvestigate needs), or a heatkit.Model, which keeps the
settings it was loaded with (a call that asks for another evaluate_with, device, input_size,
output or weights is refused, naming it). Images are paths, folders, (H, W, C) arrays in [0, 1], or None for a seeded
random image. Settings override settings.py: {"ig.steps": 128} or {"ig": {"steps": 128}}.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.base.progress import say
from heatkit.methods.registry import BACKENDS, REGISTRY
from heatkit.model import Model
from heatkit.pipeline import config, cost, inputs, layer_names
from heatkit.pipeline import datasets
from heatkit.pipeline.datasets import DatasetRun
from heatkit.pipeline.maps import completeness_note, saturation_note
from heatkit.pipeline.record import now, run_record
from heatkit.pipeline.run import Run, compute
from heatkit.preparation import Images, Source, check_layers, method_keys, model_for, request_record, running_on

__all__ = ["DatasetRun", "Model", "Rerun", "Run", "explain", "explain_dataset", "load_model", "rerun", "settings",
           "tensorflow"]



def tensorflow():
    """TensorFlow as the toolkit imports it, its logging quiet; the process stays in eager mode
    (heatkit/base/frameworks.py)."""
    return frameworks.tensorflow()


def settings(overrides: dict | list[str] | None = None) -> dict:
    """settings.py's settings with the overrides applied, validated."""
    return config.load(overrides or {})


def load_model(model: Source = None, *, weights: str | Path | None = None, settings: dict | list[str] | None = None,
               trust: bool = False) -> Model:
    """The model wrapper for a file (default: the model_path setting), a name
    ("torchvision:resnet50", "timm:vit_small_patch16_224") or code ("net.py:factory") with its
    `weights`, or an object. `trust` allows files whose loading runs code (Keras Lambda layers,
    modules saved whole, code)."""
    cfg = config.load(settings or {})
    if weights is not None:
        cfg = config.update(cfg, {"weights": str(weights)})
    return model_for(model, cfg, trust, True, settings)[0]


def explain(model: Source = None, images: Images = None, methods: str | list[str] = "all", *,
            target=None, settings: dict | list[str] | None = None, compare_backends: bool = False,
            center_level: int | None = None, labels: str | Path | list[str] | None = None, trust: bool = False,
            progress: bool = True, verbose: bool = False) -> Run:
    """The methods' maps of every image, with their scores, probabilities and timings.

    `images`: files or folders; numpy pixels in [0, 1], (H, W, C) or a batch (N, H, W, C); or torch
    tensors of the model's input, already preprocessed, (C, H, W), (N, C, H, W) or a list, as captum
    takes them; None for a seeded random image (heatkit/pipeline/inputs.py). `target`: the class
    each image explains, one for all or one per image (a list or a tensor); default each image's
    predicted class. `run.stack(key)` gives a method's maps as one (N, H, W) array, or a tensor.
    `compare_backends` computes the gradient family on a model's Keras version and its PyTorch twin
    alike; `center_level` sets the center pixel to an 8-bit gray level first; `labels` names the
    classes. A method that raises, or that does not apply to the model, is reported and the others
    still run; Ctrl-C keeps what finished."""
    started = now()
    cfg = config.load(layer_names.named(settings, model))
    keys = method_keys(methods, compare_backends)
    given = inputs.sort_out(images, center_level)
    inputs.targets(target, given.count)
    if given.size and cfg["input_size"] is None:  # a module that fixes no size runs at the images'
        cfg = config.update(cfg, {"input_size": given.size})
    model, cfg = model_for(model, cfg, trust, progress, settings)
    class_names = inputs.class_names(labels, model)
    if compare_backends and set(model.frameworks) != set(BACKENDS):
        raise UsageError(f"--compare-backends needs a Keras model and its PyTorch twin; {model.name} has "
                         f"{' and '.join(model.frameworks)} only")
    backends = list(BACKENDS) if compare_backends else [model.gradient_backend(cfg["backend"])]
    model.load({REGISTRY[key].runs_on(backend, model.frameworks) for key in keys for backend in backends})
    check_layers(model, keys, cfg, backends)
    found, notes = inputs.read(given, model, cfg, center_level)
    chosen = inputs.targets(target, len(found), model.num_classes)
    planned = cost.plan(model, keys, cfg, len(found) * len(backends))
    cfg = config.update(cfg, {"faithfulness.curves": planned.curves})  # "auto" decided, and recorded so
    say(cost.describe(planned, cost.timed(model), cfg['perturbation']['warn_seconds']) if progress else "", progress)
    request = request_record("explain", model, cfg, given.files, keys, target=_plain(chosen),
                             compare_backends=compare_backends, center_level=center_level, trust=trust,
                             started=started)
    with running_on(model, cfg, progress) as state:
        items, interrupted = compute(model, found, keys, cfg, chosen, backends, verbose)
    notes = model.notes + notes + list(state.notes)
    try:  # Ctrl-C once the maps are done: they are kept, without these notes
        results = [result for item in items for result in item.results]
        notes += [note for note in [*map(lambda result: saturation_note(result, cfg), results),
                                    completeness_note(results)] if note]
    except KeyboardInterrupt:
        interrupted = True
    return Run(items, keys, backends, cfg, model, request, class_names, interrupted, notes)


@dataclass
class Rerun:
    """A run repeated from its record: where it was written, and the arrays that differ from the
    recorded run's (none: bit-identical)."""

    run: Run
    folder: Path
    recorded: Path
    compared: int  # arrays compared
    differing: list[str]


def rerun(record: str | Path, out: str | Path | None = None, progress: bool = True, trust: bool = False) -> Rerun:
    """Repeats the run recorded in a run folder's run.json, with its recorded request and settings
    (later edits of settings.py change nothing), into a new folder (in `out`, or beside the recorded
    one), and compares every map with the recorded run's, bit for bit. Trust is never read from the
    record (a folder may come from anyone): a run that loaded code needs `trust` again."""
    import json

    record = Path(record)
    try:
        recorded = json.loads(record.read_text())
        request, recorded_settings = recorded["request"], recorded["settings"]
        maps = np.load(record.parent / "heatmaps.npz")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"cannot repeat {record} ({error}); give the run.json of a finished heatmap run") from None
    if request.get("function") != "explain" or not request.get("model"):
        raise UsageError(f"cannot repeat {record}: only heatmap runs of a model file can be repeated")
    if request.get("trust") and not trust:
        raise UsageError(f"{record} records a run of {request['model']} with --trust-model, which runs its code: give "
                         "--trust-model with --rerun if you trust that model (a record never grants it)")
    run = explain(request["model"], request["images"], request["methods"], target=request["target"],
                  settings=recorded_settings, compare_backends=request["compare_backends"],
                  center_level=request["center_level"], trust=trust, progress=progress)
    folder = run.save(out)
    repeated = np.load(folder / "heatmaps.npz")
    differing = sorted(key for key in set(maps.files) | set(repeated.files)
                       if key not in maps.files or key not in repeated.files or not np.array_equal(maps[key], repeated[key]))
    return Rerun(run, folder, record.parent, len(maps.files), differing)


def explain_dataset(model: str | Path | None = None, dataset: str = "random:100", methods: str | list[str] = "all", *,
                    settings: dict | list[str] | None = None, scheduler=None, workers: int | None = None,
                    batch_size: int = 8, out: str | Path | None = None, trust: bool = False, progress: bool = True,
                    command: list[str] | None = None) -> DatasetRun:
    """Every image of `dataset` (a folder, an fsspec URL of one, random:N on a center-pixel model,
    or digits) explained by the methods: in this process (workers=0), on a LocalCluster of
    `workers` processes, or on a Dask cluster (`scheduler`: its address, a distributed.Client or a
    cluster object), whose workers need none of this machine's files. Resumes where the same call
    stopped. Without `workers` or `scheduler`, a local cluster of a worker a core runs it where
    its estimate is long enough for one to pay (execution.local_workers), else this process. Its
    folder (in `out`, default the out_path setting) gets one file per image,
    results.parquet and .csv, leaderboard.txt, summary.png, report.html and run.json; it returns
    the leaderboard, the scores and the rows."""
    from heatkit.pipeline.datasets import execution, shipping, store

    started = now()
    cfg = config.load(settings or {})
    keys = method_keys(methods)
    if isinstance(model, Model) or not isinstance(model, (str, Path, type(None))):
        raise UsageError("the dataset mode sends the model's files to every worker: give it as a file, as "
                         "net.py:factory or by name")
    loaded, cfg = model_for(model, cfg, trust, progress)
    backend = loaded.gradient_backend(cfg["backend"])
    images = datasets.items(dataset, loaded, cfg)
    planned = cost.plan(loaded, keys, cfg, len(images))
    cfg = config.update(cfg, {"faithfulness.curves": planned.curves})  # "auto" decided, as for one image
    seconds = cost.timed(loaded) if progress or (workers is None and scheduler is None) else None
    say(cost.describe(planned, seconds, cfg['perturbation']['warn_seconds']) if progress else "", progress)
    if workers is None and scheduler is None:
        workers = execution.local_workers(planned.seconds(*seconds))
        say(execution.where(workers), progress)
    stem = loaded.named.architecture if loaded.named else Path(loaded.name.partition(":")[0]).stem
    name = "".join(char if char.isalnum() else "_" for char in f"{dataset}_{stem}")
    folder = (Path(out or cfg["out_path"]) / f"dataset_{name}").resolve()
    bundle = shipping.bundle_of(loaded)
    job = execution.Job(bundle.fingerprint, trust, cfg, tuple(keys), backend, store.what_counts(cfg, tuple(keys),
                                                                                                   backend))
    request = request_record("explain_dataset", loaded, cfg, [], keys, dataset=dataset,
                             scheduler=execution.address_of(scheduler), workers=workers, batch_size=batch_size,
                             started=started)
    record = run_record(command, cfg, request, False)

    def connect():
        return execution.cluster(scheduler, workers, cfg["scheduler_timeout"], lambda line: say(line, progress))

    return datasets.run(job, bundle, images, loaded, folder, connect, batch_size, progress, record)


# ---- targets as recorded ----
def _plain(targets: list[int | None]):
    """Targets as run.json records them: one class, None, or one per image."""
    return targets[0] if len(set(targets)) == 1 else targets
