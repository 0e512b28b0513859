"""heatkit: many attribution methods on one image classifier, side by side, checked against
models whose right answer is known.

    import heatkit
    run = heatkit.explain("models/center_pixel.h5", "images/chelsea.png", methods=["grad", "occlusion"])
    run.maps["occlusion"], run.scores["occlusion"], run.figure()

The command line is `heatkit` (also `heatmap_script.py` in a checkout, and `python -m heatkit`).
The API is heatkit/api.py. It is imported on first use of one of its names, so that the command
line's -h, which imports heatkit, stays instant.
"""
import importlib

__version__ = "0.4.0"

API = ("DatasetRun", "Experiment", "MetricEvaluation", "Model", "Rerun", "Run", "evaluate_metrics", "explain",
       "explain_dataset", "growing_patch", "load_model", "rerun", "sanity", "settings", "sweep", "tensorflow")


def __getattr__(name: str):
    if name in API:
        return getattr(importlib.import_module("heatkit.api"), name)
    raise AttributeError(f"module 'heatkit' has no attribute {name!r}")
