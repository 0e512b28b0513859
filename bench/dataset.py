"""Images per minute in the dataset mode: a plain sequential loop (workers=0, no Dask) against a
LocalCluster of 1 and 2 worker processes (and more, where the machine has the cores), in one
run; and Dask's overhead per task, timed on empty tasks.

    .venv/bin/python bench/dataset.py                     # about 4 minutes on 2 cores
    .venv/bin/python bench/dataset.py --images 80 --methods grad occlusion pda

Each configuration writes a fresh folder, so nothing is resumed. It prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import heatkit  # noqa: E402


def images_per_minute(args, workers: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        heatkit.explain_dataset(args.model, f"random:{args.images}", args.methods, workers=workers, out=out,
                                progress=False)
        return args.images / (time.perf_counter() - start) * 60


def task_overhead(tasks: int = 200) -> float:
    """Seconds per empty task, submitted together to a LocalCluster of 2 workers."""
    from distributed import Client, LocalCluster, wait

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.submit(int, 0).result()
        start = time.perf_counter()
        wait([client.submit(int, index, pure=False) for index in range(tasks)])
        return (time.perf_counter() - start) / tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "center_pixel.h5"))
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--methods", nargs="+", default=["grad", "ig", "occlusion", "lime"])
    args = parser.parse_args()
    counts = [0, 1, 2] + [count for count in (4, 8) if count <= (os.cpu_count() or 1)]
    rows = [(count, images_per_minute(args, count)) for count in counts]
    sequential = rows[0][1]
    print(f"{args.images} random images, methods {' '.join(args.methods)}, {os.cpu_count()} cores\n")
    print("| workers | images per minute | vs sequential |")
    print("|---|---|---|")
    for count, rate in rows:
        print(f"| {'sequential (no Dask)' if count == 0 else count} | {rate:.1f} | {rate / sequential:.2f}x |")
    print(f"\nDask's overhead per task (empty tasks, 2 workers): {task_overhead() * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
