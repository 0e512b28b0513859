"""The chosen methods' maps for one input, or for several, the methods that take a batch of
images computing theirs for all of them at once."""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from heatkit.base import contract
from heatkit.base.engine import gradient_batch
from heatkit.base.progress import Meter, say
from heatkit.base.run_state import RunState, current, running
from heatkit.base.errors import NotApplicable, UsageError
from heatkit.methods import _layers, _recording
from heatkit.methods.registry import REGISTRY, Needs
from heatkit.metrics import localisation
from heatkit.metrics import registry as metrics
from heatkit.metrics import curves as faithfulness_curves
from heatkit.pipeline.results import ImageResult


@dataclass
class MethodOutcome:
    """What one method gave for one image: its maps and extras, or why it gave none."""

    framework: str
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    evaluations: dict[str, int] = field(default_factory=dict)
    layers: dict[str, str] = field(default_factory=dict)  # map key -> the layer it explains
    skipped: str | None = None  # why the method does not apply
    failure: str | None = None  # what it raised


def image_result(model, image: np.ndarray, display: np.ndarray, name: str, keys: list[str], cfg: dict,
            target: int | None, backend: str, verbose: bool = False, curves: bool = True,
            scored: tuple[np.ndarray, np.ndarray] | None = None, ready: dict[str, MethodOutcome] | None = None,
            position: str = "") -> ImageResult:
    """Every method's map for `image` (the model's input; `display` is it in [0, 1] for the figure),
    explaining `target` (default: the predicted class), with the gradient family on `backend`.
    `scored` (the image's logits and probabilities) and the `ready` methods' outcomes, where given,
    were computed for several images at once (image_results).

    A method that raises, or gives a map with NaN or infinite values, is recorded as a failure with
    its message, one that does not apply to this model as skipped with the reason; the others
    still run. Bad settings (UsageError) end the run. Ctrl-C stops after the finished methods and
    marks the result interrupted. With `curves` (and faithfulness.curves), every map gets its
    faithfulness curves and the metrics that evaluate the model; then the metrics that recompute
    the method (where their settings ask for them). Each method says when it starts, `position`
    ("image 2 of 5, ") before it.
    """
    logits, probabilities = [values[0] for values in model.logits_and_probabilities(image[None])] \
        if scored is None else scored
    result = ImageResult(name=name, image=display, probabilities=probabilities,
                         target=int(probabilities.argmax()) if target is None else target, settings=cfg,
                         top_k=cfg["figure"]["top_k"], true_label=model.true_label(display),
                         mask=localisation.mask_from(cfg["localisation"], image.shape[:2], model.ground_truth, name),
                         ground_truth=model.ground_truth is not None)
    if not np.isfinite(probabilities).all():
        result.failures = dict.fromkeys(keys, "the model's probabilities on this image are not finite (NaN or "
                                              "infinite weights, or an overflow): no map of it can be trusted")
        return result
    for number, key in enumerate(keys, start=1):
        try:
            if key not in (ready or {}):
                say(f"{position}{key} ({number} of {len(keys)})", current().options.progress)
            outcome = (ready or {}).get(key) or _outcome(model, image, key, cfg, result.target, backend, verbose)
        except KeyboardInterrupt:
            result.interrupted = True
            break
        _record(result, key, outcome)
    if result.maps and not result.interrupted:
        result.add_scores(completeness_gaps(model, image, logits[result.target], result.target, result.maps, cfg))
    if curves and cfg["faithfulness"]["curves"] is True and result.maps and not result.interrupted:
        say(f"{position}faithfulness curves of {len(result.maps)} maps", current().options.progress)
        try:
            result.curves = faithfulness_curves.score_maps(model, image, result.target, result.maps, cfg["faithfulness"])
            result.model_scores = metrics.score_with_model(model, image, result.target, result.maps, cfg)
        except KeyboardInterrupt:
            result.interrupted = True
    if result.maps and not result.interrupted:
        try:
            def recompute(key: str, images: list[np.ndarray], target: int) -> list[np.ndarray] | None:
                return _again(model, key, images, cfg, target, backend, verbose)
            result.add_scores(metrics.score_with_method(recompute, image, result.target, model.num_classes,
                                                        result.maps, cfg))
        except KeyboardInterrupt:
            result.interrupted = True
    return result


