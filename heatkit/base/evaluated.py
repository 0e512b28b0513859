"""What the perturbation engine needs of a model (Evaluated), and the form that gives it its exact
fast path (AffineSplit). heatkit.model.Model declares that it provides the interface, so the
layers see the engine's edge to the model (tests/test_layout.py)."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Protocol

import numpy as np


@dataclass(frozen=True)
class AffineSplit:
    """A model seen as z = x.weight + bias followed by `rest(z) -> probabilities`, the rest of the
    network after its first, affine, layer."""

    weight: np.ndarray  # (inputs, units), rows in flattened (H, W, C) order
    bias: np.ndarray  # (units,)
    rest: Callable[[np.ndarray], np.ndarray]  # (m, units) -> (m, classes)
    # Keeps the rest's framework to one thread while the engine's workers call it: with both
    # threading, PDA took 18 s on 2 cores; with the engine's alone, 14 s.
    one_thread: Callable[[], ContextManager] = nullcontext
    # Runs once in each worker thread before it calls the rest (see TorchNet.affine_split).
    prepare_worker: Callable[[], None] | None = None
    # (m, units) -> (m, classes) logits, for engines that evaluate logits (EngineOptions.output)
    logits: Callable[[np.ndarray], np.ndarray] | None = None


class Evaluated(Protocol):
    """What the engine needs of a model: heatkit.model.Model declares that it provides it, so
    the layers see the edge (tests/test_layout.py)."""

    num_classes: int
    activation_bytes: int  # what one image's forward pass allocates, which bounds a batch

    def logits(self, batch: np.ndarray) -> np.ndarray: ...

    def probabilities(self, batch: np.ndarray) -> np.ndarray: ...

    def affine_split(self) -> AffineSplit | None: ...

    def windowed_evaluator(self, max_fraction: float, approximate: float): ...  # a WindowedEvaluator, or None
