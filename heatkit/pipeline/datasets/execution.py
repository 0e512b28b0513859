"""Where a dataset's images are explained: in this process (workers=0), or on Dask workers that
need none of the client's files.

A task is a batch of images with what its worker cannot read itself: a file's bytes, its mask's.
The model goes to each worker once (shipping.py). The client keeps a bounded window of tasks in
flight and lets each future go once its results are stored, so its memory and the scheduler's
stay flat however large the dataset; a worker lost mid-run costs only the tasks it held. Every
image runs the same code on one torch thread, so its maps do not depend on where it ran.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from heatkit.base.errors import UsageError
from heatkit.base.run_state import RunState, running
from heatkit.metrics.registry import ROW_METRICS
from heatkit.pipeline.datasets.shipping import Bundle, unpack
from heatkit.pipeline.datasets.sources import Item, content_of, image_bytes, key_of, pixels_of
from heatkit.metrics.curves import AREAS

SCORES = (*(metric.key for metric in ROW_METRICS), "seconds")  # the columns every method row has
WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}  # one core a worker
TASKS_PER_WORKER = 2  # tasks in flight per worker: one running, one waiting, none idle between
# A local cluster pays for itself after this many seconds of estimated work: on a 2-core machine
# (bench/dataset.py), 2 workers took 12 s to start and load the model, then ran 1.31 times as many
# images a minute as one process, which breaks even near 50 s
LOCAL_CLUSTER_PAYS_AFTER = 60.0


@dataclass(frozen=True)
class Job:
    """What every task needs besides its images: plain, picklable values."""

    fingerprint: str  # of the model's Bundle, checked by each worker
    trust: bool
    cfg: dict  # the validated settings
    methods: tuple[str, ...]
    backend: str
    what: str  # the settings, methods and backend an image's key hashes (store.what_counts)


@dataclass
class ImageOutcome:
    """An image's results, as a task returns them: its key, maps and rows, or why it has none."""

    key: str
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # a resize that stretched it
    error: str | None = None  # it could not be read: a row with this, and the other images run


# ---- the work of one task ----
_LOADED: dict = {}  # in a worker process: the model of the job it last ran, with the folder of its files


def run_task(job: Job, bundle: Bundle, batch: list[Item]) -> list[ImageOutcome]:
    """On a worker: the batch's outcomes, the model built from the client's files."""
    with running(quiet(job.cfg)):
        return batch_outcomes(_worker_model(job, bundle), job, batch)


def batch_outcomes(model, job: Job, batch: list[Item]) -> list[ImageOutcome]:
    """Each image's outcome: read (a URL here, the others from what the client sent), keyed by its
    content, and explained by the job's methods with the others that read (the methods that take
    a batch of images take them all at once). A file that cannot be read is an outcome with its
    error: it is the same error wherever it runs."""
    import tempfile
    from pathlib import Path

    from heatkit.pipeline.config import update
    from heatkit.pipeline.maps import image_results

    outcomes, readable, pixels = [], [], []
    for item in batch:
        notes: list[str] = []
        try:
            data = item.data if item.data is not None or item.pixels is not None else image_bytes(item)  # a URL's
            image = pixels_of(item, data, model.input_shape, job.cfg, notes)
            key = item.key or key_of(data if data is not None else content_of(item), job.fingerprint, job.what)
        except (UsageError, OSError) as error:
            outcomes.append(ImageOutcome(item.key, error=str(error) if isinstance(error, UsageError) else
                                    f"cannot read {item.source} ({type(error).__name__}: {error})"))
            continue
        outcomes.append(ImageOutcome(key, notes=notes))
        readable.append(item)
        pixels.append(image)
    if not readable:
        return outcomes
    with tempfile.TemporaryDirectory(prefix="heatkit-masks-") as masks:
        cfg = job.cfg
        if job.cfg["localisation"]["mask"] is not None:  # each image's mask, as the client sent it, by its name
            for item in readable:
                if item.mask is not None:
                    Path(masks, item.stem + Path(item.mask[0]).suffix).write_bytes(item.mask[1])
            cfg = update(job.cfg, {"localisation.mask": masks})
        results = image_results(model, [model.preprocess(image) for image in pixels], pixels,
                                 [item.stem for item in readable], list(job.methods), cfg, [None] * len(readable),
                                 job.backend)
        explained = iter(zip(readable, results))
        for outcome in outcomes:
            if outcome.error is None:
                item, result = next(explained)
                outcome.maps, outcome.rows = dict(result.maps), _rows(item, outcome.key, result)
    return outcomes


