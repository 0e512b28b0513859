"""The experiments that test the heatmaps: sanity checks (Adebayo et al. 2018), the growing
patch, and hyperparameter sweeps (Bansal et al. 2020). Each writes a figure and a CSV."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import config, variants
from core.errors import UsageError
from core.explain import explain
from core.output import save_figure, write_csv
from core.plotting import curves_figure, grid_figure, heatmap_figure
from core.similarity import ms_ssim, similarities, ssim
from methods.registry import REGISTRY, label as method_name


@dataclass
class Outcome:
    """How an experiment ended: the methods that failed, (step, method key, error) each, and whether
    Ctrl-C stopped it (its finished steps are written either way)."""

    failures: list[tuple[str, str, str]]
    interrupted: bool


def sanity(model, image, display, keys, cfg, target, backend, mode: str, folder: Path, scratch: Path) -> Outcome:
    """Maps of the original model, then after each randomization step (or noise level)."""
    params = cfg["sanity"]
    original = with_maps(explain(model, image, display, "original", keys, cfg, target, backend))
    target = original.target  # every step explains the original's class
    if mode == "noise":
        steps = [(f"noise {level:g}", variants.noiser(level, params["seed"])) for level in params["noise_levels"]]
    else:
        layers = variants.weighted_layers(model)
        chosen = [layers[: i + 1] if mode == "cascading" else [layer] for i, layer in enumerate(layers)]
        steps = [(names[-1], variants.reinitializer(names, params["initializer"], params["std"], params["seed"]))
                 for names in chosen]
    results = [original]
    for index, (label, change) in enumerate(steps):
        altered = variants.variant(model, scratch, change, f"step{index}")
        result = explain(altered, image, display, label, keys, cfg, target, backend)
        if result.interrupted:
            break
        results.append(result)
    interrupted, steps = len(results) <= len(steps), steps[: len(results) - 1]

    columns = ["original"] + [label for label, _ in steps]
    map_keys = [key for key in original.maps]
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
            for metric, value in scores.items():
                curves[key][metric].append(value)
    failures = _failures(columns, results)
    rows += [{"method": key, "step": columns.index(label), "changed": label, "error": error}
             for label, key, error in failures]
    title = {"cascading": "cascading randomization, from the output layer down",
             "independent": "independent randomization, one layer at a time",
             "noise": "Gaussian noise on every weight, relative to each array's std"}[mode]
    grid = [(method_name(key), [_map_or_reason(result, key) for result in results], columns) for key in map_keys]
    figure_cfg = cfg["figure"]
    save_figure(grid_figure(grid, column_width=figure_cfg["column_width"] * 0.8, cmap=figure_cfg["cmap"],
                            title=title), folder / f"sanity_{mode}.png", figure_cfg["dpi"])
    save_figure(curves_figure(columns, {method_name(key): values for key, values in curves.items()},
                              title=f"similarity to the original map: {title}"),
                folder / f"sanity_{mode}_curves.png", figure_cfg["dpi"])
    write_csv(folder / f"sanity_{mode}.csv", rows)
    return Outcome(failures, interrupted)


def growing_patch(model, image, display, keys, cfg, target, backend, folder: Path) -> Outcome:
    """Maps as a square patch of `fill` grows from `position`; SSIM and MS-SSIM to the unoccluded map."""
    params, preprocess = cfg["growing_patch"], model.preprocess
    height, width = display.shape[:2]
    row, column = params["position"] or (0, 0)
    for size in params["sizes"]:
        if row + size > height or column + size > width:
            raise UsageError(f"growing_patch: a {size}-pixel patch at {row, column} leaves the {height}x{width} "
                             "image; choose smaller sizes or another position")
    results = [with_maps(explain(model, image, display, "no patch", keys, cfg, target, backend))]
    target = results[0].target
    for size in params["sizes"]:
        occluded = display.copy()
        occluded[row:row + size, column:column + size] = params["fill"]
        result = explain(model, preprocess(occluded), occluded, f"patch {size}x{size}", keys, cfg, target, backend)
        if result.interrupted:
            break
        results.append(result)
    names = {key: method_name(key) for key in results[0].maps}
    figure_cfg = cfg["figure"]
    save_figure(heatmap_figure(results, names, crop=figure_cfg["crop"], column_width=figure_cfg["column_width"],
                               cmap=figure_cfg["cmap"]), folder / "growing_patch.png", figure_cfg["dpi"])
    rows = []
    sizes = [0, *params["sizes"]]
    for size, result in zip(sizes, results):
        for key, reference in results[0].maps.items():
            if key in result.maps:
                rows.append({"method": key, "patch": size, "top1": result.predicted,
                             "explained_probability": result.target_probability,
                             "ssim": ssim(reference, result.maps[key]), "ms_ssim": ms_ssim(reference, result.maps[key])})
        rows += [{"method": key, "patch": size, "error": error} for key, error in result.failures.items()]
    failures = _failures([result.name for result in results], results)
    write_csv(folder / "growing_patch.csv", rows)
    return Outcome(failures, len(results) <= len(params["sizes"]))


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


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """KEY=V1,V2,... as the key and the values' texts (each checked when its run is configured)."""
    key, separator, values = text.partition("=")
    if not separator or "." not in key or not values:
        raise UsageError(f"--sweep {text!r}: write METHOD.SETTING=V1,V2,... e.g. --sweep sg.noise_scale=0.1,0.2")
    return key, [value.strip() for value in values.split(",")]


