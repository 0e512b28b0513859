"""A dataset run's summary, in memory that does not grow with its rows past the scores themselves:
the rows streamed from the images' files into results.csv and results.parquet, each score kept
as a float per row for the leaderboard (a bootstrap drawn a resample at a time), the boards per
category of metric and summary.png (a seeded sample of each distribution); report.html holds the
first REPORT_ROWS rows and names results.csv for the rest."""
from __future__ import annotations

import csv
import os
from array import array
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from heatkit.metrics.registry import METRICS
from heatkit.pipeline.datasets.execution import SCORES
from heatkit.pipeline.plotting import literal_text

COLUMNS = ("image", "key", "label", "predicted", "explained_probability", "method", *SCORES, "error")
SUMMARY_COLUMNS = 5  # score panels a row of summary.png
RESAMPLES = 1000  # bootstrap resamples of a leaderboard interval
DRAWS = 1 << 16  # a resample's indices drawn this many at a time
FIGURE_VALUES = 5000  # values of a method's score drawn in summary.png's box plot, at most (a seeded sample)
REPORT_ROWS = 5000  # rows report.html lists; results.csv has them all
PARQUET_ROWS = 4096  # rows a parquet row group holds


class Scores:
    """Every score of every row, by method and score: floats, the rows' other cells left behind."""

    def __init__(self, rows: Iterable[dict] = ()):
        self.values: dict[str, dict[str, array]] = defaultdict(lambda: defaultdict(lambda: array("d")))
        self.methods: dict[str, None] = {}  # in the order the rows name them
        for row in rows:
            self.add(row)

    def add(self, row: dict) -> None:
        if row.get("method") is None:
            return
        self.methods.setdefault(row["method"], None)
        for name in SCORES:
            if row.get(name) is not None:
                self.values[row["method"]][name].append(row[name])

    def of(self, method: str, name: str) -> np.ndarray:
        return np.frombuffer(self.values[method][name], dtype=np.float64) if name in self.values[method] else \
            np.empty(0)

    def has(self, name: str) -> bool:
        return any(name in scores for scores in self.values.values())


def leaderboard(scores: Scores, ground_truth: bool, seed: int = 0) -> tuple[str, list[dict]]:
    """Per method (and the random ranking): mean, median and a 95% bootstrap interval of the mean
    of the score that ranks them, center_share where the model declares a ground truth, else AOPC
    (higher is better for both), and the mean seconds."""
    score = "center_share" if ground_truth else "aopc"
    rng = np.random.default_rng(seed)
    board = []
    for method in scores.methods:
        values = scores.of(method, score)
        if values.size == 0:
            continue
        means = np.array([_resampled_mean(values, rng) for _ in range(RESAMPLES)])
        seconds = scores.of(method, "seconds")
        board.append({"method": method, "images": int(values.size), "mean": float(values.mean()),
                      "median": float(np.median(values)), "low": float(np.percentile(means, 2.5)),
                      "high": float(np.percentile(means, 97.5)),
                      "seconds": float(seconds.mean()) if seconds.size else None})
    board.sort(key=lambda entry: -entry["mean"])
    if not board:
        return f"no map has the score that ranks the methods ({score})" + (
            " (faithfulness.curves is off)" if score == "aopc" else ""), board
    lines = [f"leaderboard by {score} (higher is better), mean with a 95% bootstrap interval",
             f"{'method':<16}{'images':>7}{'mean':>9}{'median':>9}{'95% interval':>20}{'seconds':>9}"]
    for entry in board:
        interval = f"[{entry['low']:.3f}, {entry['high']:.3f}]"
        seconds = f"{entry['seconds']:>9.2f}" if entry["seconds"] is not None else f"{'-':>9}"
        lines.append(f"{entry['method']:<16}{entry['images']:>7}{entry['mean']:>9.3f}{entry['median']:>9.3f}"
                     f"{interval:>20}{seconds}")
    return "\n".join(lines), board


def _resampled_mean(values: np.ndarray, rng) -> float:
    """The mean of len(values) values drawn with replacement, DRAWS indices at a time."""
    total, left = 0.0, values.size
    while left:
        count = min(left, DRAWS)
        total += values[rng.integers(0, values.size, count)].sum()
        left -= count
    return total / values.size