def image_results(model, images: list[np.ndarray], displays: list[np.ndarray], names: list[str], keys: list[str],
                   cfg: dict, chosen: list[int | None], backend: str, verbose: bool = False) -> Iterator[ImageResult]:
    """image_result() of each image in turn, explaining its `chosen` class (None: its predicted class);
    first, the probabilities of all of them, and the maps of the methods that take a batch of
    images (the gradient family, DeepLIFT and LRP on PyTorch), in the engine's batches of gradient
    passes."""
    size = gradient_batch(model)
    spans = [(start, min(len(images), start + size)) for start in range(0, len(images), size)]
    recorded = _prediction_modules(model, keys, cfg, backend, len(images)) if len(spans) == 1 else None
    scored = [model.logits_and_probabilities(np.stack(images[a:b])) if recorded is None else
              _recording.prediction_pass(model, np.stack(images[a:b]), recorded) for a, b in spans]
    logits = np.concatenate([found for found, _ in scored])
    probabilities = np.concatenate([found for _, found in scored])
    targets = np.array([row.argmax() if target is None else target for row, target in zip(probabilities, chosen)])
    ready: list[dict[str, MethodOutcome]] = [{} for _ in images]
    if len(images) > 1 and np.isfinite(probabilities).all():
        for key in keys:
            method = REGISTRY[key]
            framework = method.runs_on(backend, model.frameworks)
            if _takes_batches(method, backend, model):
                say(f"{key}: {len(images)} images at once", current().options.progress)
                for (a, b) in spans:
                    for index, outcome in enumerate(_batched(model, images[a:b], targets[a:b], key, cfg, framework,
                                                             verbose), start=a):
                        ready[index][key] = outcome
    for number, (image, display, name, image_logits, image_probabilities, prepared, target) in enumerate(
            zip(images, displays, names, logits, probabilities, ready, chosen), start=1):
        yield image_result(model, image, display, name, keys, cfg, target, backend, verbose,
                      scored=(image_logits, image_probabilities), ready=prepared,
                      position=f"image {number} of {len(images)} ({name}): " if len(images) > 1 else "")


def _prediction_modules(model, keys: list[str], cfg: dict, backend: str, count: int) -> set | None:
    """The modules whose outputs the prediction pass of `count` images records, where the method
    that runs first starts from that pass (methods/_recording.py); None where none does."""
    # several images: the methods that take them at once run before the others
    first = [key for key in keys if _takes_batches(REGISTRY[key], backend, model)] if count > 1 else keys
    method = REGISTRY[first[0]] if first else None
    if method is None or method.from_prediction is None or model.evaluator_framework != "torch" or \
            method.runs_on(backend, model.frameworks) != "torch":
        return None
    try:
        return method.from_prediction(model, method_params(method, cfg, model))
    except NotApplicable:  # the method says so itself when it runs
        return None


def _takes_batches(method, backend: str, model) -> bool:
    framework = method.runs_on(backend, model.frameworks)
    return framework in method.batched and framework in model.frameworks


def method_params(method, cfg: dict, model) -> dict:
    """The settings `method` reads, its pixel values (references, baselines, fills: PixelValue
    settings, which the user gives in the image's pixel space) given in the model's input space."""
    if not method.settings:
        return {}
    params = dict(cfg[method.settings.name])
    for key in method.settings.pixel_values():
        if params[key] is not None:
            params[key] = model.input_value(params[key])
    return params


COMPLETENESS_TOLERANCE = 0.05  # a gap past this share of the logit's change is said in a note


