"""What a method module declares: its registry entry, and the settings it reads with their
defaults, rules and meaning. methods/registry.py collects the entries; settings.py's method dicts
and the README's method table are generated from them (heatkit/generated.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

import numpy as np

from heatkit.base.errors import UsageError
from heatkit.base.declared import SEED, Paper, Setting, Settings  # noqa: F401 (what method modules declare with)

BACKENDS = ("keras", "torch")  # frameworks a gradient-family method can run on
ANY = "any"  # the backend of a method that only asks for probabilities


class Needs(Enum):
    """What a method asks of the model wrapper."""

    GRADIENTS = "gradients of the logits"
    CONV_LAYER = "a conv layer's activations and gradients"
    ATTENTION = "a transformer's attention and its gradients"
    TORCH_MODULE = "the PyTorch module"
    PROBABILITIES = "batch probabilities only"


# Architecture families, by the operations that decide which relevance rules apply, with examples
# (on PyTorch; tests/test_modern_architectures.py runs a network of each)
FAMILIES = {
    "ReLU CNNs": "ResNet, VGG, MobileNetV2",
    "gated CNNs": "EfficientNet, MobileNetV3",
    "ConvNeXt": "ConvNeXt",
    "ViT": "ViT, DeiT",
    "Swin": "Swin",
}
REFUSED = "not applicable"  # a family's verdict where the method says why instead of a map

GRADIENT_PASSES = 3  # a forward and a backward pass, in forward passes: what a gradient costs


def gradient_pass(model, params) -> int:
    """The cost of a method that takes one gradient of one image."""
    return GRADIENT_PASSES


def one_image(batched: Callable) -> Callable:
    """The contract's one-image function of a method's function of a batch of images."""
    def function(model, image, target, params):
        return batched(model, image[None], np.array([target]), params)[0]
    return function


@dataclass(frozen=True)
class Method:
    key: str
    name: str
    paper: Paper
    needs: Needs
    # backend ("keras", "torch", or ANY) -> function(model, image, target, params)
    impl: dict[str, Callable]
    settings: Settings | None = None  # the settings.py dict this method reads
    cheaper: str = ""  # what makes it cheaper, for the warning before a long run
    # backend -> function(model, images (N, H, W, C), targets (N,), params) -> float32 (N, H, W): the
    # method on several images at once (heatkit/pipeline/maps.py); impl's function is its one-image case
    batched: dict[str, Callable] = field(default_factory=dict)
    # the setting holding the reference whose logit the map's sum should explain the change from
    # (IG's, DeepLIFT's): the run reports each map's completeness gap against it
    reference: str | None = None
    # passes(model, params): the forward passes of one image (a backward pass counted as two) the
    # method makes, from its settings and the model's input, without running it; None where it
    # depends on what only running tells (a layer's channels). The run's cost estimate sums them.
    passes: Callable[[Any, dict], int | None] = gradient_pass
    # on PyTorch, where the method starts from the run's prediction pass, which keeps its graph when
    # the method runs first (methods/_recording.py): function(model, params) -> the modules whose
    # outputs it reads there; None: it makes a pass of its own
    from_prediction: Callable[[Any, dict], set] | None = None
    # family (of FAMILIES) -> what the method is there: how exact, or REFUSED; empty where it runs
    # the same on every architecture (model-agnostic, or autograd's gradient)
    families: dict[str, str] = field(default_factory=dict)

    @property
    def backends(self) -> tuple[str, ...]:
        return BACKENDS if ANY in self.impl else tuple(self.impl)

    def runs_on(self, backend: str, available: tuple[str, ...] = BACKENDS) -> str:
        """The framework that runs this method when `backend` is chosen and the model has the
        `available` ones: `backend` where both allow it, else one that does (Meaningful
        Perturbation always runs on PyTorch; a PyTorch-only model runs everything on PyTorch)."""
        if ANY in self.impl:
            return backend if backend in available else available[0]
        usable = [framework for framework in self.impl if framework in available] or list(self.impl)
        return backend if backend in usable else usable[0]

    def function(self, backend: str) -> Callable:
        function = self.impl.get(ANY, self.impl.get(backend))
        if function is None:
            raise UsageError(f"method {self.key} has no {backend} implementation; it runs on {self.backends}")
        return function
