"""Rebuild the documentation's figures, and the README's tables of results, from fresh runs.

    .venv/bin/python docs/build.py            # after `make models`; about fifteen minutes
    .venv/bin/python docs/build.py residual   # one run

Each run goes through the command line into a scratch folder. Its figures are copied into docs/,
its scores.json is kept as docs/<run>.json, and the table between the markers <!-- <run>:start -->
and <!-- <run>:end --> (in the README or a page of docs/) is rewritten from that file;
tests/test_readme.py checks that the two agree, so every number in those tables comes from a run of
this script.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the checkout's heatkit

from heatkit import generated  # noqa: E402

GRADIENT_FAMILY = ["grad", "gb", "deconvnet", "sg", "inpgrad", "ig", "gradshap", "lrp", "deeplift"]
# run name -> (command-line arguments, {file the run writes: its name in docs/})
RUNS = {
    "demo": (["-ip", "images/chelsea.png", "-hm", "all"], {"heatmaps.png": "demo.png"}),
    "compare": (["-ip", "images/chelsea.png", "--compare-backends", "-hm", *GRADIENT_FAMILY], {}),
    "digits": (["-mp", "models/digits.h5", "-ip", "images/digits/", "-hm", "grad", "gradcam", "gradcampp",
                "guided_gradcam", "cam", "occlusion", "lime", "--set", "lime.kernel_size=1", "--set",
                "lime.max_dist=4"], {"heatmaps.png": "digits.png"}),
    "residual": (["-mp", "examples/residual_digits.py:build", "--weights", "models/residual_digits.pt", "--trust-model",
                  "--input-size", "32", "-ip", "images/digits/digit0_heldout12.png", "-hm", "all", "--set",
                  "figure.maps_per_row=8", "--set", "lime.kernel_size=1", "--set", "lime.max_dist=4"],
                 {"heatmaps.png": "residual.png"}),
    "curves": (["-mp", "models/digits.h5", "-ip", "images/digits/digit3_heldout18.png", "-hm", "grad", "ig",
                "occlusion", "lime", "--set", "lime.kernel_size=1", "--set", "lime.max_dist=4"],
               {"curves.png": "curves_digits.png"}),
    "dataset": (["--dataset", "random:200", "-hm", "grad", "ig", "occlusion", "pda", "lime"],
                {"summary.png": "dataset_summary.png"}),
    "sanity": (["-mp", "models/digits.h5", "-ip", "images/digits/digit3_heldout18.png", "--sanity", "cascading",
                "-hm", "grad", "gb", "ig", "gradcam", "guided_gradcam", "lrp"],
               {"sanity_cascading.png": "sanity_cascading.png",
                "sanity_cascading_curves.png": "sanity_cascading_curves.png"}),
    "evaluate_metrics": (["--evaluate-metrics"], {"metrics.png": "evaluate_metrics.png"}),
    "sweep": (["-ip", "images/chelsea.png", "-hm", "sg", "occlusion", "lime", "--sweep", "sg.noise_scale=0.05,0.1,0.2",
               "--sweep", "occlusion.patch=5,29,53", "--sweep", "lime.seed=0,1,2"], {"sweep.png": "sweep.png"}),
}


AREAS = ["deletion_area", "insertion_area", "aopc"]  # the faithfulness scores of a map


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def demo_table(scores: dict) -> str:
    """The scores of every map, one row per method, as the README shows them; then the random
    rankings' faithfulness areas."""
    from heatkit.methods.registry import label

    columns = ["center_value", "center_rank", "center_share", "crop_share", *AREAS, "seconds"]
    rows = ["| method | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for key, row in scores["methods"].items():
        cells = ([_number(row[column]) for column in columns] if "center_value" in row else
                 [f"not applicable: {row['not_applicable']}" if "not_applicable" in row else f"failed: {row['error']}"]
                 + [""] * (len(columns) - 1))
        rows.append(f"| {label(key)} (`{key}`) | " + " | ".join(cells) + " |")
    random = scores["random_ranking"]
    rows.append(f"| random ranking ({random['draws']} draws) | | | | | " +
                " | ".join(f"{random[area]:.3g} ± {random[area + '_sd']:.2g}" for area in AREAS) + " | |")
    return "\n".join(rows)


def compare_table(scores: dict) -> str:
    """How far the two frameworks' maps agree, one row per method."""
    first, second = scores["compare_backends"]["backends"]
    rows = [f"| method | max \\|{first} − {second}\\| / max \\|{first}\\| | Pearson | Spearman |", "|---|---|---|---|"]
    for key, row in scores["compare_backends"]["agreement"].items():
        rows.append(f"| `{key}` | {row['max_abs_diff_relative']:.1e} | {row['pearson']:.9f} | {row['spearman']:.9f} |")
    return "\n".join(rows)


def model_table(scores: dict) -> str:
    """Per method, the framework that ran it and its seconds, or why it did not run."""
    from heatkit.methods.registry import label

    rows = ["| method | framework | seconds |", "|---|---|---|"]
    for key, row in scores["methods"].items():
        cells = [row["framework"], _number(row["seconds"])] if "seconds" in row else [
            f"not applicable: {row['not_applicable']}" if "not_applicable" in row else f"failed: {row['error']}", ""]
        rows.append(f"| {label(key)} (`{key}`) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def curves_table(scores: dict) -> str:
    """Per map, its faithfulness areas; then the random rankings' mean and spread."""
    from heatkit.methods.registry import label

    rows = ["| map | deletion area (low) | insertion area (high) | AOPC (high) |", "|---|---|---|---|"]
    for key, row in scores["methods"].items():
        if "deletion_area" in row:
            rows.append(f"| {label(key)} (`{key}`) | {row['deletion_area']:.3f} | {row['insertion_area']:.3f} | "
                        f"{row['aopc']:.3f} |")
    random = scores["random_ranking"]
    cells = [f"{random[name]:.3f} ± {random[name + '_sd']:.3f}" for name in AREAS]
    rows.append(f"| random ranking ({random['draws']} draws) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def leaderboard_block(text: str) -> str:
    return f"```\n{text.strip()}\n```"


# table name -> (the run file it reads, how it becomes the README's text)
TABLES = {"demo": ("scores.json", demo_table), "compare": ("scores.json", compare_table),
          "residual": ("scores.json", model_table), "curves": ("scores.json", curves_table),
          "dataset": ("leaderboard.txt", leaderboard_block), "evaluate_metrics": ("table.txt", leaderboard_block)}


def readme_table(name: str) -> str:
    """Table `name` as the README or a page shows it, from the run file kept in docs/."""
    file, table = TABLES[name]
    kept = (ROOT / "docs" / f"{name}{Path(file).suffix}").read_text()
    return table(json.loads(kept)["images"][0] if file.endswith(".json") else kept)


def main() -> None:
    chosen = sys.argv[1:] or list(RUNS)  # run names, to rebuild only those
    for name in chosen:
        argv, figures = RUNS[name]
        with tempfile.TemporaryDirectory() as out:
            print(f"{name}: heatmap_script.py {' '.join(argv)}", flush=True)
            subprocess.run([sys.executable, "heatmap_script.py", "-q", *argv, "-op", out], cwd=ROOT, check=False,
                           stdout=subprocess.DEVNULL)
            [folder] = Path(out).iterdir()
            for written, kept in figures.items():
                shutil.copy(folder / written, ROOT / "docs" / kept)
            if name in TABLES:
                file = TABLES[name][0]
                shutil.copy(folder / file, ROOT / "docs" / f"{name}{Path(file).suffix}")
    generated.rewrite({name: readme_table(name) for name in TABLES})


if __name__ == "__main__":
    main()
