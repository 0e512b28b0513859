"""What a run says while it runs: one line as each method starts ("grad (1 of 4)"), one
progress bar per method that evaluates the model through the perturbation engine (none for a
gradient), and one warning line before a method whose evaluations would run long. Bars draw only
on a terminal (a log gets the lines, not carriage returns); -q silences all of it."""
from __future__ import annotations

import sys
import time
from typing import Callable

from tqdm import tqdm

TIMED_SECONDS = 1.0  # evaluations timed before the cost of the rest is estimated


def say(line: str, enabled: bool = True) -> None:
    """One line on stderr, above any progress bar."""
    if enabled:
        tqdm.write(line, file=sys.stderr)


def progress_bar(total: int, desc: str, unit: str, enabled: bool) -> tqdm:
    """The toolkit's progress bar: on stderr where that is a terminal (a log gets no carriage-return
    lines), gone when done, off with -q."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
                disable=not (enabled and sys.stderr.isatty()), leave=False)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


class Meter:
    """One method's progress over all its engine calls: one bar, and one line before a long run.

    Each call adds its evaluations (start) and times them as they finish, from its first chunk on
    (which pays the call's warm-up): once a second of them says that the evaluations still to come
    would take longer than `warn_seconds` (0: never), it says so, once, with what makes the method
    cheaper. The bar appears with the method's first evaluations: a method that makes none (a
    gradient) has none."""

    def __init__(self, desc: str, enabled: bool, warn_seconds: float = 0.0, cheaper: str = "",
                 say: Callable[[str], None] | None = None):
        self.bar = None
        self.enabled = enabled
        self.desc, self.warn_seconds, self.cheaper = desc, warn_seconds, cheaper
        self.say = say or (lambda line: tqdm.write(line, file=sys.stderr))
        self.expected = self.finished = 0
        self.warned = False
        self._timed_from, self._timed = None, 0  # when the call's first chunk ended; evaluations since

    def start(self, count: int) -> None:
        self.expected += count
        if self.bar is None:
            self.bar = progress_bar(0, self.desc, "eval", self.enabled)
        self.bar.total = self.expected
        self.bar.refresh()
        self._timed_from, self._timed = None, 0

    def update(self, count: int) -> None:
        self.bar.update(count)
        self.finished += count
        now = time.perf_counter()
        if self._timed_from is None:
            self._timed_from = now
            return
        self._timed += count
        elapsed = now - self._timed_from
        if self.warned or not self.warn_seconds or elapsed < TIMED_SECONDS:
            return
        per_evaluation = elapsed / self._timed
        left = self.expected - self.finished
        if per_evaluation * left > self.warn_seconds:
            self.warned = True
            cheaper = f"; to make it cheaper, {self.cheaper}" if self.cheaper else ""
            self.say(f"{self.desc}: about {duration(per_evaluation * left)} to go ({left:,} model evaluations at "
                     f"{per_evaluation * 1e3:.3g} ms){cheaper}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