def _worker_model(job: Job, bundle: Bundle):
    """The job's model in this worker: built once from the client's files, checked first."""
    from heatkit.base import frameworks
    from heatkit.model import Model
    from heatkit.pipeline.config import update

    which = json.dumps([job.fingerprint, job.trust, job.cfg], sort_keys=True, default=str)
    if _LOADED.get("which") != which:
        frameworks.torch().set_num_threads(1)  # the same arithmetic in every process, whatever its cores
        _LOADED.clear()
        folder, source, files = unpack(bundle, job.fingerprint, _worker_name())
        _LOADED.update(which=which, folder=folder, model=Model.from_settings(source, update(job.cfg, files), job.trust))
    return _LOADED["model"]


def quiet(cfg: dict) -> RunState:
    """A task's run state: no progress bars and no cost warnings per method, since a dataset's
    progress is its images, and every worker's warnings would bury it."""
    state = RunState.of(cfg, progress=False)
    return replace(state, options=replace(state.options, warn_seconds=0.0))


def _worker_name() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:  # not in a worker: the client explaining the images itself
        return "this process"


def _rows(item: Item, key: str, result) -> list[dict]:
    base = {"image": item.source, "key": key, "label": item.label, "predicted": result.predicted,
            "explained_probability": result.target_probability}
    rows = []
    for method, scores in result.scores().items():
        row = {**base, "method": method, **{name: scores.get(name) for name in SCORES}}
        row["error"] = scores.get("error") or (f"not applicable: {scores['not_applicable']}"
                                               if "not_applicable" in scores else None)
        rows.append(row)
    if result.curves.get("random"):
        rows.append({**base, "method": "random", **{name: result.curves["random"][name] for name in AREAS}})
    return rows


# ---- running the tasks ----
Store = Callable[[Item, ImageOutcome], None]  # stores a task's outcome of an image, on the client


def in_process(model, job: Job, tasks: Iterator[list[Item]], store: Store, done: Callable[[int], None]) -> None:
    """Every task in this process, on one torch thread (as a worker runs them), restored after."""
    from heatkit.base import frameworks

    torch = frameworks.torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with running(quiet(job.cfg)):
            for batch in tasks:
                for item, outcome in zip(batch, batch_outcomes(model, job, batch)):
                    store(item, outcome)
                done(len(batch))
    finally:
        torch.set_num_threads(threads)


def on_dask(client, job: Job, bundle: Bundle, tasks: Iterator[list[Item]], store: Store,
            done: Callable[[int], None], kept: Callable[[], int]) -> None:
    """Every task on the client's cluster, a bounded window of them at once. A lost scheduler is
    one line saying how many images are kept (`kept()`)."""
    from concurrent.futures import CancelledError

    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    def lost(error: BaseException | None = None) -> UsageError:
        why = f" ({type(error).__name__})" if error is not None else ""
        return UsageError(f"the Dask scheduler at {client.scheduler.address} was lost{why}; {kept()} images kept: "
                          "rerun the same command to resume")

    flight, running = {}, as_completed()

    def submit(batch: list[Item]) -> None:
        try:
            future = client.submit(run_task, job, shipped, batch, pure=False)
        except (CancelledError, OSError) as error:  # the client closed with the connection, or it timed out
            raise lost(error) from error
        flight[future] = batch
        running.add(future)

    try:
        shipped = client.scatter(bundle, broadcast=True, hash=False)  # once to each worker, not with every task
        window = TASKS_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
    except (CancelledError, OSError) as error:
        raise lost(error) from error
    for batch in _first(tasks, window):
        submit(batch)
    for future in running:
        if future.status == "cancelled":  # every future is, once the scheduler's connection is gone
            raise lost()
        if future.status == "error":  # a task's own error (a model the worker cannot build) ends the run
            error = future.exception()
            if isinstance(error, KilledWorker):
                raise UsageError(f"images {flight[future][0].source} to {flight[future][-1].source} ended every "
                                 f"worker that ran them ({error}); look for one that takes more memory than a "
                                 "worker has, or leave it out")
            raise error
        try:
            outcomes = future.result()
        except (CancelledError, OSError) as error:  # its results were on the way when the scheduler went
            raise lost(error) from error
        batch = flight.pop(future)
        future.release()
        for item, outcome in zip(batch, outcomes):
            store(item, outcome)
        done(len(batch))
        following = next(tasks, None)
        if following is not None:
            submit(following)


def _first(tasks: Iterator, count: int) -> list:
    return [task for _, task in zip(range(count), tasks)]


