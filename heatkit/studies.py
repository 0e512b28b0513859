"""The API's experiments: on a model's maps, the sanity checks, the growing patch and the
hyperparameter sweeps (heatkit/pipeline/experiments.py computes them); on the metrics, which of
them can be believed on the known-answer models (heatkit/pipeline/meta_evaluation.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from heatkit.api import explain
from heatkit.base import data
from heatkit.base.errors import UsageError
from heatkit.methods.registry import REGISTRY
from heatkit.methods.registry import SETTINGS as METHOD_SETTINGS
from heatkit.metrics import registry as metrics
from heatkit.metrics import road
from heatkit.pipeline import config, experiments, inputs, layer_names, meta_evaluation, variants
from heatkit.pipeline.experiments import Experiment
from heatkit.pipeline.meta_evaluation import MetricEvaluation
from heatkit.pipeline.record import now
from heatkit.preparation import Images, Source, check_layers, method_keys, model_for, request_record, running_on

__all__ = ["Experiment", "MetricEvaluation", "evaluate_metrics", "growing_patch", "sanity", "sweep"]


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
    with running_on(model, cfg, progress):
        found = experiments.sanity(model, given.model_input, given.pixels, keys, cfg, target, backend, mode)
    return _provenance(found, given.stem, request_record("sanity", model, cfg, files, keys, target=target, mode=mode,
                                                         center_level=center_level, trust=trust, started=started))


def growing_patch(model: Source = None, image: Images = None, methods: str | list[str] = "all", *,
                  target: int | None = None, settings: dict | list[str] | None = None,
                  center_level: int | None = None, trust: bool = False, progress: bool = True) -> Experiment:
    """The growing patch (Bansal et al. 2020): the maps as a square of growing_patch.fill grows over
    growing_patch.sizes, against the unoccluded image's."""
    started = now()
    model, cfg, keys, backend, target, given, files = _experiment_setup(model, image, methods, settings, center_level,
                                                                        trust, progress, target)
    with running_on(model, cfg, progress):
        found = experiments.growing_patch(model, given.model_input, given.pixels, keys, cfg, target, backend)
    return _provenance(found, given.stem, request_record("growing_patch", model, cfg, files, keys, target=target,
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
    with running_on(model, cfg, progress):
        found = experiments.sweep(model, given.model_input, given.pixels, keys, swept, target, backend, cfg)
    return _provenance(found, given.stem, request_record("sweep", model, cfg, files, keys, target=target,
                                                         sweeps=sweeps, center_level=center_level, trust=trust,
                                                         started=started))


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
        model, _ = model_for(source, cfg, False, progress)
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
            methods_seeded = {key: seed for key in flat
                              if key.endswith(".seed") and key.split(".")[0] in METHOD_SETTINGS}
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


# ---- shared by the experiments ----
def _experiment_setup(model, image, methods, settings, center_level, trust, progress, target):
    """What every experiment starts from: the model, the settings, the methods, the gradient
    family's framework, and the one image."""
    cfg = config.load(layer_names.named(settings, model))
    keys = method_keys(methods)
    given = inputs.sort_out(image, center_level)
    if given.count > 1:
        raise UsageError("run one experiment (--sanity, --growing-patch or --sweep) at a time, on one image")
    if given.size and cfg["input_size"] is None:
        cfg = config.update(cfg, {"input_size": given.size})
    model, cfg = model_for(model, cfg, trust, progress, settings)
    backend = model.gradient_backend(cfg["backend"])
    model.load({REGISTRY[key].runs_on(backend, model.frameworks) for key in keys})
    check_layers(model, keys, cfg, [backend])
    [found], _ = inputs.read(given, model, cfg, center_level)
    [target] = inputs.targets(target, 1, model.num_classes)
    return model, cfg, keys, backend, target, found, given.files


def _provenance(found: Experiment, stem: str, request: dict) -> Experiment:
    found.stem, found.request = stem, request
    return found