def sweep(model, image, display, keys, cfg_overrides: list[str], sweeps: list[str], target, backend,
          folder: Path, figure_cfg: dict) -> Outcome:
    """Each swept setting at each value, for the chosen methods that read it."""
    grid, rows, failures, interrupted = [], [], [], False
    for text in sweeps:
        key, values = parse_sweep(text)
        section = key.split(".")[0]
        methods = [k for k in keys if REGISTRY[k].settings == section]
        if not methods:
            raise UsageError(f"--sweep {key}: none of the chosen methods reads the {section} settings")
        maps: dict[str, list] = {method: [] for method in methods}
        for index, value in enumerate(values):
            cfg = config.load(overrides=[*cfg_overrides, f"{key}={value}"])
            result = explain(model, image, display, f"{key}={value}", methods, cfg, target, backend)
            if result.interrupted and (grid or index):
                interrupted = True
                break
            if index == 0:
                with_maps(result)  # which also ends the run if Ctrl-C came before any value finished
            target = result.target
            failures += _failures([result.name], [result])
            rows += [{"setting": key, "method": method, "value_a": value, "error": error}
                     for _, method, error in _failures([result.name], [result])]
            for method in methods:
                maps[method].append(_map_or_reason(result, method))
        for method, swept in maps.items():
            if not swept:  # Ctrl-C stopped this sweep at its first value
                continue
            grid.append((method_name(method), swept, [f"{key}={value}" for value in values[: len(swept)]]))
            for (i, a), (j, b) in itertools.combinations(enumerate(swept), 2):
                if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
                    scores = similarities(a, b)
                    rows.append({"setting": key, "method": method, "value_a": values[i], "value_b": values[j],
                                 "ssim": scores["ssim"], "spearman": scores["spearman"]})
        if interrupted:
            break
    save_figure(grid_figure(grid, column_width=figure_cfg["column_width"] * 0.8, cmap=figure_cfg["cmap"],
                            title="hyperparameter sweep: " + "; ".join(sweeps)), folder / "sweep.png",
                figure_cfg["dpi"])
    if rows:
        write_csv(folder / "sweep.csv", rows)
    return Outcome(failures, interrupted)


def _failures(labels: list[str], results) -> list[tuple[str, str, str]]:
    """(step label, method key, error) for every method that raised at a step."""
    return [(label, key, error) for label, result in zip(labels, results) for key, error in result.failures.items()]


def _map_or_reason(result, key: str):
    """A step's map for the figure, or the reason it has none."""
    if key in result.maps:
        return result.maps[key]
    return f"failed: {result.failures[key]}" if key in result.failures else None
