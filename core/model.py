"""The model wrapper: one object hides whether a Keras model or its PyTorch twin does the work.

Methods ask it for `logits(batch)` and `probabilities(batch)` (batches are NHWC float64 numpy
arrays in the model's input scale), or for the framework handles `keras` and `torch`.
Frameworks are imported only when a handle is first used.

A model made by create_model.py is three files with one stem: `<stem>.h5` (Keras),
`<stem>.pt` (the PyTorch twin's state dict) and `<stem>.json` (its card: the architecture,
its arguments, the ground truth it declares, and the figures it was verified with).
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from core import frameworks
from core.center_pixel import true_label
from core.errors import UsageError

BACKENDS = ("keras", "torch")


class Model:
    def __init__(self, path: str | Path, backend: str = "keras"):
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"model file {self.path} not found; build the models with: python create_model.py")
        self.backend = backend
        card_path = self.path.with_suffix(".json")
        self.card = json.loads(card_path.read_text()) if card_path.is_file() else {}

    # ---- what the model is ----
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.keras.input_shape

    @property
    def num_classes(self) -> int:
        return self.keras.num_classes

    @property
    def ground_truth(self) -> str | None:
        """The rule that gives each image's true class, if the model declares one."""
        return self.card.get("ground_truth")

    def true_label(self, image: np.ndarray) -> int | None:
        return true_label(image, self.num_classes) if self.ground_truth == "center_pixel" else None

    # ---- evaluation, on the chosen backend ----
    @property
    def net(self) -> "KerasNet | TorchNet":
        return self.keras if self.backend == "keras" else self.torch

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.net.logits(batch)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self.net.probabilities(batch)

    # ---- framework handles ----
    @cached_property
    def keras(self) -> "KerasNet":
        return KerasNet(self.path)

    @cached_property
    def torch(self) -> "TorchNet":
        twin = self.path.with_suffix(".pt")
        if "architecture" not in self.card or not twin.is_file():
            raise UsageError(f"{self.path} has no PyTorch twin ({twin} and its card); rebuild it with create_model.py")
        return TorchNet.load(twin, self.card)


class KerasNet:
    """A Keras classifier whose last layer is a softmax; `logits_model` stops before it."""

    def __init__(self, path: Path):
        tf = frameworks.tensorflow()
        self.model = tf.keras.models.load_model(path, compile=False)
        last = self.model.layers[-1]
        if getattr(last, "activation", None) is not tf.keras.activations.softmax:
            raise UsageError(f"{path}: the last layer must be a softmax Activation layer")
        self.logits_model = tf.keras.Model(self.model.inputs, last.input, name=f"{self.model.name}_logits")
        self._run = tf.keras.backend.function(self.model.inputs, [last.input, self.model.output])
        self.input_shape = tuple(self.model.input_shape[1:])
        self.num_classes = int(self.model.output_shape[-1])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._run([batch])[0]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self._run([batch])[1]


class TorchNet:
    """A PyTorch module returning logits, fed NHWC numpy batches."""

    def __init__(self, module):
        self.torch = frameworks.torch()
        self.module = module.eval()

    @classmethod
    def load(cls, path: Path, card: dict) -> "TorchNet":
        from core.torch_models import ARCHITECTURES

        module = ARCHITECTURES[card["architecture"]](**card["arguments"])
        module.load_state_dict(frameworks.torch().load(path, weights_only=True))
        return cls(module)

    def tensor(self, batch: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.module(self.tensor(batch)).numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.torch.softmax(self.module(self.tensor(batch)), dim=-1).numpy()
