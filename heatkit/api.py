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

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from heatkit.base import data, frameworks
from heatkit.base.errors import UsageError
from heatkit.base.progress import say
from heatkit.base.run_state import RunState, running
from heatkit.methods.registry import BACKENDS, REGISTRY, comparable, expand
from heatkit.methods.registry import SETTINGS as METHODS
from heatkit.metrics import registry as metrics
from heatkit.metrics import road
from heatkit.model import Model
from heatkit.pipeline import config, cost, experiments, inputs, layer_names, meta_evaluation, variants
from heatkit.pipeline import datasets
from heatkit.pipeline.datasets import DatasetRun
from heatkit.pipeline.explain import completeness_note, saturation_note
from heatkit.pipeline.experiments import Experiment
from heatkit.pipeline.meta_evaluation import MetricEvaluation
from heatkit.pipeline.record import now, run_record
from heatkit.pipeline.run import Run, compute

__all__ = ["DatasetRun", "Experiment", "MetricEvaluation", "Model", "Rerun", "Run", "evaluate_metrics", "explain",
           "explain_dataset", "growing_patch", "load_model", "rerun", "sanity", "settings", "sweep", "tensorflow"]

Source = str | Path | object  # a model file, a tf.keras.Model, a torch.nn.Module, or a Model
Images = str | Path | np.ndarray | list | object | None  # files, pixel arrays or torch tensors (pipeline/inputs.py)


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
    return _model(model, cfg, trust, True, settings)[0]


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
    keys = _methods(methods, compare_backends)
    given = inputs.sort_out(images, center_level)
    inputs.targets(target, given.count)
    if given.size and cfg["input_size"] is None:  # a module that fixes no size runs at the images'
        cfg = config.update(cfg, {"input_size": given.size})
    model, cfg = _model(model, cfg, trust, progress, settings)
    class_names = inputs.class_names(labels, model)
    if compare_backends and set(model.frameworks) != set(BACKENDS):
        raise UsageError(f"--compare-backends needs a Keras model and its PyTorch twin; {model.name} has "
                         f"{' and '.join(model.frameworks)} only")
    backends = list(BACKENDS) if compare_backends else [model.gradient_backend(cfg["backend"])]
    model.load({REGISTRY[key].runs_on(backend, model.frameworks) for key in keys for backend in backends})
    _check_layers(model, keys, cfg, backends)
    found, notes = inputs.read(given, model, cfg, center_level)
    chosen = inputs.targets(target, len(found), model.num_classes)
    planned = cost.plan(model, keys, cfg, len(found) * len(backends))
    cfg = config.update(cfg, {"faithfulness.curves": planned.curves})  # "auto" decided, and recorded so
    say(cost.describe(planned, cost.timed(model), cfg['perturbation']['warn_seconds']) if progress else "", progress)
    request = _request("explain", model, cfg, given.files, keys, target=_plain(chosen),
                       compare_backends=compare_backends, center_level=center_level, trust=trust, started=started)
    notes = model.notes + notes
    with _running(model, cfg, progress):
        items, interrupted = compute(model, found, keys, cfg, chosen, backends, verbose)
    try:  # Ctrl-C once the maps are done: they are kept, without these notes
        results = [result for item in items for result in item.results]
        notes += [note for note in [*map(lambda result: saturation_note(result, cfg), results),
                                    completeness_note(results)] if note]
    except KeyboardInterrupt:
        interrupted = True
    return Run(items, keys, backends, cfg, model, request, class_names, interrupted, notes)


def sanity(model: Source = None, image: Images = None, methods: str | list[str] = "all", *, mode: str = "cascading",
           target: int | None = None, settings: dict | list[str] | None = None, center_level: int | None = None,
           trust: bool = False, progress: bool = True) -> Experiment:
    """Sanity checks (Adebayo et al. 2018): the maps after the model's layers are re-initialized from
    the top, cumulatively ("cascading") or one at a time ("independent"), or after Gaussian noise is
    added to every weight ("noise"), against the original model's."""
    if mode not in experiments.SANITY_TITLES:
        raise UsageError(f"sanity mode {mode!r}: choose from {', '.join(experiments.SANITY_TITLES)}")
    started = now()
    setup = _experiment_setup(model, image, methods, settings, center_level, trust, progress, target)
    model, cfg, keys, backend, target, given, files = setup
    with _running(model, cfg, progress):
        found = experiments.sanity(model, given.model_input, given.pixels, keys, cfg, target, backend, mode)
    return _provenance(found, given.stem, _request("sanity", model, cfg, files, keys, target=target, mode=mode,
                                             center_level=center_level, trust=trust, started=started))


