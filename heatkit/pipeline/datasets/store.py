"""A dataset run's folder, written by the client alone: maps/<key>.npz per image (its maps, and
its rows of scores as JSON), written whole or not at all, and, for images a worker reads from a
URL, maps/sources.jsonl, which names each one's key (the client never reads those images). One
run at a time holds the folder (a lock)."""
from __future__ import annotations

import json
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from heatkit.base.errors import UsageError

# Settings that change no map and no score: a dataset folder moved, copied or given another
# model path, or the figure re-styled, still resumes (figure.crop sets crop_share: it counts)
NOT_RESULTS = ("out_path", "model_path", "weights", "custom_objects", "max_image_pixels", "skip_bad_images",
               "scheduler_timeout", "figure.", "sanity.", "growing_patch.", "center_pixel.", "digits.", "image_size",
               "num_classes", "perturbation.warn_seconds")


def result_settings(cfg: dict) -> dict:
    """The settings that change an image's maps or scores."""
    from heatkit.pipeline.config import flatten

    def counts(key: str) -> bool:
        return key == "figure.crop" or not any(key == name or name.endswith(".") and key.startswith(name)
                                               for name in NOT_RESULTS)
    return {key: value for key, value in flatten(cfg).items() if counts(key)}


def what_counts(cfg: dict, methods: tuple[str, ...], backend: str) -> str:
    """What an image's key hashes beside its content and the model: the settings, methods and
    backend that change its results."""
    return json.dumps({"cfg": result_settings(cfg), "methods": methods, "backend": backend}, sort_keys=True,
                      default=str)


class Store:
    """The folder's files: which images are done, their maps and rows."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.maps = folder / "maps"
        self.sources = self.maps / "sources.jsonl"

    def file(self, key: str) -> Path:
        return self.maps / f"{key}.npz"

    def write(self, key: str, maps: dict[str, np.ndarray], rows: list[dict]) -> None:
        """An image's maps and rows, whole or not at all."""
        from heatkit.pipeline.output import json_value, write_npz

        write_npz(self.file(key), {"rows": np.array(json.dumps(rows, default=json_value)), **maps})

    def read(self, key: str) -> tuple[dict[str, np.ndarray], list[dict]]:
        """An image's maps and rows from its file."""
        with np.load(self.file(key), allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files if name != "rows"}, json.loads(str(stored["rows"]))

    def rows(self, key: str) -> list[dict]:
        """An image's rows from its file, without decompressing its maps."""
        with np.load(self.file(key), allow_pickle=False) as stored:
            return json.loads(str(stored["rows"]))

    def finished(self, key: str) -> bool:
        """Whether the image's file is there and whole; a damaged one (cut short, emptied) is
        removed, so that the image is computed again."""
        if not self.file(key).is_file():
            return False
        try:
            self.rows(key)
            return True
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            self.file(key).unlink(missing_ok=True)
            return False

    def remember(self, source: str, size: int | None, key: str) -> None:
        """That the URL `source` (of `size` bytes as listed) has the key `key`."""
        with open(self.sources, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"source": source, "size": size, "key": key}) + "\n")

    def remembered(self) -> dict[tuple[str, int | None], str]:
        """The keys of the URLs earlier runs stored, by URL and size (a line cut short by a crash
        is left out: its image is computed again)."""
        if not self.sources.is_file():
            return {}
        found = {}
        for line in self.sources.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                found[entry["source"], entry["size"]] = entry["key"]
            except (ValueError, KeyError, TypeError):
                continue
        return found

    @contextmanager
    def held(self):
        """The folder held by this run alone: a second run on it at once is told so (the lock
        goes with the process, however it ends)."""
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"another dataset run is writing {self.folder}; wait for it to end (the same command "
                                 "then finds its images done), or choose another folder with -op") from None
            self.maps.mkdir(exist_ok=True)
            yield
