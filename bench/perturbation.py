"""Benchmark of the perturbation methods: the engine's fast path against full forward passes.

    .venv/bin/python bench/perturbation.py          # after `make models`

Each method runs in its own process with its default settings, so that its peak memory (the
process's peak resident set, model and frameworks included, taken before the baseline runs)
is its own. The baseline, the
same algorithm on batched full forward passes, is measured in the same process: whole for
LIME and KernelSHAP, on a slice for occlusion, PDA and Shapley (scaled linearly, and marked so).
RISE has no fast path (each mask changes every pixel). Last, the whole `-hm all` run, timed
end to end.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

METHODS = ("occlusion", "pda", "shapley", "lime", "shap", "rise")


def measure(key: str, model_path: Path, image_path: Path) -> dict:
    """Seconds of the method as configured, and of its baseline on full forward passes."""
    import numpy as np

    from heatkit.base import frameworks
    from heatkit.base.engine import Engine
    from heatkit.base.run_state import EngineOptions, RunState, running
    from heatkit.base.images import load_image
    from heatkit.methods.registry import REGISTRY
    from heatkit.model import Model

    frameworks.verbose(False)
    method = REGISTRY[key]
    params = method.settings.defaults()
    fast = naive = Model(model_path)
    image = load_image(image_path, fast.input_shape)
    target = int(fast.probabilities(image[None])[0].argmax())
    naive.probabilities(image[None])  # load both before timing

    function = method.function("keras")  # imports the method's libraries before the timing
    start = time.perf_counter()
    function(fast, image, target, params)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the baseline runs

    engine, pixels = Engine(naive, image, target, EngineOptions(fast=False, progress=False)), image.size
    start = time.perf_counter()
    if key == "occlusion":  # single-pixel patches: one full pass per pixel
        share = 2048 / pixels
        engine.edits(np.arange(2048)[:, None], params["fill"], key)
    elif key == "pda":  # 16 pixels x every level
        share = 16 / pixels
        engine.edits(np.repeat(np.arange(16), params["levels"])[:, None],
                     np.tile(np.linspace(0, 255, params["levels"]).round() / 255, 16)[:, None], key)
    elif key == "shapley":  # the first 1024 steps of one walk, of `samples` walks of every pixel
        share = 1024 / ((pixels + 1) * params["samples"])
        order = np.random.default_rng(0).permutation(pixels)
        engine.images(1024, lambda a, b: _walk_states(image, order, params["baseline"], a, b), key)
    else:
        share = 1.0
        with running(RunState(EngineOptions(fast=False, progress=False))):
            function(naive, image, target, params)
    naive_seconds = (time.perf_counter() - start) / share
    return {"seconds": seconds, "naive_seconds": naive_seconds, "scaled": share < 1,
            "fast_path": key != "rise", "peak_mb": peak_mb}


def _walk_states(image, order, baseline, a, b):
    import numpy as np

    flat = image.reshape(-1)
    batch = np.full((b - a, flat.size), baseline)
    for row, k in enumerate(range(a, b)):
        batch[row, order[:k]] = flat[order[:k]]
    return batch.reshape((b - a, *image.shape))


def whole_run(model_path: Path, image_path: Path) -> tuple[float, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "heatmap_script.py", "-q", "-ip", str(image_path), "-mp", str(model_path),
                    "-hm", "all", "-op", "/tmp/bench-results"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models/center_pixel.h5")
    parser.add_argument("--image", type=Path, default=ROOT / "images/chelsea.png")
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.model, args.image)))
        return

    print("| method | seconds | full passes, seconds | ratio | peak memory |")
    print("|---|---|---|---|---|")
    for key in METHODS:
        child = subprocess.run([sys.executable, __file__, "--one", key, "--model", str(args.model),
                                "--image", str(args.image)], check=True, capture_output=True, text=True)
        row = json.loads(child.stdout.strip().splitlines()[-1])
        naive = f"{row['naive_seconds']:,.1f}" + (" (scaled from a slice)" if row["scaled"] else "")
        ratio = f"{row['naive_seconds'] / row['seconds']:,.0f}x" if row["fast_path"] else "1x (no fast path)"
        print(f"| {key} | {row['seconds']:.2f} | {naive} | {ratio} | {row['peak_mb']:,.0f} MB |", flush=True)
    seconds, peak = whole_run(args.model, args.image)
    print(f"| `-hm all`, whole run | {seconds:.1f} | | | {peak:,.0f} MB |")


if __name__ == "__main__":
    main()