def completeness_gaps(model, image: np.ndarray, logit: float, target: int, maps: dict[str, np.ndarray],
                      cfg: dict) -> dict[str, dict[str, float]]:
    """Per map of a method that explains a change from its own reference (IG, DeepLIFT): how far
    its sum is from that change of the target's `logit` at the image, |sum - (f(x) - f(reference))|
    / |f(x) - f(reference)| (None where the logit does not change). A forward pass a reference
    that no method passed through the model itself."""
    gaps, references = {}, {}
    for key, attribution in maps.items():
        method = REGISTRY[key.partition("@")[0]]
        if method.reference is None:
            continue
        pixel = cfg[method.settings.name][method.reference]  # 0, 1, "mean": IG's and DeepLIFT's alike share a pass
        if pixel not in references:
            value = model.input_value(pixel)
            logits = current().reference(model, value)
            if logits is None:
                logits = model.logits(np.full_like(image, value)[None])[0]
            references[pixel] = logits[target]
        change = np.float64(logit) - np.float64(references[pixel])
        gap = abs(attribution.astype(np.float64).sum() - change) / abs(change) if change != 0 else None
        gaps[key] = {"completeness_gap": gap}
    return gaps


def completeness_note(results: list[ImageResult]) -> str | None:
    """The methods whose maps' sums miss the logit's change by more than COMPLETENESS_TOLERANCE, on
    the image where they miss it most."""
    missed = {}
    for result in results:
        for key, scores in result.model_scores.items():
            gap = scores.get("completeness_gap") or 0
            if gap > max(COMPLETENESS_TOLERANCE, missed.get(key, (0, ""))[0]):
                missed[key] = (gap, result.name)
    if not missed:
        return None
    several = len(results) > 1
    return ("; ".join(f"{key} misses the logit's change from its reference by {'up to ' if several else ''}{gap:.0%}"
                      + (f" ({name})" if several else "") for key, (gap, name) in missed.items()) +
            " (completeness_gap): IG's quadrature needs more ig.steps where the logit bends sharply along the path, "
            "and no number of steps sees a jump; DeepLIFT's Rescale rule is exact only through linear layers, "
            "elementwise activations and max pooling")


SATURATED = 1e-6  # a probability within this of 1 moves by less than float32 resolves under most perturbations


def saturation_note(result: ImageResult, cfg: dict) -> str | None:
    """What a user should know where the explained class's probability is 1 to float32's
    precision and the perturbation methods watch it: their maps are mostly exact zeros."""
    perturbing = [key for key in result.maps if REGISTRY[key.partition("@")[0]].needs is Needs.PROBABILITIES]
    if not perturbing or cfg["perturbation"]["output"] != "probability" or \
            1 - result.target_probability >= SATURATED:
        return None
    zeros = max(float(np.mean(result.maps[key] == 0)) for key in perturbing)
    return (f"{result.name}: p(class {result.target}) = 1 - {1 - result.target_probability:.1g}, saturated: most "
            f"perturbations do not change it in float32 (up to {zeros:.0%} of a map of {', '.join(perturbing)} is "
            "exactly 0); --set perturbation.output=logit explains the change of its logit instead")


def _outcome(model, image, key: str, cfg: dict, target: int, backend: str, verbose: bool) -> MethodOutcome:
    """Method `key`'s maps of one image, or why it has none."""
    method = REGISTRY[key]
    params = method_params(method, cfg, model)
    framework = method.runs_on(backend, model.frameworks)
    try:
        model.require(framework, key)
        function = method.function(framework)  # imports the method's libraries, outside the timing
        options = current().options
        state = RunState(options, Meter(key, options.progress, options.warn_seconds, method.cheaper),
                         prediction=current().hand_over())
        start = time.perf_counter()
        try:
            with running(state):
                maps, extras = contract.check(key, function(model, image, target, params), image.shape[:2])
        finally:
            state.meter.close()
    except NotApplicable as reason:
        return MethodOutcome(framework, skipped=str(reason))
    except (UsageError, KeyboardInterrupt):
        raise
    except Exception as error:  # reported in the table, scores.json and the figure
        if verbose:
            traceback.print_exc()
        return MethodOutcome(framework, failure=f"{type(error).__name__}: {error}")
    return MethodOutcome(framework, maps, extras, time.perf_counter() - start, dict(state.evaluations),
                   _layers_of(model, method, params, framework, maps))


