"""Does the map's relevance fall inside the region the answer depends on? Pointing Game (Zhang et
al. 2018), Attribution Localisation (Kohlbrenner et al. 2020), Relevance Mass Accuracy and
Relevance Rank Accuracy (Arras et al. 2022), each against a ground-truth mask: the model's own
where it declares one (the center pixel, the region model's square, the two-pixel models' pair),
or `localisation.mask`: one file for every image, or a folder with each image's mask at its own
relative path (a dataset's cat/1.png: the folder's cat/1.png).

The papers count positive relevance, and so does `localisation.relevance = "positive"`;
"absolute" and "signed" give Quantus 0.6's defaults (abs=True for Attribution Localisation,
abs=False for the others). Ties are shared: where several pixels hold the maximum, or straddle
the K-th rank, each counts for its chance of being picked, so a constant map scores the mask's
share of the image rather than a hit. Quantus counts any tied maximum inside the mask as a hit,
and breaks rank ties by its sort; on maps without ties the two agree (tests/test_metrics.py).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from heatkit.base.rules import Choice, Optional, Text
from heatkit.metrics._entry import Category, Metric, Reads
from heatkit.base.declared import Paper, Setting, Settings

SETTINGS = Settings("localisation", "Localisation metrics: how much of a map's relevance falls in a ground-truth "
                    "mask (on models that declare one, or with a mask file).", {
                        "relevance": Setting("positive", Choice(("positive", "absolute", "signed")),
                                             "what counts: the positive part (the papers), |a|, or a as it is"),
                        "mask": Setting(None, Optional(Text()),
                                        "an image file, nonzero inside, resized to the map by nearest pixel; or a "
                                        "folder of them, each image's at its own relative path (an image without "
                                        "one gets no localisation scores); None: the model's own ground truth"),
                    })


def relevance(attribution: np.ndarray, params: dict) -> np.ndarray:
    values = attribution.astype(np.float64).ravel()
    return {"positive": lambda: np.clip(values, 0, None), "absolute": lambda: np.abs(values),
            "signed": lambda: values}[params["relevance"]]()


def pointing_game(attribution, mask, params) -> float:
    """1 if the map's maximum lies in the mask, 0 if not; the share of tied maxima inside."""
    values = relevance(attribution, params)
    top = values == values.max()
    return float(top[mask.ravel()].sum() / top.sum())


def attribution_localisation(attribution, mask, params) -> float | None:
    """Relevance inside the mask over all relevance (the paper's μ)."""
    values = relevance(attribution, params)
    total = values.sum()
    return float(values[mask.ravel()].sum() / total) if total != 0 else None


def rank_accuracy(attribution, mask, params) -> float:
    """The share of the mask's K pixels among the map's K highest (ties at the K-th value shared)."""
    values, inside = relevance(attribution, params), mask.ravel()
    k = int(inside.sum())
    threshold = np.sort(values)[-k]
    above, tied = values > threshold, values == threshold
    hits = (above & inside).sum() + (k - above.sum()) * (tied & inside).sum() / tied.sum()
    return float(hits / k)


def mask_from(params: dict, shape: tuple[int, int], ground_truth: str | None, name: str = "") -> np.ndarray | None:
    """The ground-truth mask at the map's (H, W): the file's; in a folder, the image's own (None
    where it has none); or the model's, or None."""
    from heatkit.base import data

    if params["mask"] is None:
        return data.ground_truth_mask(ground_truth, shape)
    path = Path(params["mask"])
    if path.is_dir():
        path = masks_in(path, path.stat().st_mtime_ns).get(name)
        if path is None:
            return None
    return _read_mask(path, shape)


@functools.lru_cache(maxsize=4)
def masks_in(folder: Path, modified: int) -> dict[str, Path]:
    """The mask files below `folder` by the name of the image they belong to: the relative path
    without its suffix, `/` written `_`, as a dataset names its images (cat/1.png: cat_1). Listed
    once for a dataset's images (`modified`, the folder's time, renews the list)."""
    from heatkit.base.images import IMAGE_SUFFIXES

    return {path.relative_to(folder).with_suffix("").as_posix().replace("/", "_"): path
            for path in sorted(folder.rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES}


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    from heatkit.base.errors import UsageError

    try:
        with Image.open(path) as picture:
            mask = np.asarray(picture.convert("L").resize(shape[::-1], Image.NEAREST)) > 0
    except OSError as error:
        raise UsageError(f"cannot read the mask {path} ({error}); give an image file, nonzero inside "
                         "the region, or a folder of them (localisation.mask)") from None
    if not mask.any():
        raise UsageError(f"the mask {path} is empty at {shape[0]}x{shape[1]}: no pixel is nonzero")
    return mask


_ARRAS = Paper("Arras et al. 2022", "CLEVR-XAI: a benchmark dataset for the ground truth evaluation of neural "
               "network explanations", "https://doi.org/10.1016/j.inffus.2021.11.008")

METRICS = [
    Metric("pointing_game", "Pointing Game",
           Paper("Zhang et al. 2018", "Top-down neural attention by excitation backprop",
                 "https://arxiv.org/abs/1608.00507"),
           Category.LOCALISATION, True, Reads.MASK, pointing_game, SETTINGS),
    Metric("attribution_localisation", "Attribution Localisation",
           Paper("Kohlbrenner et al. 2020", "Towards best practice in explaining neural network decisions with LRP",
                 "https://arxiv.org/abs/1910.09840"),
           Category.LOCALISATION, True, Reads.MASK, attribution_localisation, SETTINGS),
    Metric("relevance_mass_accuracy", "Relevance Mass Accuracy", _ARRAS,
           Category.LOCALISATION, True, Reads.MASK, attribution_localisation, SETTINGS),
    Metric("relevance_rank_accuracy", "Relevance Rank Accuracy", _ARRAS,
           Category.LOCALISATION, True, Reads.MASK, rank_accuracy, SETTINGS),
]
