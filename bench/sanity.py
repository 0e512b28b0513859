"""A sanity check as researchers run it (Adebayo et al. 2018): `--sanity cascading` with grad, gb,
ig (64 steps) and gradcam on torchvision's ResNet-50 at 224 x 224 (seeded, untrained), by block
(the default) and, for the count only, by layer; the seconds of the whole call, its estimate
printed first as the command prints it.

    .venv/bin/python bench/sanity.py                 # about 5 minutes on 2 cores
    .venv/bin/python bench/sanity.py --arch resnet18

It prints a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import heatkit  # noqa: E402
from heatkit.pipeline import variants  # noqa: E402

METHODS = ["grad", "gb", "ig", "gradcam"]


def main() -> None:
    import torch
    import torchvision

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--side", type=int, default=224)
    args = parser.parse_args()
    torch.manual_seed(0)
    net = getattr(torchvision.models, args.arch)()
    settings = {"input_size": [args.side, args.side], "ig.steps": 64, "faithfulness.curves": False}
    model = heatkit.load_model(net, settings=settings)
    image = np.random.default_rng(0).random((args.side, args.side, 3))
    steps = {by: len(variants.blocks(model, by)) for by in ("block", "layer")}
    start = time.perf_counter()
    found = heatkit.sanity(model, image, METHODS, mode="cascading", settings=settings)
    seconds = time.perf_counter() - start
    assert len(found.results) == steps["block"] + 1 and not found.failures, found.failures
    print(f"\n{args.arch} at {args.side}, {' '.join(METHODS)} (ig 64 steps), {torch.get_num_threads()} threads\n")
    print("| steps | by | minutes |")
    print("|---|---|---|")
    print(f"| {steps['block']} | block (default) | {seconds / 60:.1f} |")
    print(f"| {steps['layer']} | layer (`sanity.steps='layer'`) | about {seconds / 60 * steps['layer'] / steps['block']:.0f},"
          " scaled |")


if __name__ == "__main__":
    main()
