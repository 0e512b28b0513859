"""The client's peak memory in the dataset mode as the dataset grows: a folder of N small PNG images
(16 x 16 gray) explained by a small PyTorch classifier, on a LocalCluster (whose scheduler runs in
the client's process, so its memory counts too) and in one process; each count in a fresh
process, its peak resident memory (ru_maxrss) read at the end.

    .venv/bin/python bench/dataset_memory.py                      # 2,000 and 20,000 images: about 15 minutes on 2 cores
    .venv/bin/python bench/dataset_memory.py --counts 500 5000 --workers 0

It prints a Markdown table: the peak at each count, and its ratio to the first count's.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZE = 16
NET = f"""import torch


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear({SIZE * SIZE}, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 10))
"""


def one(count: int, workers: int, methods: list[str]) -> None:
    """In this process: the dataset of `count` images made and explained; prints seconds and peak MB."""
    import numpy as np
    from PIL import Image

    import heatkit

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "net.py").write_text(NET)
        images = folder / "images"
        rng = np.random.default_rng(0)
        for index in range(count):
            path = images / f"{index % 10}" / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(path)
        start = time.perf_counter()
        found = heatkit.explain_dataset(f"{folder / 'net.py'}:build", str(images), methods, workers=workers,
                                        out=folder / "out", trust=True, progress=False, batch_size=64,
                                        settings={"input_size": [SIZE, SIZE], "faithfulness.curves": False})
        seconds = time.perf_counter() - start
        assert found.computed == count and found.failed == 0
    print(f"{seconds:.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["grad"])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.workers, args.methods)
        return
    print(f"client peak memory, {' '.join(args.methods)}, workers {args.workers}, {os.cpu_count()} cores\n")
    print("| images | seconds | client peak MB | vs first |")
    print("|---|---|---|---|")
    first = None
    for count in args.counts:
        found = subprocess.run([sys.executable, __file__, "--one", str(count), "--workers", str(args.workers),
                                "--methods", *args.methods], capture_output=True, text=True, check=True)
        seconds, peak = map(float, found.stdout.split()[-2:])
        first = first or peak
        print(f"| {count:,} | {seconds:.0f} | {peak:.0f} | {peak / first:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
