"""The dataset mode on a Dask cluster that shares no disk with the client: a scheduler and two
workers started here on 127.0.0.1, each worker in a mount namespace of its own with a tmpfs over
the test's folders (as root; elsewhere with reads of them refused, tests/hidden_worker.py), so it
sees neither the model, the images, the masks nor the output folder. Its maps equal those of
--workers 0 bit for bit; a worker holding another model is refused by name; a killed worker
loses nothing; a killed scheduler is one line, and the same command then resumes."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import heatkit
from heatkit.base.errors import UsageError
from heatkit.pipeline.datasets.store import Store

METHODS = ["grad", "occlusion"]
SETTINGS = {"backend": "torch", "faithfulness.curves": False}  # the workers need no TensorFlow
DASK = Path(sys.executable).with_name("dask")
WORKER = Path(__file__).with_name("hidden_worker.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def can_unshare() -> bool:
    """Whether this process may give a child a mount namespace of its own (root, or a capable user)."""
    return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True).returncode == 0


class Cluster:
    """A `dask scheduler` and workers that cannot see `hidden` (no nanny: killing one kills its worker)."""

    def __init__(self, hidden: Path, logs: Path, workers: int = 2):
        self.hidden, self.port = hidden, free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log = open(logs, "a")
        self.scheduler = self.spawn([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                     "--no-dashboard"])
        self.workers = [self.worker() for _ in range(workers)]
        self.wait(workers)

    def spawn(self, command: list[str], **options) -> subprocess.Popen:
        return subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, **options)

    def worker(self) -> subprocess.Popen:
        command = [sys.executable, str(WORKER), self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                   "--host", "127.0.0.1"]
        if can_unshare():  # a tmpfs over the client's folders, in the worker's namespace only
            command = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(self.hidden),
                       *command]
        return self.spawn(command, env={**os.environ, "HEATKIT_HIDDEN": str(self.hidden)}, cwd="/")

    def wait(self, workers: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=90)

    def stop(self) -> None:
        for process in [self.scheduler, *self.workers]:
            process.kill()
            process.wait(timeout=30)
        self.log.close()


@pytest.fixture
def hidden(tmp_path_factory) -> Path:
    """The folder holding every test's files (each xdist worker's own below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


@pytest.fixture
def cluster(hidden, tmp_path):
    started = Cluster(hidden, tmp_path / "dask.log")
    yield started
    started.stop()


def images(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(5)
    for index in range(count):
        path = folder / ("cat" if index % 2 else "dog") / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (15, 15), dtype=np.uint8)).save(path)
    return folder


def maps_of(found) -> dict[str, dict[str, np.ndarray]]:
    store = Store(found.folder)
    return {row["image"]: store.read(row["key"])[0] for row in found.rows if row["method"] is not None}


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{**row, "seconds": None} for row in rows]


def test_workers_that_see_no_client_file_give_the_maps_of_one_process(small_model_path, tmp_path, cluster):
    """The model, the images (in class folders, one of them no image), a mask folder and the output
    folder are all on the client's disk alone."""
    root = images(tmp_path / "data", 8)
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    masks = tmp_path / "masks"
    (masks / "cat").mkdir(parents=True)
    Image.fromarray(np.eye(15, dtype=np.uint8) * 255).save(masks / "cat" / "1.png")
    settings = {**SETTINGS, "localisation.mask": str(masks)}
    remote = heatkit.explain_dataset(small_model_path, str(root), METHODS, settings=settings,
                                     scheduler=cluster.address, out=tmp_path / "remote", progress=False, batch_size=3)
    local = heatkit.explain_dataset(small_model_path, str(root), METHODS, settings=settings, workers=0,
                                    out=tmp_path / "local", progress=False)
    assert remote.computed == local.computed == 8
    assert without_seconds(remote.rows) == without_seconds(local.rows)
    [broken] = [row for row in remote.rows if row["image"].endswith("broken.png")]
    assert "cannot read" in broken["error"]  # a row, not a task retried until the run ends
    assert next(row for row in remote.rows if row["image"].endswith("cat/1.png"))["pointing_game"] is not None
    remote_maps, local_maps = maps_of(remote), maps_of(local)
    assert remote_maps.keys() == local_maps.keys() and len(remote_maps) == 8
    assert all(np.array_equal(remote_maps[image][key], local_maps[image][key])
               for image in local_maps for key in METHODS)


def test_a_worker_holding_another_model_is_refused_by_its_address(small_model_path, linear_model_path, cluster):
    from distributed import Client

    from heatkit.pipeline.datasets import execution, shipping, sources, store

    cfg = heatkit.settings(SETTINGS)
    bundle = shipping.bundle_of(heatkit.load_model(small_model_path, settings=SETTINGS))
    other = shipping.bundle_of(heatkit.load_model(linear_model_path, settings=SETTINGS))
    job = execution.Job(bundle.fingerprint, False, cfg, ("grad",), "torch", store.what_counts(cfg, ("grad",), "torch"))
    image = sources.Item("a", "random:0", pixels=np.zeros((15, 15, 1)))
    with Client(cluster.address) as client:
        [worker] = list(client.scheduler_info()["workers"])[:1]
        assert client.submit(execution.run_task, job, bundle, [image], workers=[worker]).result()[0].rows
        with pytest.raises(UsageError, match=f"Dask worker {worker} holds another model than the client's"):
            client.submit(execution.run_task, replace(job, fingerprint=other.fingerprint), bundle, [image],
                          workers=[worker], pure=False).result()


def test_a_killed_worker_and_a_killed_scheduler_lose_nothing(small_model_path, tmp_path, cluster, monkeypatch):
    """A worker killed as the client stores the 2nd image: its tasks run on the other. The scheduler
    killed as it stores the 8th: one line, the finished images kept. A new scheduler and worker,
    and the same call computes only the rest, giving the maps of one process. (One image a task,
    four tasks in flight: 16 are still to do when the scheduler goes.)"""
    root = images(tmp_path / "data", 24)
    stored, write = [], Store.write

    def write_then_kill(self, key, maps, rows):
        write(self, key, maps, rows)
        stored.append(key)
        for count, process in ((2, cluster.workers[0]), (8, cluster.scheduler)):
            if len(stored) == count:
                process.kill()
                process.wait(timeout=30)
    monkeypatch.setattr(Store, "write", write_then_kill)
    call = dict(dataset=str(root), methods=METHODS, settings=SETTINGS, out=tmp_path / "out", progress=False,
                batch_size=1)
    with pytest.raises(UsageError, match=r"was lost.*; 8 images kept: rerun the same command to resume$"):
        heatkit.explain_dataset(small_model_path, scheduler=cluster.address, **call)
    monkeypatch.setattr(Store, "write", write)
    cluster.stop()
    again = Cluster(cluster.hidden, tmp_path / "dask.log", workers=1)
    try:
        resumed = heatkit.explain_dataset(small_model_path, scheduler=again.address, **call)
    finally:
        again.stop()
    assert resumed.computed == 16 and resumed.failed == 0 and resumed.images == 24
    local = heatkit.explain_dataset(small_model_path, **{**call, "out": tmp_path / "local"}, workers=0)
    assert without_seconds(resumed.rows) == without_seconds(local.rows)
    resumed_maps, local_maps = maps_of(resumed), maps_of(local)
    assert all(np.array_equal(resumed_maps[image][key], local_maps[image][key]) for image in local_maps
               for key in METHODS)
