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
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np

from core import frameworks
from core.center_pixel import true_label
from core.errors import NotApplicable, UsageError
from core.perturb import AffineSplit, Engine, EngineOptions

class Model:
    """`backend` runs the gradient family; `evaluate_with` serves logits and probabilities:
    "auto" takes the PyTorch twin where there is one (faster on a CPU, and verified equal to
    the Keras model to 1e-9 when built), else the Keras model."""

    def __init__(self, path: str | Path, backend: str = "keras", evaluate_with: str = "auto",
                 engine_options: EngineOptions = EngineOptions()):
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"model file {self.path} not found; build the models with: python create_model.py")
        self.backend, self.evaluate_with, self.engine_options = backend, evaluate_with, engine_options
        card_path = self.path.with_suffix(".json")
        self.card = json.loads(card_path.read_text()) if card_path.is_file() else {}

    # ---- what the model is ----
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C), from the card where there is one, so that a PyTorch run never loads Keras."""
        return tuple(self.card["input_shape"]) if "input_shape" in self.card else self.evaluator.input_shape

    @property
    def num_classes(self) -> int:
        return self.card["num_classes"] if "num_classes" in self.card else self.evaluator.num_classes

    @property
    def ground_truth(self) -> str | None:
        """The rule that gives each image's true class, if the model declares one."""
        return self.card.get("ground_truth")

    def true_label(self, image: np.ndarray) -> int | None:
        return true_label(image, self.num_classes) if self.ground_truth == "center_pixel" else None

    @property
    def frameworks(self) -> tuple[str, ...]:
        """The frameworks this model runs on: Keras, and PyTorch where it has a twin."""
        has_twin = "architecture" in self.card and self.path.with_suffix(".pt").is_file()
        return ("keras", "torch") if has_twin else ("keras",)

    def require(self, framework: str, key: str) -> None:
        """NotApplicable unless this model runs on `framework`, which method `key` needs."""
        if framework not in self.frameworks:
            raise NotApplicable(f"{key} runs on {framework} and {self.path} has no {framework} twin")

    # ---- evaluation ----
    @cached_property
    def evaluator(self) -> "KerasNet | TorchNet":
        if self.evaluate_with == "auto":
            return self.torch if "torch" in self.frameworks else self.keras
        return self.keras if self.evaluate_with == "keras" else self.torch

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.evaluator.logits(batch)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self.evaluator.probabilities(batch)

    def affine_split(self) -> AffineSplit | None:
        """The model as an affine first layer and the rest, where it has that form."""
        return self.evaluator.affine_split

    def engine(self, image: np.ndarray, target: int) -> Engine:
        """The perturbation engine for one input and class, with this run's options."""
        return Engine(self, image, target, self.engine_options)

    # ---- framework handles ----
    @cached_property
    def keras(self) -> "KerasNet":
        return KerasNet(self.path)

    @cached_property
    def torch(self) -> "TorchNet":
        twin = self.path.with_suffix(".pt")
        if "torch" not in self.frameworks:
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
        self._run = _callable(tf, [last.input, self.model.output], self.model.inputs[0])
        self.input_shape = tuple(self.model.input_shape[1:])
        self.num_classes = int(self.model.output_shape[-1])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch)[0]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch)[1]

    @cached_property
    def affine_split(self) -> AffineSplit | None:
        """For a chain of layers: Input, Flatten, Dense, then anything. The head re-uses the layers."""
        tf = frameworks.tensorflow()
        layers = [layer for layer in self.model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
        if (len(layers) < 2 or not isinstance(layers[0], tf.keras.layers.Flatten)
                or not isinstance(layers[1], tf.keras.layers.Dense) or not _is_chain(self.model)):
            return None
        dense = layers[1]
        kernel, bias = dense.get_weights() if dense.use_bias else (dense.get_weights()[0], None)
        head_input = tf.keras.Input((dense.units,), dtype=dense.dtype)
        hidden = tf.keras.layers.Activation(dense.activation)(head_input)
        for layer in layers[2:]:
            hidden = layer(hidden)
        return AffineSplit(kernel, np.zeros(dense.units) if bias is None else bias, _callable(tf, hidden, head_input))


class TorchNet:
    """A PyTorch module returning logits, fed NHWC numpy batches."""

    def __init__(self, module, input_shape: tuple[int, int, int]):
        self.torch = frameworks.torch()
        self.module = module.eval()
        self.input_shape = input_shape
        height, width, channels = input_shape
        self._chw = (channels, height, width)

    @classmethod
    def load(cls, path: Path, card: dict) -> "TorchNet":
        from core.torch_models import ARCHITECTURES

        module = ARCHITECTURES[card["architecture"]](**card["arguments"])
        module.load_state_dict(frameworks.torch().load(path, weights_only=True))
        return cls(module, tuple(card["input_shape"]))

    def tensor(self, batch: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.module(self.tensor(batch)).numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.torch.softmax(self.module(self.tensor(batch)), dim=-1).numpy()

    @cached_property
    def affine_split(self) -> AffineSplit | None:
        """For an nn.Sequential of Flatten, Linear, then anything."""
        nn = self.torch.nn
        layers = list(self.module.children()) if isinstance(self.module, nn.Sequential) else []
        if len(layers) < 2 or not isinstance(layers[0], nn.Flatten) or not isinstance(layers[1], nn.Linear):
            return None
        linear, rest = layers[1], nn.Sequential(*layers[2:])
        kernel = linear.weight.detach().numpy().T  # rows in (C, H, W) order; the engine's are (H, W, C)
        channels, height, width = self._chw
        kernel = kernel.reshape(channels, height, width, -1).transpose(1, 2, 0, 3).reshape(kernel.shape)
        bias = np.zeros(linear.out_features) if linear.bias is None else linear.bias.detach().numpy()

        def head(z):
            with self.torch.no_grad():
                return self.torch.softmax(rest(self.torch.from_numpy(z)), dim=-1).numpy()
        # Softmax inputs far below their row's maximum make subnormal exponentials, which the CPU
        # computes slowly; flushing them to zero (only probabilities below 2.2e-308 change) ran
        # the center-pixel head 35% faster. The mode is per thread: only the engine's workers get it.
        return AffineSplit(np.ascontiguousarray(kernel), bias, head, self._one_thread,
                           prepare_worker=lambda: self.torch.set_flush_denormal(True))

    @contextmanager
    def _one_thread(self):
        threads = self.torch.get_num_threads()
        self.torch.set_num_threads(1)
        try:
            yield
        finally:
            self.torch.set_num_threads(threads)


def _is_chain(model) -> bool:
    """Whether every layer feeds only the next one, so that the layers can be re-applied in order."""
    return all(len(layer._inbound_nodes) <= 1 and len(layer._outbound_nodes) <= 1 for layer in model.layers)


def _callable(tf, fetches, feed):
    """A function of one array computing `fetches` in the Keras session, callable from any thread
    (keras.backend.function looks the session up per thread and finds none in a worker)."""
    return tf.compat.v1.keras.backend.get_session().make_callable(fetches, feed_list=[feed])
