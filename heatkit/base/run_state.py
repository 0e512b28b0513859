"""What a run keeps while it evaluates a model, apart from the model: the perturbation engine's
options, the running method's meter, the evaluations counted by path ("full", "fast",
"windowed"), and the notes its methods leave. A run owns one (heatkit/api.py opens it around the
run, heatkit/pipeline/maps.py one per method within it); the engine reads the one in force. The
Model holds none of it, so a Model given to one call and then another carries nothing from the
first into the second.

    with running(RunState(EngineOptions(memory_mb=256, progress=False))):
        attribution = occlusion(model, image, target, params)
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from heatkit.base.progress import Meter


@dataclass(frozen=True)
class EngineOptions:
    fast: bool = True  # use the affine split where the model has one
    memory_mb: int = 1024  # bound on the arrays one chunk allocates
    max_fast_fraction: float = 0.5  # edits changing more of the input take full passes
    min_flop_ratio: float = 1.8  # the windowed path where a window saves this many times the multiply-adds
    approximate: float = 0.0  # Krypton's approximate mode: a layer recomputes at most this fraction of a side
    workers: int = 0  # threads for fast-path chunks; 0: one per CPU core
    warn_seconds: float = 120.0  # a method whose evaluations will take longer says so first; 0: never
    progress: bool = True  # tqdm bars on stderr
    # what a perturbation changes: the explained class's "probability", or its "logit", which keeps
    # moving where a confident model's probability is 1.0 to float32's precision
    output: str = "probability"


@dataclass
class RunState:
    options: EngineOptions = EngineOptions()
    meter: Meter | None = None  # the running method's progress; None: each engine call has its own
    evaluations: Counter = field(default_factory=Counter)  # model evaluations by path
    notes: dict[str, None] = field(default_factory=dict)  # what the run's methods said of how they ran, in order

    @classmethod
    def of(cls, cfg: dict, progress: bool = True) -> "RunState":
        """A run's state, from its validated settings."""
        return cls(EngineOptions(**cfg["perturbation"], progress=progress))

    def note(self, text: str) -> None:
        """A line for the run's notes (said once however often it is noted)."""
        self.notes[text] = None

    @contextmanager
    def metered(self, options: EngineOptions, count: int, desc: str):
        """The running method's meter, or one of this call's own, with `count` more evaluations
        to come."""
        meter = self.meter or Meter(desc, options.progress, options.warn_seconds)
        meter.start(count)
        try:
            yield meter
        finally:
            if meter is not self.meter:
                meter.close()


_IN_FORCE: ContextVar[RunState | None] = ContextVar("heatkit_run_state", default=None)


def current() -> RunState:
    """The state of the run in force, or a fresh one of default options (an engine used alone)."""
    return _IN_FORCE.get() or RunState()


@contextmanager
def running(state: RunState):
    """`state` in force for the block (the one before it restored after, however it ends); its
    evaluations and notes are added to that one's, so a run counts those of every method in it."""
    enclosing = _IN_FORCE.get()
    token = _IN_FORCE.set(state)
    try:
        yield state
    finally:
        _IN_FORCE.reset(token)
        if enclosing is not None and enclosing is not state:
            enclosing.evaluations.update(state.evaluations)
            enclosing.notes.update(state.notes)