def growing_patch(model: Source = None, image: Images = None, methods: str | list[str] = "all", *,
                  target: int | None = None, settings: dict | list[str] | None = None,
                  center_level: int | None = None, trust: bool = False, progress: bool = True) -> Experiment:
    """The growing patch (Bansal et al. 2020): the maps as a square of growing_patch.fill grows over
    growing_patch.sizes, against the unoccluded image's."""
    started = now()
    model, cfg, keys, backend, target, given, files = _experiment_setup(model, image, methods, settings, center_level,
                                                                        trust, progress, target)
    with _running(model, cfg, progress):
        found = experiments.growing_patch(model, given.model_input, given.pixels, keys, cfg, target, backend)
    return _provenance(found, given.stem, _request("growing_patch", model, cfg, files, keys, target=target,
                                             center_level=center_level, trust=trust, started=started))


def sweep(model: Source = None, image: Images = None, methods: str | list[str] = "all", *,
          sweeps: dict[str, list], target: int | None = None, settings: dict | list[str] | None = None,
          center_level: int | None = None, trust: bool = False, progress: bool = True) -> Experiment:
    """Hyperparameter sweeps (Bansal et al. 2020): the maps of the chosen methods that read each
    swept setting, at each of its values, e.g. sweeps={"sg.noise_scale": [0.05, 0.1, 0.2]}. Every
    value is checked before any work."""
    started = now()
    model, cfg, keys, backend, target, given, files = _experiment_setup(model, image, methods, settings, center_level,
                                                                        trust, progress, target)
    swept = []
    for key, values in sweeps.items():
        if "." not in key or not values:
            raise UsageError(f"sweep {key!r}: give METHOD.SETTING and its values, e.g. sg.noise_scale=0.1,0.2")
        swept.append((key, [(value, config.update(cfg, {key: value})) for value in values]))
    with _running(model, cfg, progress):
        found = experiments.sweep(model, given.model_input, given.pixels, keys, swept, target, backend, cfg)
    return _provenance(found, given.stem, _request("sweep", model, cfg, files, keys, target=target, sweeps=sweeps,
                                             center_level=center_level, trust=trust, started=started))


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


def evaluate_metrics(models: list[Source], methods: str | list[str] = "all", *,
                     settings: dict | list[str] | None = None, progress: bool = True) -> MetricEvaluation:
    """Which metric can be believed: on each known-answer model (a center-pixel, region or two-pixel
    model, create_model.py builds them), for each of `evaluate_metrics.seeds` (it seeds the images
    and every method's draws) `evaluate_metrics.images` images with random true classes, every
    method's map graded by the truth (its |attribution|'s share on the deciding pixels) and by each
    metric, and per metric how far the two rankings of the methods agree (Kendall's tau). The
    faithfulness curves, Random Logit, Non-Sensitivity and ROAD (at Quantus's percentages) are on,
    and the robustness metrics and Monotonicity take evaluate_metrics.noisy_copies draws; MPRT
    compares each map with its method's map on the model with every layer re-initialized."""
    cfg = config.load(layer_names.named(settings, None))
    params, flat = cfg["evaluate_metrics"], config.flatten(cfg)
    taus, summaries = {}, {}
    for source in models:
        model, _ = _model(source, cfg, False, progress)
        height, width, _ = model.input_shape
        mask = data.ground_truth_mask(model.ground_truth, (height, width))
        if mask is None:
            raise UsageError(f"{model.name} declares no ground truth: --evaluate-metrics needs a center-pixel, region "
                             "or two-pixel model (create_model.py builds them)")
        name = Path(source).stem if isinstance(source, (str, Path)) else model.name
        taus[name] = []
        for seed in params["seeds"]:
            classes = np.random.default_rng(seed).integers(0, model.num_classes, params["images"])
            images = data.center_pixel_images(params["images"], height, model.num_classes, seed, classes,
                                              model.ground_truth)
            methods_seeded = {key: seed for key in flat if key.endswith(".seed") and key.split(".")[0] in METHODS}
            run = explain(model, list(images), methods, progress=progress, settings={
                **flat, **methods_seeded, "faithfulness.curves": True, "sensitivity.samples": params["noisy_copies"],
                "lipschitz.samples": params["noisy_copies"], "monotonicity.samples": params["noisy_copies"],
                "random_logit.enabled": True, "non_sensitivity.enabled": True,
                "road.percentages": road.QUANTUS_PERCENTAGES})
            # MPRT: each image's maps, of the class explained, on the model with every layer
            # re-initialized (the last step of --sanity cascading)
            randomised = variants.variant(model, variants.reinitializer(
                variants.weighted_layers(model), cfg["sanity"]["initializer"], cfg["sanity"]["std"], seed))
            for item, image in zip(run.items, images):
                result = item.results[0]
                again = explain(randomised, image, list(result.maps), target=result.target, progress=False,
                                settings={**flat, **methods_seeded, "faithfulness.curves": False})
                result.add_scores(metrics.score_randomised(result.maps, again.maps, run.settings))
            taus[name].append([meta_evaluation.image_taus(
                item.results[0].scores(),
                {key: meta_evaluation.truth(attribution, mask) for key, attribution in item.results[0].maps.items()})
                for item in run.items])
        summaries[name] = meta_evaluation.summarize(taus[name], params["resamples"], params["seeds"][0])
    return MetricEvaluation(taus, summaries, cfg)


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
    keys = _methods(methods)
    if isinstance(model, Model) or not isinstance(model, (str, Path, type(None))):
        raise UsageError("the dataset mode sends the model's files to every worker: give it as a file, as "
                         "net.py:factory or by name")
    loaded, cfg = _model(model, cfg, trust, progress)
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
    record = run_record(command, cfg, _request("explain_dataset", loaded, cfg, [], keys, dataset=dataset,
                                               scheduler=execution.address_of(scheduler),
                                               workers=workers, batch_size=batch_size, started=started), False)

    def connect():
        return execution.cluster(scheduler, workers, cfg["scheduler_timeout"], lambda line: say(line, progress))

    return datasets.run(job, bundle, images, loaded, folder, connect, batch_size, progress, record)


