"""Compute the chosen methods' maps for one input and score them."""
from __future__ import annotations

import time
import traceback

import numpy as np

from core.plotting import ImageResult
from core.scores import center_scores
from methods.registry import REGISTRY


def explain(model, image: np.ndarray, name: str, keys: list[str], cfg: dict, target: int | None,
            verbose: bool = False) -> ImageResult:
    """Every method's map for `image`, explaining `target` (default: the predicted class).

    A method that raises is recorded as a failure with its message; the others still run.
    """
    probabilities = model.probabilities(image[None])[0]
    predicted = int(probabilities.argmax())
    target = predicted if target is None else target
    order = np.argsort(-probabilities, kind="stable")[: cfg["figure"]["top_k"]]
    result = ImageResult(name=name, image=image, predicted=predicted, target=target,
                         target_probability=float(probabilities[target]),
                         top=[(int(c), float(probabilities[c])) for c in order],
                         true_label=model.true_label(image))
    for key in keys:
        method = REGISTRY[key]
        params = cfg[method.settings] if method.settings else {}
        try:
            function = method.function()  # imports the method's libraries, outside the timing
            start = time.perf_counter()
            attribution = function(model, image, target, params)
            _check_contract(key, attribution, image.shape[:2])
        except Exception as error:  # reported in the table, scores.json and the figure
            if verbose:
                traceback.print_exc()
            result.failures[key] = f"{type(error).__name__}: {error}"
            continue
        result.seconds[key] = time.perf_counter() - start
        result.maps[key] = attribution
    return result


def scores(result: ImageResult, crop: int) -> dict[str, dict]:
    table = {}
    for key, attribution in result.maps.items():
        table[key] = {**center_scores(attribution, crop), "seconds": round(result.seconds[key], 4)}
    for key, reason in result.failures.items():
        table[key] = {"error": reason}
    return table


def _check_contract(key: str, attribution, shape) -> None:
    if not (isinstance(attribution, np.ndarray) and attribution.dtype == np.float32 and attribution.shape == shape):
        got = f"{getattr(attribution, 'dtype', type(attribution).__name__)} {getattr(attribution, 'shape', '')}"
        raise TypeError(f"method {key} returned {got}, not a float32 {shape} map")