def _layers_of(model, method, params: dict, framework: str, maps: dict) -> dict[str, str]:
    """The layer each map of a method that reads gradcam.layers explains (its default found from
    the model), for the scores, the figure and the report."""
    if not method.settings or method.settings.name != "gradcam":
        return {}
    default = _layers.target_layers(model, params["layers"], framework)[0]
    return {key: key.partition("@")[2] or default for key in maps}


def _batched(model, images: list[np.ndarray], targets: np.ndarray, key: str, cfg: dict, framework: str,
             verbose: bool) -> list[MethodOutcome]:
    """Method `key`'s maps of a batch of images at once, as each image's outcome (the time shared)."""
    method = REGISTRY[key]
    params = method_params(method, cfg, model)
    try:
        function = method.batched[framework]
        start = time.perf_counter()
        with running(RunState(current().options, prediction=current().hand_over())):
            found = function(model, np.stack(images), targets, params)
        seconds = (time.perf_counter() - start) / len(images)
        return [MethodOutcome(framework, contract.check(key, attribution, image.shape[:2])[0], seconds=seconds)
                for attribution, image in zip(found, images)]
    except NotApplicable as reason:
        return [MethodOutcome(framework, skipped=str(reason))] * len(images)
    except (UsageError, KeyboardInterrupt):
        raise
    except Exception as error:  # reported for each image, as image_result() reports one image's
        if verbose:
            traceback.print_exc()
        return [MethodOutcome(framework, failure=f"{type(error).__name__}: {error}")] * len(images)


def _again(model, key: str, images: list[np.ndarray], cfg: dict, target: int, backend: str,
           verbose: bool) -> list[np.ndarray] | None:
    """Map `key` of each image, explaining `target`: the method recomputed (in batches where it takes
    them), for the metrics that ask how its map changes; None where it fails on one (the metric is
    then undefined)."""
    method = REGISTRY[key.partition("@")[0]]
    framework = method.runs_on(backend, model.frameworks)
    if _takes_batches(method, backend, model):
        outcomes = _batched(model, images, np.full(len(images), target), method.key, cfg, framework, verbose)
    else:
        outcomes = [_outcome(model, image, method.key, cfg, target, backend, verbose) for image in images]
    if any(outcome.failure or outcome.skipped or key not in outcome.maps for outcome in outcomes):
        return None
    return [outcome.maps[key] for outcome in outcomes]


def _record(result: ImageResult, key: str, outcome: MethodOutcome) -> None:
    """An outcome into the image's result: its maps, or its failure (a map with NaN or infinite
    values is one), or why it does not apply."""
    if outcome.skipped is not None:
        result.skipped[key] = outcome.skipped
        return
    if outcome.failure is not None:
        result.failures[key] = outcome.failure
        return
    broken = {name: int(attribution.size - np.isfinite(attribution).sum()) for name, attribution in outcome.maps.items()
              if not np.isfinite(attribution).all()}
    if broken:
        result.failures[key] = "; ".join(f"{name}: {count} of {outcome.maps[name].size} pixels are not finite (NaN or "
                                         "infinite)" for name, count in broken.items())
        return
    result.frameworks[key] = outcome.framework
    if outcome.evaluations:
        result.evaluations[key] = outcome.evaluations
    for name, attribution in outcome.maps.items():
        result.maps[name], result.seconds[name] = attribution, outcome.seconds / len(outcome.maps)
    result.layers.update(outcome.layers)
    if outcome.extras:
        result.extras[key] = outcome.extras
