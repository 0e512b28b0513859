"""A heatmap run: the chosen methods on one or more images, and what its figure, tables and files
are made of. `compute` is the loop; `Run` is what the API's explain() returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heatkit.base.similarity import agreement, format_agreement
from heatkit.methods.registry import label
from heatkit.metrics import registry as metrics
from heatkit.pipeline import plotting, report
from heatkit.pipeline.maps import image_results
from heatkit.pipeline.inputs import Input
from heatkit.pipeline.results import Explained, ImageResult
from heatkit.pipeline.scores import format_metrics, format_table


def compute(model, inputs: list[Input], keys: list[str], cfg: dict, targets: list[int | None],
            backends: list[str], verbose: bool = False) -> tuple[list[Explained], bool]:
    """Every method on every input, explaining its target (None: its predicted class), once per
    backend, and the metrics that grade the images together; and whether Ctrl-C stopped it (what
    finished is kept: an image stopped midway has the maps it had)."""
    images, displays = [found.model_input for found in inputs], [found.pixels for found in inputs]
    results: list[list] = [[] for _ in inputs]
    interrupted = False
    for backend in backends:
        names = [found.stem + (f" ({backend})" if len(backends) > 1 else "") for found in inputs]
        try:
            for index, result in enumerate(image_results(model, images, displays, names, keys, cfg, targets, backend,
                                                          verbose)):
                results[index].append(result)
                if result.interrupted:
                    interrupted = True
                    break
        except KeyboardInterrupt:  # while the methods that take a batch of images ran
            interrupted = True
        if interrupted:
            break
    if not interrupted and len(inputs) > 1:
        for per_backend in zip(*results):  # each backend's results, one an image
            graded = metrics.score_images([result.maps for result in per_backend],
                                          np.array([result.predicted for result in per_backend]), cfg)
            for result, found in zip(per_backend, graded):
                result.add_scores(found)
    return [Explained(given.stem, given.source, found) for given, found in zip(inputs, results) if found], interrupted


@dataclass
class Run:
    """The maps, probabilities, scores and timings of a run, and its figure and files on demand."""

    items: list[Explained]  # one per image
    methods: list[str]  # the method keys run, in order
    backends: list[str]  # the gradient family's framework; both with compare_backends
    settings: dict
    model: object  # heatkit.model.Model
    request: dict  # what was asked, as run.json records it
    class_names: list[str] | None = None
    interrupted: bool = False  # Ctrl-C stopped it; the images and methods finished are here
    notes: list[str] = field(default_factory=list)  # what a user should know of how the model read its input

    # ---- one image's results, for the usual single-image run ----
    @property
    def result(self) -> ImageResult:
        """The image's result (on the first backend). A run of several images has `items` instead."""
        if len(self.items) != 1:
            raise ValueError(f"this run explained {len(self.items)} images: use run.items[i].results[0]")
        return self.items[0].results[0]

    @property
    def maps(self) -> dict[str, np.ndarray]:
        return self.result.maps

    @property
    def scores(self) -> dict[str, dict]:
        return self.result.scores()

    @property
    def probabilities(self) -> np.ndarray:
        return self.result.probabilities

    @property
    def seconds(self) -> dict[str, float]:
        return self.result.seconds

    def stack(self, key: str, as_tensors: bool = False):
        """Map `key` of every image (on the first backend), stacked as one float32 (N, H, W) array,
        as captum returns a batch's attributions; with `as_tensors`, a torch tensor on the model's
        device. A KeyError names the images that have no such map (its method failed there, or does
        not apply)."""
        missing = [item.stem for item in self.items if key not in item.results[0].maps]
        if missing:
            raise KeyError(f"no map {key!r} of {', '.join(missing)}: see run.items[i].results[0].failures and .skipped")
        stacked = np.stack([item.results[0].maps[key] for item in self.items])
        if not as_tensors:
            return stacked
        torch = self.model.torch.torch
        return torch.from_numpy(stacked).to(self.model.torch.device)

    # ---- everything ----
    @property
    def names(self) -> dict[str, str]:
        """Display names by map key, in column order (a method run on several layers, as
        `gradcam@conv2`, gets one column per layer; one run on one layer is named with it)."""
        names = {}
        results = [result for item in self.items for result in item.results]
        for key in self.methods:
            layered = dict.fromkeys(name for result in results for name in result.maps if name.startswith(f"{key}@"))
            layers = {result.layers[key] for result in results if key in result.layers}
            names.update({name: label(name) for name in layered} or
                         {key: label(key) + (f" @{layers.pop()}" if len(layers) == 1 else "")})
        return names

    @property
    def failed(self) -> bool:
        """Whether a method raised on some image."""
        return any(result.failures for item in self.items for result in item.results)

    def rows(self) -> list[dict]:
        """Per image: its classes and probability, and the scores of every map (with
        compare_backends, the other framework's and how far the two agree)."""
        rows = []
        for item in self.items:
            first = item.results[0]
            row = {"image": item.source, "stem": item.stem, "true_label": first.true_label,
                   "predicted_label": first.predicted,
                   "explained_class": first.target, "explained_probability": first.target_probability,
                   "methods": first.scores(),
                   **({"random_ranking": first.random_ranking()} if first.curves else {})}
            if len(item.results) > 1:
                second = item.results[1]
                row["compare_backends"] = {
                    "backends": self.backends, f"methods_{self.backends[1]}": second.scores(),
                    "agreement": {key: agreement(first.maps[key], second.maps[key])
                                  for key in self.names if key in first.maps and key in second.maps}}
            rows.append(row)
        return rows

    def table(self) -> list[dict]:
        """scores.csv: one row per image and map (each framework's, with compare_backends), the
        layer it explains, its metrics in the registry's order (those some map has: no center
        scores on a model without a ground truth), and why a method gave no map."""
        rows = [(item, backend, key, result, scores) for item in self.items
                for backend, result in zip(self.backends, item.results) for key, scores in result.scores().items()]
        columns = [metric.key for metric in metrics.ROW_METRICS
                   if any(scores.get(metric.key) is not None for *_, scores in rows)]
        layered = any("layer" in scores for *_, scores in rows)
        return [{"image": item.source, "stem": item.stem, "backend": backend, "method": key,
                 **({"layer": scores.get("layer")} if layered else {}),
                 "true_label": result.true_label, "predicted_label": result.predicted, "explained_class": result.target,
                 "explained_probability": result.target_probability,
                 **{name: scores.get(name) for name in columns}, "seconds": scores.get("seconds"),
                 "error": scores.get("error") or (f"not applicable: {scores['not_applicable']}"
                                                  if "not_applicable" in scores else None)}
                for item, backend, key, result, scores in rows]

    def header(self) -> dict:
        """What scores.json says of the run as a whole."""
        return {"model": self.model.name, "backend": self.backends[0], "evaluated_with": self.model.evaluator_framework,
                "dtype": self.model.dtype, "ground_truth": self.model.ground_truth is not None,
                **({"notes": self.notes} if self.notes else {})}

    def figure(self, items: list[Explained] | None = None, show: bool = False):
        """The heatmap figure (a matplotlib Figure) of these images, by default all; shown with
        pyplot only if asked."""
        figure = plotting.heatmap_figure([r for item in items or self.items for r in item.results], self.names,
                                         self.settings["figure"], self.model.ground_truth is not None,
                                         class_names=self.class_names,
                                         warning=plotting.INCOMPLETE if self.interrupted else None)
        if show:
            plotting.show(figure)
        return figure

    def summary(self) -> str:
        """The printed tables: every image's scores (and the frameworks' agreement)."""
        names, parts = self.names, []
        for item, row in zip(self.items, self.rows()):
            heading = f"\n== {item.source} ==\n" if len(self.items) > 1 else ""
            parts.append(heading + format_table(row["methods"], names, row.get("random_ranking")))
            parts.append(format_metrics(row["methods"], names))
            if "compare_backends" in row:
                parts.append(format_agreement(row["compare_backends"]["agreement"], names, *self.backends))
        return "\n\n".join(part for part in parts if part)

    def save(self, out: str | Path | None = None, command: list[str] | None = None) -> Path:
        """Writes the run folder (figure, maps, scores, record) into `out` (default: the out_path
        setting) and returns its path."""
        return report.write_run(self, Path(out or self.settings["out_path"]), command)
