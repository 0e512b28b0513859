"""The experiments that test the heatmaps: sanity checks (Adebayo et al. 2018), the growing
patch, and hyperparameter sweeps (Bansal et al. 2020). Each returns an Experiment: its table, its
figures on demand, the methods that failed at a step and those that do not apply."""
from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from heatkit.base.progress import duration
from heatkit.base.run_state import current
from heatkit.base.errors import UsageError
from heatkit.methods.registry import REGISTRY, label
from heatkit.metrics import registry as metrics
from heatkit.pipeline import variants
from heatkit.pipeline.maps import image_result
from heatkit.pipeline.output import publish_run, save_figure, write_csv, write_json
from heatkit.pipeline.plotting import curves_figure, grid_figure, heatmap_figure
from heatkit.pipeline.record import run_record
from heatkit.base.similarity import constant_reason, ms_ssim, similarities, ssim

SANITY_TITLES = {"cascading": "cascading randomization, from the output layer down",
                 "independent": "independent randomization, one layer at a time",
                 "noise": "Gaussian noise on every weight, relative to each array's std"}


@dataclass
class Experiment:
    """What an experiment found. `rows` is its table (its CSV); `figures` makes each figure, by
    file name, when asked; `failures` holds (step, method key, error) for every method that raised
    at a step, `skipped` the reason of each method that does not apply to the model; `interrupted`
    says Ctrl-C stopped it, the finished steps being kept."""

    name: str  # sanity_<mode>, growing_patch or sweep: its files' stem
    results: list  # the explained steps, in order (ImageResult)
    rows: list[dict]
    figures: dict[str, Callable]
    settings: dict
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    stem: str = "experiment"  # the image's, which names the run folder
    request: dict = field(default_factory=dict)  # what was asked, as run.json records it
    scores: dict = field(default_factory=dict)  # per method, the registry's scores of the experiment (MPRT)

    def summary(self) -> str:
        return "\n".join([f"{label(key)} ({key}) not applicable: {reason}" for key, reason in self.skipped.items()] +
                         [f"{label(key)} ({key}) failed at {step}: {error}" for step, key, error in self.failures] +
                         _score_lines(self.scores))

    def save(self, out: str | Path | None = None, command: list[str] | None = None) -> Path:
        """Writes its CSV and run.json, then its figures, into a new run folder in `out` (default:
        the out_path setting), named after the image, and returns the folder. Ctrl-C and SIGTERM as
        for a heatmap run (output.publish_run): what is whole is kept, marked incomplete."""
        def write(path: Path) -> None:
            if self.rows:
                write_csv(path / f"{self.name}.csv", self.rows)
            if self.scores:  # scores.json's layout, as a heatmap run's
                write_json(path / "scores.json", {"images": [{"stem": self.stem, "methods": self.scores}]})
            write_json(path / "run.json", run_record(command, self.settings, self.request, self.interrupted))

        def draw(path: Path) -> None:
            for file, make in self.figures.items():
                save_figure(make(), path / file, self.settings["figure"]["dpi"])

        def incomplete(path: Path) -> None:
            write_json(path / "run.json", run_record(command, self.settings, self.request, True))

        folder, self.interrupted = publish_run(Path(out or self.settings["out_path"]), self.stem, self.interrupted,
                                               write, draw, incomplete)
        return folder


def sanity(model, image, display, keys, cfg, target, backend, mode: str) -> Experiment:
    """Maps of the original model, then after each randomization step (or noise level)."""
    params = cfg["sanity"]
    start = time.perf_counter()
    original = with_maps(image_result(model, image, display, "original", keys, cfg, target, backend, curves=False))
    first_seconds = time.perf_counter() - start
    target = original.target  # every step explains the original's class
    if mode == "noise":
        steps = [(f"noise {level:g}", variants.noiser(level, params["seed"])) for level in params["noise_levels"]]
    else:
        units = variants.blocks(model, params["steps"])
        chosen = [(name, [layer for _, layers in units[: i + 1] for layer in layers] if mode == "cascading" else layers)
                  for i, (name, layers) in enumerate(units)]
        steps = [(name, variants.reinitializer(layers, params["initializer"], params["std"], params["seed"]))
                 for name, layers in chosen]
    results = [original]
    progress = _Steps(model, f"sanity {mode}", len(steps), first_seconds)
    try:  # Ctrl-C at any moment, between steps too, keeps the steps finished
        for step, change in steps:
            result = image_result(variants.variant(model, change), image, display, step, keys, cfg, target, backend,
                             curves=False)
            if result.interrupted:
                break
            results.append(result)
            progress.step(step)
    except KeyboardInterrupt:
        pass
    interrupted, steps = len(results) <= len(steps), steps[: len(results) - 1]

    columns = ["original"] + [step for step, _ in steps]
    map_keys = list(original.maps)
    rows, curves = [], {}
    for key in map_keys:
        curves[key] = {metric: [] for metric in ("spearman", "spearman_abs", "ssim", "hog")}
        for step, result in enumerate(results):
            if key not in result.maps:  # the method failed on this variant: a gap in its curves
                for values in curves[key].values():
                    values.append(float("nan"))
                continue
            scores = similarities(original.maps[key], result.maps[key])
            rows.append({"method": key, "step": step, "changed": columns[step], **scores})
            for metric in curves[key]:
                curves[key][metric].append(scores[metric])
    failures = _failures(columns, results)
    rows += [{"method": key, "step": columns.index(step), "changed": step, "error": error}
             for step, key, error in failures]
    rows += [{"method": key, "step": 0, "changed": "original", "error": f"not applicable: {reason}"}
             for key, reason in original.skipped.items()]
    title, figure_cfg = SANITY_TITLES[mode], cfg["figure"]
    grid = [(label(key), [_map_or_reason(result, key) for result in results], columns) for key in map_keys]
    figures = {
        f"sanity_{mode}.png": lambda: grid_figure(grid, column_width=figure_cfg["column_width"] * 0.8,
                                                  cmap=figure_cfg["cmap"], title=title),
        f"sanity_{mode}_curves.png": lambda: curves_figure(columns, {label(key): values for key, values in curves.items()},
                                                           title=f"similarity to the original map: {title}"),
    }
    # MPRT compares with the model whose every layer is re-initialized: the cascade's last step
    scores = metrics.score_randomised(original.maps, results[-1].maps, cfg) \
        if mode == "cascading" and not interrupted and len(results) > 1 else {}
    return Experiment(f"sanity_{mode}", results, rows, figures, cfg, failures=failures, skipped=original.skipped,
                      interrupted=interrupted, scores=scores)


