"""What a run keeps while it evaluates a model, apart from the model: the perturbation engine's
options, the running method's meter, the evaluations counted by path ("full", "fast",
"windowed"), the notes its methods leave, the logits of the constant references they passed
through a model, and the prediction pass kept for the method that runs next. A run owns one
(heatkit/api.py opens it around the run, heatkit/pipeline/maps.py one per method within it); the
engine reads the one in force. The Model holds none of it, so a Model given to one call and then
another carries nothing from the first into the second.

    with running(RunState(EngineOptions(memory_mb=256, progress=False))):
        attribution = occlusion(model, image, target, params)
"""
from __future__ import annotations

import weakref
from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from heatkit.base.progress import Meter


@dataclass(frozen=True)
class EngineOptions:
    fast: bool = True  # use the affine split where the model has one
    memory_mb: int = 1024  # bound on the arrays one chunk allocates
    max_fast_fraction: float = 0.5  # edits changing more of the input take full passes
    min_flop_ratio: float = 1.1  # the windowed path where a window saves this many times the multiply-adds
    approximate: float = 0.0  # Krypton's approximate mode: a layer recomputes at most this fraction of a side
    workers: int = 0  # threads for fast-path chunks; 0: one per CPU core
    warn_seconds: float = 120.0  # a method whose evaluations will take longer says so first; 0: never
    progress: bool = True  # tqdm bars on stderr
    # what a perturbation changes: the explained class's "probability", or its "logit", which keeps
    # moving where a confident model's probability is 1.0 to float32's precision
    output: str = "probability"


@dataclass(frozen=True)
class KeptPass:
    """A PyTorch forward pass of an NHWC batch with its autograd graph (methods/_recording.py)."""

    model: Any  # the heatkit Model it ran
    batch: np.ndarray
    inputs: Any  # the batch as the tensor the pass took, requiring its gradient
    logits: Any
    outputs: dict  # module -> its output, for the modules recorded


@dataclass
class RunState:
    options: EngineOptions = EngineOptions()
    meter: Meter | None = None  # the running method's progress; None: each engine call has its own
    evaluations: Counter = field(default_factory=Counter)  # model evaluations by path
    notes: dict[str, None] = field(default_factory=dict)  # what the run's methods said of how they ran, in order
    # (id(model), the reference's value a channel) -> (the model, weakly, the reference image's logits)
    references: dict = field(default_factory=dict)
    # the run's prediction pass, kept with its graph for the method that runs next, which holds it alone
    prediction: KeptPass | None = None

    @classmethod
    def of(cls, cfg: dict, progress: bool = True) -> "RunState":
        """A run's state, from its validated settings."""
        return cls(EngineOptions(**cfg["perturbation"], progress=progress))

    def note(self, text: str) -> None:
        """A line for the run's notes (said once however often it is noted)."""
        self.notes[text] = None

    def keep_reference(self, model, pixels, logits) -> None:
        """The logits of the image filled with `pixels` (one value a channel, as the model takes
        them), as a method computed them: the completeness check then makes no pass of its own (it
        was a fourth of DeepLIFT's time on a ResNet). Held weakly, so that a sanity check's altered
        copies are freed as they are done with."""
        self.references[id(model), _values(pixels)] = weakref.ref(model), logits

    def reference(self, model, pixels):
        """The logits kept for `model`'s image filled with `pixels`, or None."""
        owner, logits = self.references.get((id(model), _values(pixels)), (None, None))
        return logits if owner is not None and owner() is model else None

    def hand_over(self) -> KeptPass | None:
        """The kept prediction pass, for the state of the method that runs next: this one holds it no longer."""
        kept, self.prediction = self.prediction, None
        return kept

    def take_pass(self, model, batch: np.ndarray, modules: set) -> KeptPass | None:
        """The kept prediction pass if it is `model`'s, of these images, with the outputs of
        `modules`; once, as a backward pass frees its graph."""
        kept = self.prediction
        if kept is None or kept.model is not model or kept.batch.shape != batch.shape or \
                not all(module in kept.outputs for module in modules) or not np.array_equal(kept.batch, batch):
            return None
        self.prediction = None
        return kept

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


def _values(pixels) -> tuple[float, ...]:
    """A reference's value a channel (or one for all) as a key."""
    return tuple(np.ravel(pixels).astype(float).tolist())


_IN_FORCE: ContextVar[RunState | None] = ContextVar("heatkit_run_state", default=None)


def current() -> RunState:
    """The state of the run in force, or a fresh one of default options (an engine used alone)."""
    return _IN_FORCE.get() or RunState()


@contextmanager
def running(state: RunState):
    """`state` in force for the block (the one before it restored after, however it ends); its
    evaluations, notes and references are added to that one's, so a run counts those of every
    method in it."""
    enclosing = _IN_FORCE.get()
    token = _IN_FORCE.set(state)
    try:
        yield state
    finally:
        _IN_FORCE.reset(token)
        if enclosing is not None and enclosing is not state:
            enclosing.evaluations.update(state.evaluations)
            enclosing.notes.update(state.notes)
            enclosing.references.update(state.references)