@contextmanager
def cluster(scheduler, workers: int | None, timeout: float, say: Callable[[str], None]):
    """A Dask client: the one given, one of the cluster object or at the address `scheduler`
    (within `timeout` seconds), or of a LocalCluster of `workers` processes (at most one per core),
    its dashboard's link said; None for this process alone (workers 0, the default: see
    docs/datasets.md for why)."""
    from distributed import Client
    from distributed.deploy import Cluster

    if scheduler is None and not workers:
        yield None
    elif isinstance(scheduler, Client):
        yield scheduler  # the caller's: it stays open
    elif isinstance(scheduler, Cluster):
        with Client(scheduler) as client:
            _say_dashboard(client, say)
            yield client
    elif scheduler is not None:
        client = _connect(str(scheduler), timeout)
        try:
            _say_dashboard(client, say)
            yield client
        finally:
            client.close()
    else:
        with _local_cluster(workers) as client:
            _say_dashboard(client, say)
            yield client


def local_workers(estimate: float) -> int:
    """The local workers a run of `estimate` seconds (in one process) is quickest with: one a core
    where there are several and the run is long enough (LOCAL_CLUSTER_PAYS_AFTER), else none.
    Where it runs changes no map (see the module's docstring)."""
    cores = os.cpu_count() or 1
    return cores if cores > 1 and estimate > LOCAL_CLUSTER_PAYS_AFTER else 0


def where(workers: int) -> str:
    """Where a run without --workers runs, and why, as said before it starts."""
    if workers:
        return (f"on a local Dask cluster of {workers} workers, one a core: it pays on a run this long (--workers 0 "
                "runs in this process)")
    return (f"in this process: a local Dask cluster pays only on runs of over {LOCAL_CLUSTER_PAYS_AFTER:.0f} s here "
            "(--workers N asks for one)")


def address_of(scheduler) -> str | None:
    """The scheduler's address, for the run's record: given, or of the Client or cluster given."""
    from distributed import Client
    from distributed.deploy import Cluster

    if isinstance(scheduler, Client):
        return scheduler.scheduler.address
    if isinstance(scheduler, Cluster):
        return scheduler.scheduler_address
    return None if scheduler is None else str(scheduler)


@contextmanager
def _local_cluster(workers: int):
    import dask
    from distributed import Client, LocalCluster

    cores = os.cpu_count() or 1
    if workers > cores:
        raise UsageError(f"--workers {workers}: this machine has {cores} cores; give at most {cores}, or the "
                         "--scheduler of a cluster")
    # Dask's nanny gives workers MALLOC_TRIM_THRESHOLD_, which makes glibc map and unmap every
    # large array anew: the perturbation engine ran 4x slower under it (PDA 31 s an image, not 8)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRONMENT}):
        local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                             dashboard_address="127.0.0.1:0")  # any free port: two runs at once do not clash
    try:
        with Client(local) as client:
            yield client
    finally:
        local.close()


def _say_dashboard(client, say: Callable[[str], None]) -> None:
    """The link to the scheduler's dashboard, which distributed serves with bokeh only (without it,
    the link answers 404: said for a scheduler of this process's)."""
    import importlib.util

    if "dashboard" not in client.scheduler_info().get("services", {}):
        return
    local = client.cluster is not None
    if local and importlib.util.find_spec("bokeh") is None:
        say("Dask dashboard: none (pip install bokeh for one)")
    else:
        say(f"Dask dashboard: {client.dashboard_link}")


def _connect(address: str, timeout: float):
    """A client of the scheduler at `address`, connected within `timeout` seconds. distributed's own
    timeout does not bound its handshake (a plain HTTP server at the address held it for 420 s and
    more): the client is made in a thread, waited for, and given up on."""
    import threading

    from distributed import Client

    made: dict = {}

    def connect():
        try:
            made["client"] = Client(address, timeout=f"{timeout}s")
        except BaseException as error:  # handed to the caller below
            made["error"] = error

    thread = threading.Thread(target=connect, daemon=True)  # a stuck handshake must not hold the process
    thread.start()
    thread.join(timeout)
    if "client" in made:
        return made["client"]
    reason = f"{type(made['error']).__name__}: {made['error']}" if "error" in made else \
        f"no Dask scheduler answered within {timeout:g} s (scheduler_timeout)"
    raise UsageError(f"--scheduler {address}: cannot reach a Dask scheduler there ({reason}); give the address "
                     "`dask scheduler` prints (tcp://HOST:PORT), or leave --scheduler out for a local cluster")
