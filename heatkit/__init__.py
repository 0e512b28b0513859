"""heatkit: many attribution methods on one image classifier, side by side, checked against
models whose right answer is known.

    import heatkit
    run = heatkit.explain("models/center_pixel.h5", "images/chelsea.png", methods=["grad", "occlusion"])
    run.maps["occlusion"], run.scores["occlusion"], run.figure()

The command line is `heatkit` (also `heatmap_script.py` in a checkout, and `python -m heatkit`).
The API is heatkit/api.py (runs) and heatkit/studies.py (experiments). Each is imported on first
use of one of its names, so that the command line's -h, which imports heatkit, stays instant.
"""
import importlib

__version__ = "0.4.0"

API = {**dict.fromkeys(("DatasetRun", "Model", "Rerun", "Run", "explain", "explain_dataset", "load_model", "rerun",
                        "settings", "tensorflow"), "heatkit.api"),
       **dict.fromkeys(("Experiment", "MetricEvaluation", "evaluate_metrics", "growing_patch", "sanity", "sweep"),
                       "heatkit.studies")}


def __getattr__(name: str):
    if name in API:
        return getattr(importlib.import_module(API[name]), name)
    raise AttributeError(f"module 'heatkit' has no attribute {name!r}")
