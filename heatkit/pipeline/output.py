"""Run folders and the files in them.

A run is written into a hidden staging folder that is renamed into place only when the run is
complete, so a run never overwrites an earlier one and a failed run leaves nothing behind.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from heatkit.base.errors import UsageError


class RunFolder:
    """Write into `path`; `publish()` moves it to `<out>/<stem>_<YYYYmmdd-HHMMSS>[_N]`."""

    def __init__(self, out: Path, stem: str):
        self.out, self.stem = Path(out), stem
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".partial", dir=self.out))
        except OSError as error:
            raise UsageError(f"cannot write to output folder {self.out} ({error.strerror}); "
                             "choose a writable folder with -op") from None

    def publish(self) -> Path:
        name = f"{self.stem}_{datetime.now():%Y%m%d-%H%M%S}"
        for attempt in range(1, 1000):
            final = self.out / (name if attempt == 1 else f"{name}_{attempt}")
            if not final.exists():
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self.path, 0o777 & ~umask)  # mkdtemp made it private
                os.rename(self.path, final)
                return final
        raise UsageError(f"no free run folder name for {name} in {self.out}; clear old runs from it")

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def check_writable(folder: Path) -> None:
    """UsageError unless files can be written in `folder` (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise UsageError(f"cannot write to output folder {folder} ({error.strerror or error}); choose a writable "
                         "folder with -op") from None


@contextmanager
def atomic(path: Path):
    """A handle on a temporary file beside `path` that becomes `path` only once written whole. A
    failed write (a full disk) is a UsageError naming the file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(temporary, "wb") as handle:  # open(), unlike tempfile, keeps the umask's permissions
            yield handle
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path} ({error.strerror or error}); free some space or choose another "
                         "folder with -op") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def interrupts_deferred():
    """Ctrl-C and SIGTERM held back for the block, then raised as KeyboardInterrupt at its end: for
    writes that a signal must not cut in half. Only the main thread handles signals."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    handlers = {number: signal.signal(number, lambda signum, frame: caught.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    if caught:
        raise KeyboardInterrupt


def write_json(path: Path, data) -> None:
    with atomic(path) as handle:
        handle.write((json.dumps(data, indent=2, default=_plain) + "\n").encode())


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic(path) as handle:
        np.savez_compressed(handle, **arrays)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV; a column some rows lack (an error's) is empty in those."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
    writer.writeheader()
    writer.writerows(rows)
    with atomic(path) as handle:
        handle.write(text.getvalue().encode())


def save_figure(figure, path: Path, dpi: int) -> None:
    with atomic(path) as handle:
        figure.savefig(handle, dpi=dpi, format=path.suffix.lstrip("."))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
