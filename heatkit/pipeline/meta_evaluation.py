"""Which metric agrees with the truth? On models whose answer is known (the center-pixel and
region models), the truth of a map is the share of its |attribution| that falls on the pixels the
probabilities depend on. Per image, the methods are ranked by that share and by each metric (its
better direction first); Kendall's tau-b between the two rankings says how far the metric can be
believed there. Per model and metric, over the images of each seed (the images and every method's
seed set from it): the mean tau, a bootstrap interval of that mean (images resampled, seeded), the
spread of tau over images and seeds, and the spread of the seeds' means.

Functions of score rows and arrays: heatkit/evaluation.py runs the methods, this grades the metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heatkit.metrics.registry import METRICS
from heatkit.pipeline.plotting import literal_text


def truth(attribution: np.ndarray, mask: np.ndarray) -> float | None:
    """The share of |attribution| on the mask; None for a map of zeros."""
    magnitude = np.abs(attribution.astype(np.float64))
    total = magnitude.sum()
    return float(magnitude[mask].sum() / total) if total > 0 else None


def graded() -> list:
    """The metrics that grade (they have a better direction)."""
    return [metric for metric in METRICS if metric.higher_is_better is not None]


def image_taus(scores: dict[str, dict], truths: dict[str, float | None]) -> dict[str, float | None]:
    """Per graded metric, Kendall's tau-b between the methods' ranking by it and by the truth on one
    image; None where fewer than three maps have both, or either ranking is one tie."""
    from scipy.stats import kendalltau

    taus = {}
    for metric in graded():
        pairs = [(truths[key], row[metric.key]) for key, row in scores.items()
                 if truths.get(key) is not None and row.get(metric.key) is not None]
        if len(pairs) < 3:
            taus[metric.key] = None
            continue
        true, found = np.array(pairs, dtype=np.float64).T
        tau = kendalltau(true, found if metric.higher_is_better else -found).statistic
        taus[metric.key] = None if np.isnan(tau) else float(tau)
    return taus


def summarize(taus: list[list[dict[str, float | None]]], resamples: int, seed: int) -> dict[str, dict]:
    """Per metric, over the images of every seed (`taus` holds one list a seed, one dict an image):
    mean tau, its bootstrap 95% interval, the spread over images and seeds, the spread of the
    seeds' means, and the count."""
    rng = np.random.default_rng(seed)
    summary = {}
    for metric in graded():
        by_seed = [np.array([found[metric.key] for found in images if found.get(metric.key) is not None])
                   for images in taus]
        values = np.concatenate(by_seed)
        if values.size == 0:
            summary[metric.key] = {"tau": None, "low": None, "high": None, "sd": None, "seed_sd": None, "images": 0}
            continue
        means = values[rng.integers(0, values.size, (resamples, values.size))].mean(1)
        seed_means = [found.mean() for found in by_seed if found.size]
        summary[metric.key] = {"tau": float(values.mean()), "low": float(np.percentile(means, 2.5)),
                               "high": float(np.percentile(means, 97.5)), "sd": float(values.std()),
                               "seed_sd": float(np.std(seed_means)) if len(seed_means) > 1 else None,
                               "images": int(values.size)}
    return summary


def rows(summaries: dict[str, dict[str, dict]]) -> list[dict]:
    """One row per model and metric, for metrics.csv."""
    by_key = {metric.key: metric for metric in graded()}
    return [{"model": model, "metric": key, "category": by_key[key].category.value,
             "better": by_key[key].direction, **found}
            for model, summary in summaries.items() for key, found in summary.items()]


def format_table(summaries: dict[str, dict[str, dict]]) -> str:
    """Metrics down, models across: mean tau [95% interval] and its spread over the images."""
    models = list(summaries)
    width = max(len(metric.key) for metric in graded()) + 2
    cell = max(30, *(len(model) + 2 for model in models))
    lines = [f"{'metric':<{width}}{'better':>8}" + "".join(f"{model:>{cell}}" for model in models),
             f"{'':<{width}}{'':>8}" + "".join(f"{'tau [95% interval] sd':>{cell}}" for _ in models)]
    lines.append("-" * len(lines[0]))
    for metric in graded():
        cells = ""
        for model in models:
            found = summaries[model][metric.key]
            text = "-" if found["tau"] is None else \
                f"{found['tau']:+.2f} [{found['low']:+.2f}, {found['high']:+.2f}] {found['sd']:.2f}"
            cells += f"{text:>{cell}}"
        lines.append(f"{metric.key:<{width}}{metric.direction:>8}{cells}")
    return "\n".join(lines)


@literal_text
def figure(summaries: dict[str, dict[str, dict]]):
    """A metric x model grid of mean tau (-1 to 1), each cell written in."""
    from matplotlib.figure import Figure

    models, metrics = list(summaries), [metric.key for metric in graded()]
    grid = np.array([[np.nan if summaries[model][key]["tau"] is None else summaries[model][key]["tau"]
                      for model in models] for key in metrics])
    fig = Figure(figsize=(3.4 + 1.4 * len(models), 0.35 * len(metrics) + 1.2))
    axes = fig.subplots()
    image = axes.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    axes.set_xticks(range(len(models)), models, fontsize=8)
    axes.set_yticks(range(len(metrics)), metrics, fontsize=8)
    for (row, col), value in np.ndenumerate(grid):
        axes.text(col, row, "-" if np.isnan(value) else f"{value:+.2f}", ha="center", va="center", fontsize=7)
    axes.set_title("Kendall tau with the ground-truth ranking", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.tight_layout()
    return fig


@dataclass
class MetricEvaluation:
    """What --evaluate-metrics found: per model, per image the taus, and their summaries."""

    taus: dict[str, list[list[dict[str, float | None]]]]  # model -> a list a seed, a dict an image: metric -> tau
    summaries: dict[str, dict[str, dict]]  # model -> metric -> tau, low, high, sd, images
    settings: dict

    def table(self) -> str:
        return format_table(self.summaries)

    def rows(self) -> list[dict]:
        return rows(self.summaries)

    def figure(self):
        return figure(self.summaries)

    def save(self, out: Path) -> Path:
        """metrics.csv, table.txt, metrics.png and settings.json in a new folder under `out`."""
        from heatkit.pipeline.output import atomic, publish_run, save_figure, write_csv, write_json

        def write(path: Path) -> None:
            write_csv(path / "metrics.csv", self.rows())
            with atomic(path / "table.txt") as handle:
                handle.write((self.table() + "\n").encode())
            write_json(path / "settings.json", self.settings)

        def draw(path: Path) -> None:
            save_figure(self.figure(), path / "metrics.png", self.settings["figure"]["dpi"])

        def incomplete(path: Path) -> None:
            write_json(path / "settings.json", {**self.settings, "incomplete": True})

        folder, _ = publish_run(out, "evaluate_metrics", False, write, draw, incomplete)
        return folder
