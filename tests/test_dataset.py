"""The dataset mode: Dask workers (a LocalCluster, and a real scheduler with workers started here on
127.0.0.1), a worker killed mid-run, a resumed run, and maps equal to single-image runs."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import heatkit
from heatkit.pipeline import dataset

METHODS = ["grad", "occlusion"]
SETTINGS = {"backend": "torch"}  # the workers need no TensorFlow
DASK = Path(sys.executable).with_name("dask")


def stored_maps(found) -> dict[str, dict[str, np.ndarray]]:
    """Each image's maps as its file holds them, by image."""
    return {row["image"]: dataset.read_item(found.folder / "maps" / f"{row['key']}.npz")[0] for row in found.rows}


def assert_complete(found, images: int):
    pairs = [(row["image"], row["method"]) for row in found.rows]
    assert len(pairs) == len(set(pairs)) == images * len(METHODS)
    assert not any(row["error"] for row in found.rows)


def test_a_local_cluster_gives_the_maps_of_single_runs(small_model_path, tmp_path):
    found = heatkit.explain_dataset(small_model_path, "random:40", METHODS, settings=SETTINGS, workers=2, out=tmp_path,
                                    progress=False)
    assert_complete(found, 40)
    assert found.computed == 40
    model = heatkit.load_model(small_model_path, settings=SETTINGS)
    cfg = heatkit.settings(SETTINGS)
    for item in dataset.items("random:40", model, cfg)[0][:3]:
        single = heatkit.explain(small_model_path, item.pixels, METHODS, settings=SETTINGS, progress=False)
        for key in METHODS:
            assert np.array_equal(stored_maps(found)[item.source][key], single.maps[key])
        assert item.label == single.result.true_label  # random:N knows each image's class
    assert {"results.parquet", "results.csv", "leaderboard.txt", "summary.png", "run.json"} <= \
        {path.name for path in found.folder.iterdir()}


def test_a_resumed_run_computes_only_what_is_missing(small_model_path, tmp_path):
    first = heatkit.explain_dataset(small_model_path, "random:10", METHODS, settings=SETTINGS, workers=0, out=tmp_path,
                                    progress=False)
    lost = sorted({row["key"] for row in first.rows})[:3]
    for key in lost:
        (first.folder / "maps" / f"{key}.npz").unlink()
    again = heatkit.explain_dataset(small_model_path, "random:10", METHODS, settings=SETTINGS, workers=0, out=tmp_path,
                                    progress=False)
    assert again.computed == 3
    timeless = lambda rows: [{**row, "seconds": None} for row in rows]  # noqa: E731
    assert timeless(again.rows) == timeless(first.rows)
    changed = heatkit.explain_dataset(small_model_path, "random:10", METHODS, workers=0, out=tmp_path, progress=False,
                                      settings={**SETTINGS, "occlusion.patch": 3})
    assert changed.computed == 10  # another setting, other keys


def test_the_leaderboard_ranks_the_faithful_method_first(small_model_path, tmp_path):
    found = heatkit.explain_dataset(small_model_path, "random:8", METHODS, settings=SETTINGS, workers=0, out=tmp_path,
                                    progress=False)
    text, board = dataset.leaderboard(found.rows, ground_truth=True)
    assert [entry["method"] for entry in board] == ["occlusion", "grad"]
    assert board[0]["low"] <= board[0]["mean"] <= board[0]["high"] and "center_share" in text.splitlines()[0]


def test_a_board_per_category_orders_the_methods_by_its_first_metric_in_its_direction(small_model_path, tmp_path):
    """Occlusion finds the center: first on the localisation board (higher is better) and, as the
    sparser map, first on the complexity board, whose first metric, Sparseness, is higher-better."""
    found = heatkit.explain_dataset(small_model_path, "random:4", METHODS, settings=SETTINGS, workers=0, out=tmp_path,
                                    progress=False)
    boards = {block.splitlines()[0].split(",")[0]: block.splitlines() for block in
              dataset.category_boards(found.rows).split("\n\n")}
    assert boards["localisation"][0].endswith("by center_rank") and boards["localisation"][3].startswith("occlusion")
    assert boards["complexity"][2].split()[1:] == ["higher", "lower"]  # sparseness, complexity
    assert boards["complexity"][3].startswith("occlusion")
    assert "localisation, mean over the images" in (found.folder / "leaderboard.txt").read_text()


