"""Run folders and the files in them.

A run is written into a hidden staging folder that is renamed into place only when the run is
complete, so a run never overwrites an earlier one and a failed run leaves nothing behind.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable

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
        """The folder renamed to its run name, the first free one: two processes that publish the
        same name at once each get their own (the loser of a rename takes the next)."""
        name = f"{self.stem}_{datetime.now():%Y%m%d-%H%M%S}"
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.path, 0o777 & ~umask)  # mkdtemp made it private
        for attempt in range(1, 1000):
            final = self.out / (name if attempt == 1 else f"{name}_{attempt}")
            if final.exists():
                continue
            try:
                os.rename(self.path, final)
            except OSError as error:  # taken between the look and the rename (ENOTEMPTY, EEXIST)
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                continue
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


def publish_run(out: Path, stem: str, interrupted: bool, write: Callable[[Path], None],
                draw: Callable[[Path], None], incomplete: Callable[[Path], None]) -> tuple[Path, bool]:
    """A run folder in `out`, written into a hidden folder and published whole: the folder, and
    whether the run is incomplete. The promise on Ctrl-C and SIGTERM: a first one keeps all
    finished work, figures included (a double tap of Ctrl-C is one), and a further one ends the
    saving at once without spoiling what is written. So write(folder) (the data: quick) holds
    every signal; then draw(folder) (the figures: slow) stops at the second signal that came while
    the folder was written; every file is written whole or not at all (atomic), and a run stopped
    or interrupted is marked by incomplete(folder), signals held again, and published with what it
    has."""
    with _signals_counted() as signals:
        folder = RunFolder(out, stem)
        try:
            write(folder.path)
            try:
                signals.stop_at(2)
                draw(folder.path)
            except KeyboardInterrupt:
                interrupted = True
            signals.hold()
            if interrupted:
                incomplete(folder.path)
        except BaseException:
            folder.discard()
            raise
        return folder.publish(), interrupted


class _Signals:
    """Ctrl-C and SIGTERM as counted by _signals_counted: held, or the `stop_at`-th raising
    KeyboardInterrupt (at once, where that many came while they were held)."""

    def __init__(self):
        self.caught, self.limit = 0, None

    def handle(self, signum, frame):
        self.caught += 1
        if self.limit is not None and self.caught >= self.limit:
            self.limit = None  # one KeyboardInterrupt; later signals are held
            raise KeyboardInterrupt

    def stop_at(self, count: int) -> None:
        self.limit = count
        if self.caught >= count:
            self.limit = None
            raise KeyboardInterrupt

    def hold(self) -> None:
        self.limit = None


@contextmanager
def _signals_counted():
    """Ctrl-C and SIGTERM counted, and held, for the block (see _Signals). Only the main thread
    handles signals."""
    import signal
    import threading

    signals = _Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    handlers = {number: signal.signal(number, signals.handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def write_json(path: Path, data) -> None:
    with atomic(path) as handle:
        handle.write((json.dumps(data, indent=2, default=json_value) + "\n").encode())


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


def json_value(value):
    """What json.dumps writes for a value it does not know: a numpy scalar as Python's, a path as
    its text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