def category_boards(scores: Scores) -> str:
    """Per category of the metric registry, the mean of each of its metrics per method, the better
    direction under each name, the methods ordered by the category's first metric."""
    from heatkit.metrics.registry import Category

    methods = [method for method in scores.methods if method != "random"]
    blocks = []
    for category in Category:
        columns = [metric for metric in METRICS if metric.category is category and metric.higher_is_better is not None
                   and scores.has(metric.key)]
        if not columns:
            continue
        means = {method: [scores.of(method, m.key).mean() if scores.of(method, m.key).size else np.nan
                          for m in columns] for method in methods}
        first = columns[0]
        order = sorted(methods, key=lambda method: (np.isnan(means[method][0]),
                                                    -means[method][0] if first.higher_is_better else means[method][0]))
        widths = [max(len(m.key), 9) + 2 for m in columns]
        lines = [f"{category.value}, mean over the images, by {first.key}",
                 f"{'method':<16}" + "".join(f"{m.key:>{w}}" for m, w in zip(columns, widths)),
                 f"{'better':<16}" + "".join(f"{m.direction:>{w}}" for m, w in zip(columns, widths))]
        lines += [f"{method:<16}" + "".join(f"{'-':>{w}}" if np.isnan(value) else f"{value:>{w}.3g}"
                                           for value, w in zip(means[method], widths)) for method in order]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


@literal_text
def summary_figure(scores: Scores, seed: int = 0):
    """Per score, the distribution over the images of each method (box plots of at most
    FIGURE_VALUES values, a seeded sample), and the seconds, in rows of SUMMARY_COLUMNS panels."""
    from matplotlib.figure import Figure

    methods = list(scores.methods)
    shown = [name for name in SCORES if scores.has(name)]
    if not shown:  # every map failed (a model of NaN weights): nothing to draw but that
        fig = Figure(figsize=(6, 1.2))
        fig.text(0.5, 0.5, "no method gave a map of any image: see the errors in results.csv", ha="center",
                 va="center", fontsize=10)
        return fig
    rng = np.random.default_rng(seed)
    columns = min(len(shown), SUMMARY_COLUMNS)
    lines = -(-len(shown) // columns)
    fig = Figure(figsize=(2.6 * columns, lines * (0.25 * len(methods) + 1.6)))
    panels = fig.subplots(lines, columns, squeeze=False).ravel()
    for panel in panels[len(shown):]:
        panel.set_visible(False)
    for index, (panel, name) in enumerate(zip(panels, shown)):
        values = [scores.of(method, name) for method in methods]
        values = [v if v.size <= FIGURE_VALUES else rng.choice(v, FIGURE_VALUES, replace=False) for v in values]
        panel.boxplot([v if v.size else [np.nan] for v in values], vert=False, widths=0.6,
                      flierprops={"markersize": 2})
        panel.set_yticks(np.arange(1, len(methods) + 1), methods if index % columns == 0 else [""] * len(methods),
                         fontsize=7)
        panel.set_title(name, fontsize=8)
        panel.tick_params(labelsize=7)
        if name in ("seconds", "center_rank"):
            panel.set_xscale("log")
    fig.tight_layout()
    return fig


class Tables:
    """results.csv and results.parquet, written a row at a time (whole, or not at all: each goes
    to a partial file, published by close()), with the first REPORT_ROWS rows kept for the page."""

    def __init__(self, folder: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.folder, self.first, self.count, self.chunk = folder, [], 0, []
        types = {"image": pa.string(), "key": pa.string(), "label": pa.string(), "predicted": pa.int64(),
                 "method": pa.string(), "error": pa.string()}
        self.schema = pa.schema([(name, types.get(name, pa.float64())) for name in COLUMNS])
        self.partial = {name: folder / f".{name}.partial" for name in ("results.csv", "results.parquet")}
        self.csv_file = open(self.partial["results.csv"], "w", newline="", encoding="utf-8")
        self.csv = csv.DictWriter(self.csv_file, fieldnames=COLUMNS)
        self.csv.writeheader()
        self.parquet = pq.ParquetWriter(self.partial["results.parquet"], self.schema)

    def add(self, row: dict) -> None:
        row = {name: row.get(name) for name in COLUMNS}
        row["label"] = None if row["label"] is None else str(row["label"])  # one type: folder names, classes
        self.csv.writerow(row)
        self.chunk.append(row)
        if len(self.first) < REPORT_ROWS:
            self.first.append(row)
        self.count += 1
        if len(self.chunk) == PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.chunk:
            self.parquet.write_table(pa.Table.from_pylist(self.chunk, schema=self.schema))
            self.chunk = []

    def close(self, published: bool) -> None:
        """The files published (or, after an error, removed)."""
        try:
            if published:
                self._flush()
        finally:
            self.parquet.close()
            self.csv_file.close()
        for name, partial in self.partial.items():
            if published:
                os.replace(partial, self.folder / name)
            else:
                partial.unlink(missing_ok=True)


def text_of(scores: Scores, ground_truth: bool, seed: int) -> tuple[str, list[dict]]:
    """The leaderboard, then one board per category of metrics, as printed and in leaderboard.txt."""
    text, board = leaderboard(scores, ground_truth, seed)
    return text + "\n\n" + category_boards(scores), board