def growing_patch(model, image, display, keys, cfg, target, backend) -> Experiment:
    """Maps as a square patch of `fill` grows from `position`; SSIM and MS-SSIM to the unoccluded map."""
    params = cfg["growing_patch"]
    height, width = display.shape[:2]
    row, column = params["position"] or (0, 0)
    sizes = patch_sizes(params["sizes"], min(height, width))
    for size in sizes:
        if row + size > height or column + size > width:
            raise UsageError(f"growing_patch: a {size}-pixel patch at {row, column} leaves the {height}x{width} "
                             "image; choose smaller sizes or another position")
    start = time.perf_counter()
    results = [with_maps(image_result(model, image, display, "no patch", keys, cfg, target, backend, curves=False))]
    progress = _Steps(model, "growing patch", len(sizes), time.perf_counter() - start)
    target = results[0].target
    for size in sizes:
        occluded = display.copy()
        occluded[row:row + size, column:column + size] = params["fill"]
        result = image_result(model, model.preprocess(occluded), occluded, f"patch {size}x{size}", keys, cfg, target,
                         backend, curves=False)
        if result.interrupted:
            break
        results.append(result)
        progress.step(result.name)
    rows = []
    for size, result in zip([0, *sizes], results):
        for key, reference in results[0].maps.items():
            if key in result.maps:
                undefined = constant_reason(reference, result.maps[key])
                rows.append({"method": key, "patch": size, "top1": result.predicted,
                             "explained_probability": result.target_probability,
                             **({"ssim": float("nan"), "ms_ssim": float("nan"), "undefined": undefined} if undefined
                                else {"ssim": ssim(reference, result.maps[key]),
                                      "ms_ssim": ms_ssim(reference, result.maps[key])})})
        rows += [{"method": key, "patch": size, "error": error} for key, error in result.failures.items()]
    rows += [{"method": key, "patch": 0, "error": f"not applicable: {reason}"}
             for key, reason in results[0].skipped.items()]
    names, figure_cfg = {key: label(key) for key in results[0].maps}, cfg["figure"]
    figures = {"growing_patch.png": lambda: heatmap_figure(results, names, figure_cfg, model.ground_truth is not None)}
    return Experiment("growing_patch", results, rows, figures, cfg,
                      failures=_failures([result.name for result in results], results), skipped=results[0].skipped,
                      interrupted=len(results) <= len(sizes))


# The default sizes as fractions of the input's smaller side: on a 227-pixel input, 1 (a pixel),
# 5, 11, 21, 41 and 81 pixels
PATCH_FRACTIONS = (0.022, 0.048, 0.093, 0.18, 0.357)


def patch_sizes(sizes: list[int] | None, side: int) -> list[int]:
    """The growing patch's sides: those given, or a pixel and PATCH_FRACTIONS of `side`."""
    if sizes is not None:
        return sizes
    return sorted({1, *(max(1, round(fraction * side)) for fraction in PATCH_FRACTIONS)})