def test_sufficiency_grades_the_datasets_images_together_as_one_run_does(gap_model_path, tmp_path):
    """Sufficiency compares each image's map with every other image's: on an untrained 3-class CNN
    and eight images of mixed predictions, the dataset's score of an image equals that of one run
    of all eight, resumed or not."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for index in range(8):  # each channel scaled apart, so that the predictions differ
        pixels = rng.random((12, 12, 3)) * rng.uniform(0, 1, 3) * 255
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"image{index}.png")
    settings = {**SETTINGS, "sufficiency.threshold": 0.9}  # random images: alike maps are far apart
    found = heatkit.explain_dataset(gap_model_path, str(folder), METHODS, settings=settings, workers=0,
                                    out=tmp_path, progress=False)
    files = sorted(folder.iterdir())
    together = heatkit.explain(gap_model_path, [str(file) for file in files], METHODS, settings=settings,
                               progress=False)
    expected = {(str(file), key): image.results[0].scores()[key]["sufficiency"]
                for file, image in zip(files, together.items) for key in METHODS}
    assert {(row["image"], row["method"]): row["sufficiency"] for row in found.rows if row["method"] in METHODS} \
        == pytest.approx(expected)
    assert 0 < np.mean(list(expected.values())) < 1
    again = heatkit.explain_dataset(gap_model_path, str(folder), METHODS, settings=settings, workers=0,
                                    out=tmp_path, progress=False)
    assert again.computed == 0 and [row.get("sufficiency") for row in again.rows] == \
        [row.get("sufficiency") for row in found.rows]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """A `dask scheduler` and two `dask worker` processes (no nanny: killing one kills its worker) on
    127.0.0.1, stopped after the test."""
    address = f"tcp://127.0.0.1:{free_port()}"
    logs = open(tmp_path / "dask.log", "w")
    common = {"stdout": logs, "stderr": subprocess.STDOUT, "cwd": Path(__file__).resolve().parents[1]}
    processes = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", address.rpartition(":")[2],
                                   "--no-dashboard"], **common)]
    processes += [subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                    "--host", "127.0.0.1"], **common) for _ in range(2)]
    try:
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, processes[1:]
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)
        logs.close()


def test_a_scheduler_and_its_workers_give_the_sequential_results(small_model_path, tmp_path, cluster):
    address, _ = cluster
    remote = heatkit.explain_dataset(small_model_path, "random:12", METHODS, settings=SETTINGS, scheduler=address,
                                     out=tmp_path / "remote", progress=False)
    local = heatkit.explain_dataset(small_model_path, "random:12", METHODS, settings=SETTINGS, workers=0,
                                    out=tmp_path / "local", progress=False)
    assert_complete(remote, 12)
    assert [(row["image"], row["method"], row["center_rank"]) for row in remote.rows] == \
        [(row["image"], row["method"], row["center_rank"]) for row in local.rows]
    remote_maps, local_maps = stored_maps(remote), stored_maps(local)
    assert all(np.array_equal(remote_maps[image][key], local_maps[image][key])
               for image in local_maps for key in METHODS)


def test_a_worker_killed_mid_run_loses_nothing(small_model_path, tmp_path, cluster):
    address, workers = cluster
    folder = tmp_path / "dataset_random_24_center_pixel" / "maps"

    done_at_kill = []

    def kill_a_worker_once_work_is_done():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (folder.is_dir() and any(folder.glob("*.npz"))):
            time.sleep(0.01)
        workers[0].kill()
        done_at_kill.append(len(list(folder.glob("*.npz"))))
    killer = threading.Thread(target=kill_a_worker_once_work_is_done)
    killer.start()
    found = heatkit.explain_dataset(small_model_path, "random:24", METHODS, settings=SETTINGS, scheduler=address,
                                    batch_size=1, out=tmp_path, progress=False)
    killer.join()
    assert workers[0].poll() is not None and done_at_kill[0] < 24  # killed while the run went on
    assert_complete(found, 24)
