"""The chosen methods' maps for one input."""
from __future__ import annotations

import time
import traceback

import numpy as np

from heatkit.base import contract
from heatkit.base.engine import Meter
from heatkit.base.errors import NotApplicable, UsageError
from heatkit.methods.registry import REGISTRY
from heatkit.pipeline import faithfulness
from heatkit.pipeline.results import ImageResult


def explain(model, image: np.ndarray, display: np.ndarray, name: str, keys: list[str], cfg: dict,
            target: int | None, backend: str, verbose: bool = False, curves: bool = True) -> ImageResult:
    """Every method's map for `image` (the model's input; `display` is it in [0, 1] for the figure),
    explaining `target` (default: the predicted class), with the gradient family on `backend`.

    A method that raises, or gives a map with NaN or infinite values, is recorded as a failure with
    its message, one that does not apply to this model as skipped with the reason; the others
    still run. Bad settings (UsageError) end the run. Ctrl-C stops after the finished methods and
    marks the result interrupted. With `curves` (and faithfulness.curves), every map gets its
    faithfulness curves.
    """
    probabilities = model.probabilities(image[None])[0]
    result = ImageResult(name=name, image=display, probabilities=probabilities,
                         target=int(probabilities.argmax()) if target is None else target, top_k=cfg["figure"]["top_k"],
                         true_label=model.true_label(display))
    if not np.isfinite(probabilities).all():
        result.failures = dict.fromkeys(keys, "the model's probabilities on this image are not finite (NaN or "
                                              "infinite weights, or an overflow): no map of it can be trusted")
        return result
    for key in keys:
        method = REGISTRY[key]
        params = cfg[method.settings.name] if method.settings else {}
        framework = method.runs_on(backend, model.frameworks)
        try:
            model.require(framework, key)
            function = method.function(framework)  # imports the method's libraries, outside the timing
            evaluations = model.evaluations.copy()
            start = time.perf_counter()
            model.meter = Meter(key, model.engine_options.progress, model.engine_options.warn_seconds, method.cheaper)
            try:
                maps, extras = contract.check(key, function(model, image, result.target, params), image.shape[:2])
            finally:
                model.meter.close()
                model.meter = None
        except NotApplicable as reason:
            result.skipped[key] = str(reason)
            continue
        except UsageError:
            raise
        except KeyboardInterrupt:
            result.interrupted = True
            break
        except Exception as error:  # reported in the table, scores.json and the figure
            if verbose:
                traceback.print_exc()
            result.failures[key] = f"{type(error).__name__}: {error}"
            continue
        seconds = time.perf_counter() - start
        broken = {name: int(attribution.size - np.isfinite(attribution).sum()) for name, attribution in maps.items()
                  if not np.isfinite(attribution).all()}
        if broken:
            result.failures[key] = "; ".join(f"{name}: {count} of {maps[name].size} pixels are not finite (NaN or "
                                             "infinite)" for name, count in broken.items())
            continue
        result.frameworks[key] = framework
        if model.evaluations != evaluations:
            result.evaluations[key] = dict(model.evaluations - evaluations)
        for name, attribution in maps.items():
            result.maps[name], result.seconds[name] = attribution, seconds / len(maps)
        if extras:
            result.extras[key] = extras
    if curves and cfg["faithfulness"]["curves"] and result.maps and not result.interrupted:
        try:
            result.curves = faithfulness.score_maps(model, image, result.target, result.maps, cfg["faithfulness"])
        except KeyboardInterrupt:
            result.interrupted = True
    return result