def sweep(model, image, display, keys, swept: list[tuple[str, list[tuple[object, dict]]]], target, backend,
          cfg: dict) -> Experiment:
    """Each swept setting at each of its values, for the chosen methods that read it. `swept` holds
    (setting key, [(value, the validated settings with that value)])."""
    grid, rows, results, interrupted = [], [], [], False
    progress = None  # its estimate comes from the first value's maps
    start = time.perf_counter()
    for key, values in swept:
        section = key.split(".")[0]
        methods = [k for k in keys if REGISTRY[k].settings and REGISTRY[k].settings.name == section]
        if not methods:
            raise UsageError(f"--sweep {key}: none of the chosen methods reads the {section} settings")
        maps: dict[str, list] = {method: [] for method in methods}
        for index, (value, value_cfg) in enumerate(values):
            result = image_result(model, image, display, f"{key}={value}", methods, value_cfg, target, backend, curves=False)
            if result.interrupted and (grid or index):
                interrupted = True
                break
            if index == 0:
                with_maps(result)  # which also ends the run if Ctrl-C came before any value finished
                rows += [{"setting": key, "method": method, "value_a": value, "error": f"not applicable: {reason}"}
                         for method, reason in result.skipped.items()]
            target = result.target
            results.append(result)
            rows += [{"setting": key, "method": method, "value_a": value, "error": error}
                     for method, error in result.failures.items()]
            for method in methods:
                maps[method].append(_map_or_reason(result, method))
            if progress is None:
                progress = _Steps(model, "sweep", sum(len(values) for _, values in swept) - 1,
                                  time.perf_counter() - start)
            else:
                progress.step(result.name)
        for method, maps_of_values in maps.items():
            if not maps_of_values:  # Ctrl-C stopped this sweep at its first value
                continue
            grid.append((label(method), maps_of_values, [f"{key}={value}" for value, _ in values[: len(maps_of_values)]]))
            for (i, a), (j, b) in itertools.combinations(enumerate(maps_of_values), 2):
                if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
                    scores = similarities(a, b)
                    rows.append({"setting": key, "method": method, "value_a": values[i][0], "value_b": values[j][0],
                                 "ssim": scores["ssim"], "spearman": scores["spearman"],
                                 **({"undefined": scores["undefined"]} if "undefined" in scores else {})})
        if interrupted:
            break
    figure_cfg = cfg["figure"]
    title = "hyperparameter sweep: " + "; ".join(f"{key}={','.join(str(v) for v, _ in values)}" for key, values in swept)
    figures = {"sweep.png": lambda: grid_figure(grid, column_width=figure_cfg["column_width"] * 0.8,
                                                cmap=figure_cfg["cmap"], title=title)}
    return Experiment("sweep", results, rows, figures, cfg, failures=_failures([r.name for r in results], results),
                      skipped={key: reason for result in results for key, reason in result.skipped.items()},
                      interrupted=interrupted)


def with_maps(result):
    """The first result of an experiment, which needs at least one map to compare the rest with."""
    if result.interrupted:
        raise KeyboardInterrupt  # Ctrl-C before anything could be compared: nothing to keep
    if not result.maps:
        reasons = {**result.skipped, **result.failures}
        raise UsageError("no chosen method gave a map to experiment on (" +
                         "; ".join(f"{key}: {reason}" for key, reason in reasons.items()) +
                         "); choose methods that apply to this model")
    return result


class _Steps:
    """An experiment's progress: first, one line where its steps would take longer than
    perturbation.warn_seconds, each costing what the first maps cost; then, unless progress is off
    (-q), one line a step, which a log keeps where the methods' own bars vanish."""

    def __init__(self, model, name: str, count: int, first_seconds: float):
        options = current().options
        self.name, self.count, self.progress, self.done = name, count, options.progress, 0
        if options.warn_seconds and count * first_seconds > options.warn_seconds:
            _say(f"{name}: about {duration(count * first_seconds)} to go ({count} steps, each recomputing the maps, "
                 f"which took {first_seconds:.1f} s on the first); to make it cheaper, choose fewer methods (-hm) or "
                 "cheaper settings for them")
        self.started = time.perf_counter()

    def step(self, what: str) -> None:
        now = time.perf_counter()
        self.done += 1
        if self.progress:
            _say(f"{self.name}: step {self.done} of {self.count} ({what}) in {duration(now - self.started)}")
        self.started = now


def _say(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def _score_lines(scores: dict[str, dict]) -> list[str]:
    """One line per score: its name, its better direction and each method's value."""
    names = sorted({name for found in scores.values() for name in found}, key=list(metrics.REGISTRY).index)
    return [f"{metrics.REGISTRY[name].name} ({metrics.REGISTRY[name].direction} is better): " +
            ", ".join(f"{key} {'-' if found.get(name) is None else format(found[name], '.3f')}"
                      for key, found in scores.items()) for name in names]


def _failures(steps: list[str], results) -> list[tuple[str, str, str]]:
    """(step, method key, error) for every method that raised at a step."""
    return [(step, key, error) for step, result in zip(steps, results) for key, error in result.failures.items()]


def _map_or_reason(result, key: str):
    """A step's map for the figure, or the reason it has none."""
    if key in result.maps:
        return result.maps[key]
    if key in result.skipped:
        return f"not applicable: {result.skipped[key]}"
    return f"failed: {result.failures[key]}" if key in result.failures else None
