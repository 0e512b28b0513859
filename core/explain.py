"""Compute the chosen methods' maps for one input and score them."""
from __future__ import annotations

import time
import traceback

import numpy as np

from core import contract
from core.errors import NotApplicable, UsageError
from core.plotting import ImageResult
from core.scores import center_scores
from methods.registry import REGISTRY


def explain(model, image: np.ndarray, display: np.ndarray, name: str, keys: list[str], cfg: dict,
            target: int | None, backend: str, verbose: bool = False) -> ImageResult:
    """Every method's map for `image` (the model's input; `display` is it in [0, 1] for the figure),
    explaining `target` (default: the predicted class), with the gradient family on `backend`.

    A method that raises is recorded as a failure with its message, one that does not apply to
    this model as skipped with the reason; the others still run. Bad settings (UsageError) end the
    run. Ctrl-C stops after the finished methods and marks the result interrupted.
    """
    probabilities = model.probabilities(image[None])[0]
    predicted = int(probabilities.argmax())
    target = predicted if target is None else target
    order = np.argsort(-probabilities, kind="stable")[: cfg["figure"]["top_k"]]
    result = ImageResult(name=name, image=display, predicted=predicted, target=target,
                         target_probability=float(probabilities[target]),
                         top=[(int(c), float(probabilities[c])) for c in order],
                         true_label=model.true_label(display))
    for key in keys:
        method = REGISTRY[key]
        params = cfg[method.settings] if method.settings else {}
        framework = method.runs_on(backend, model.frameworks)
        try:
            model.require(framework, key)
            function = method.function(framework)  # imports the method's libraries, outside the timing
            evaluations = model.evaluations.copy()
            start = time.perf_counter()
            maps, extras = contract.check(key, function(model, image, target, params), image.shape[:2])
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
        result.frameworks[key] = framework
        if model.evaluations != evaluations:
            result.evaluations[key] = dict(model.evaluations - evaluations)
        for name, attribution in maps.items():
            result.maps[name], result.seconds[name] = attribution, seconds / len(maps)
        if extras:
            result.extras[key] = extras
    return result


def scores(result: ImageResult, crop: int) -> dict[str, dict]:
    table = {}
    for key, attribution in result.maps.items():
        method = key.partition("@")[0]
        table[key] = {**center_scores(attribution, crop), "seconds": round(result.seconds[key], 4),
                      "framework": result.frameworks[method],
                      **({"evaluations": result.evaluations[method]} if method in result.evaluations else {})}
    for key, reason in result.skipped.items():
        table[key] = {"not_applicable": reason}
    for key, reason in result.failures.items():
        table[key] = {"error": reason}
    return table