# ---- shared checks and preparation ----
def _model(source: Source, cfg: dict, trust: bool, progress: bool, settings=None) -> tuple[Model, dict]:
    """The model, set up with the run's preprocessing, and the settings as it has them: a Model
    given keeps what it was loaded with, and refuses another value `settings` asks for. "loading"
    is said first (a ResNet-50 from a file takes a minute or more of silence otherwise)."""
    if isinstance(source, Model):
        source.refuse_other(cfg, config.given(settings))
        return source.configure(cfg), config.update(cfg, source.loaded_with())
    source = cfg["model_path"] if source is None else source
    say(f"loading {source if isinstance(source, (str, Path)) else f'the {type(source).__name__} given'}", progress)
    return Model.from_settings(source, cfg, trust), cfg


@contextmanager
def _running(model: Model, cfg: dict, progress: bool):
    """The run's state in force (heatkit/base/run_state.py), a PyTorch module the caller built in
    eval mode while it runs."""
    with running(RunState.of(cfg, progress)), model.evaluating():
        yield


def _methods(methods: str | list[str], compare_backends: bool = False) -> list[str]:
    names = [methods] if isinstance(methods, str) else list(methods)
    keys = expand(names)
    if not compare_backends:
        return keys
    both = comparable()  # a group ('all', 'lrp') gives its members that run on both; a method named alone must
    # run on both
    single = [name for name in names if name in REGISTRY and name not in both]
    if single:
        raise UsageError(f"--compare-backends compares methods that run on both frameworks; drop {', '.join(single)}")
    return [key for key in keys if key in both]


def _check_layers(model: Model, keys: list[str], cfg: dict, backends: list[str]) -> None:
    """gradcam.layers checked right after the model loads, before any method runs (a wrong name was
    said after the methods before it had run)."""
    from heatkit.methods import _layers

    if cfg["gradcam"]["layers"] and any(REGISTRY[key].settings and REGISTRY[key].settings.name == "gradcam"
                                        for key in keys):
        for backend in backends:
            _layers.target_layers(model, cfg["gradcam"]["layers"], REGISTRY["gradcam"].runs_on(backend, model.frameworks))


def _plain(targets: list[int | None]):
    """Targets as run.json records them: one class, None, or one per image."""
    return targets[0] if len(set(targets)) == 1 else targets


def _experiment_setup(model, image, methods, settings, center_level, trust, progress, target):
    """What every experiment starts from: the model, the settings, the methods, the gradient
    family's framework, and the one image."""
    cfg = config.load(layer_names.named(settings, model))
    keys = _methods(methods)
    given = inputs.sort_out(image, center_level)
    if given.count > 1:
        raise UsageError("run one experiment (--sanity, --growing-patch or --sweep) at a time, on one image")
    if given.size and cfg["input_size"] is None:
        cfg = config.update(cfg, {"input_size": given.size})
    model, cfg = _model(model, cfg, trust, progress, settings)
    backend = model.gradient_backend(cfg["backend"])
    model.load({REGISTRY[key].runs_on(backend, model.frameworks) for key in keys})
    _check_layers(model, keys, cfg, [backend])
    [found], _ = inputs.read(given, model, cfg, center_level)
    [target] = inputs.targets(target, 1, model.num_classes)
    return model, cfg, keys, backend, target, found, given.files


def _request(function: str, model: Model, cfg: dict, files: list[Path], keys: list[str], **options) -> dict:
    """What run.json records of a call: enough to repeat it, where the model and images are files;
    and each pixel value the methods read (a reference, a fill) as the model received it."""
    pixel_values = {f"{method.settings.name}.{name}": model.input_value(cfg[method.settings.name][name]).tolist()
                    for method in (REGISTRY[key] for key in keys) if method.settings
                    for name in method.settings.pixel_values() if cfg[method.settings.name][name] is not None}
    return {"function": function, "model": model.source, "model_object": model.name, "dtype": model.dtype,
            "head": model.head.record(), "preprocess": asdict(model.preprocess),
            "images": [str(path) for path in files] or None, "methods": keys,
            "pixel_values_in_model_input": pixel_values, **options}



def _provenance(found: Experiment, stem: str, request: dict) -> Experiment:
    found.stem, found.request = stem, request
    return found
