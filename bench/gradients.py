"""Benchmark of the gradient family on both frameworks: innvestigate on the Keras model against
captum on its PyTorch twin, each method in a fresh process.

    .venv/bin/python bench/gradients.py          # after `make models`

"first map" is everything a run pays for one method: importing the framework, loading the
model, building the graph, and computing the map. "again" is a second map of the same method
in the same process. Ratios are Keras seconds over PyTorch seconds, measured in this run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(key: str, backend: str, model_path: Path, image_path: Path) -> dict:
    start = time.perf_counter()
    from heatkit.base import frameworks
    from heatkit.base.errors import NotApplicable
    from heatkit.base.images import load_image
    from heatkit.methods.registry import REGISTRY
    from heatkit.model import Model

    frameworks.verbose(False)
    method = REGISTRY[key]
    params = method.settings.defaults() if method.settings else {}
    model = Model(model_path, evaluate_with=backend)
    image = load_image(image_path, model.input_shape)
    target = int(model.probabilities(image[None])[0].argmax())
    function = method.function(backend)
    try:
        function(model, image, target, params)
    except NotApplicable as reason:
        return {"not_applicable": str(reason)}
    first = time.perf_counter() - start
    start = time.perf_counter()
    function(model, image, target, params)
    return {"first": first, "again": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models/center_pixel.h5")
    parser.add_argument("--image", type=Path, default=ROOT / "images/chelsea.png")
    parser.add_argument("--one", nargs=2, metavar=("KEY", "BACKEND"), help=argparse.SUPPRESS)  # a child's job
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.model, args.image)))
        return

    from heatkit.methods.registry import comparable

    print("| method | Keras first map, s | PyTorch first map, s | ratio | Keras again, s | PyTorch again, s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for key in comparable():
        rows = {}
        for backend in ("keras", "torch"):
            child = subprocess.run([sys.executable, __file__, "--one", key, backend, "--model", str(args.model),
                                    "--image", str(args.image)], check=True, capture_output=True, text=True)
            rows[backend] = json.loads(child.stdout.strip().splitlines()[-1])
        keras, torch = rows["keras"], rows["torch"]
        reason = keras.get("not_applicable") or torch.get("not_applicable")
        if reason:
            print(f"| {key} | not applicable: {reason} | | | | | |", flush=True)
            continue
        print(f"| {key} | {keras['first']:.2f} | {torch['first']:.2f} | {keras['first'] / torch['first']:.1f}x "
              f"| {keras['again']:.3f} | {torch['again']:.3f} | {keras['again'] / torch['again']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
