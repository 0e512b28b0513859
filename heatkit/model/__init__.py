"""The model wrapper: one object hides whether a Keras model or its PyTorch twin does the work.

Methods ask it for `logits(batch)` and `probabilities(batch)` (batches are NHWC float64 numpy
arrays in the model's input scale), or for the framework handles `keras` and `torch`.
Frameworks are imported only when a handle is first used.

A model is a file, code, or an object the caller built (a tf.keras.Model or a torch.nn.Module).
A model made by create_model.py is three files with one stem: `<stem>.h5` (Keras), `<stem>.pt`
(the PyTorch twin's state dict) and `<stem>.json` (its card: how to rebuild the twin, the input
shape and classes, the ground truth the model declares, and its verification figures). Any other
model file is one file: a Keras classifier (.h5 or .keras), a TorchScript module (.pt), or, with
trust, a module saved whole by torch.save. A PyTorch model as code is `path/to/net.py:factory`
with its state dict as `weights`; it runs the file's code, so it too needs trust.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np

from heatkit.base import data, frameworks
from heatkit.base.engine import Engine
from heatkit.base.evaluated import AffineSplit, Evaluated
from heatkit.base.run_state import current
from heatkit.base.errors import NotApplicable, UsageError
from heatkit.base.images import Preprocess
from heatkit.model import zoo
from heatkit.model.files import is_keras_saved_model

KERAS_SUFFIXES = (".h5", ".keras")
TORCH_SUFFIXES = (".pt", ".pth")
PROJECT_MODELS = ("center_pixel", "center_cnn", "digits", "residual_digits")  # what `make models` builds
BUILT = ("center_pixel", "center_cnn", "digits")  # what the installed package's builder builds
FRAMEWORK_NAMES = {"keras": "Keras", "torch": "PyTorch"}


def _missing_hint(path: Path) -> str:
    """How to get a missing model file: a known-answer model is built (by the checkout's Makefile,
    or by the installed package's builder); any other path is the user's to check."""
    if not (path.parent.name == "models" and path.stem in PROJECT_MODELS):
        return "check the path given to -mp"
    if Path("Makefile").is_file() and Path("create_model.py").is_file():  # a checkout of heatkit
        return "build it with: make models"
    if path.stem not in BUILT:
        return "give your own model with -mp (a file, torchvision:NAME or timm:NAME)"
    return (f"it is one of heatkit's known-answer models: give your own model with -mp (a file, "
            f"torchvision:NAME or timm:NAME), or build it with: python -m heatkit.testmodels.build --model "
            f"{path.stem} --out {path.parent}")


class Model(Evaluated):
    """A classifier on one or two frameworks. `evaluate_with` chooses the one that serves logits
    and probabilities: "auto" takes the PyTorch twin where there is one (faster on a CPU, and
    verified equal to the Keras model to 1e-9 when built), else the one framework the model has.
    It holds facts about the model, computed once; a run sets only `preprocess` from its settings,
    and keeps its own state apart (heatkit/base/run_state.py)."""

    def __init__(self, source, evaluate_with: str = "auto", preprocess: Preprocess = Preprocess(),
                 device: str = "auto", trust: bool = False, input_size: list[int] | None = None,
                 weights: str | Path | None = None, output=None, custom_objects: str | Path | None = None):
        self.evaluate_with = evaluate_with
        self.preprocess, self.device, self.trust, self.input_size = preprocess, device, trust, input_size
        self.output = output  # the classifier's element of a PyTorch model's tuple or dict output
        self.custom_objects = Path(custom_objects) if custom_objects is not None else None  # a Keras model's layers
        if self.custom_objects is not None and not trust:
            raise UsageError(f"--custom-objects {custom_objects} runs that file's code; give --trust-model if you "
                             "trust it")
        self.weights = Path(weights) if weights is not None else None
        self.card: dict = {}
        self.named = None  # a model by name (heatkit/model/zoo.py)
        self._loaders = {}  # framework -> a function giving its net
        self.path = None  # the model file
        self.source = str(source) if isinstance(source, (str, Path)) else None  # the file or code it was read from
        if zoo.is_named(source):
            named = zoo.parse(str(source))
            self.name = self.source = named.source  # as it is built: "timm: resnet18 " is timm:resnet18
            self._from_zoo(named)
        elif isinstance(source, (str, Path)) and ".py:" in str(source):
            self.name = str(source)
            self._from_code(str(source))
        elif isinstance(source, dict):  # frameworks' nets built in memory: an altered copy (pipeline/variants.py)
            self.name = "the altered copy"
            self._loaders = {framework: (lambda net=net: net) for framework, net in source.items()}
        elif isinstance(source, (str, Path)):
            self.path = Path(source)
            self.name = str(self.path)
            self._from_file()
        else:
            self.name = f"the {type(source).__name__} given"
            self._from_object(source)
        if self.weights is not None and self.path is not None:
            raise UsageError(f"--weights goes with a model given as code (-mp net.py:factory) or by name "
                             f"(-mp torchvision:resnet50), not with {self.path}")

    @classmethod
    def from_settings(cls, source, cfg: dict, trust: bool = False) -> "Model":
        """The model a run's validated settings describe: its device, input size, weights and
        preprocessing."""
        model = cls(source, evaluate_with=cfg["evaluate_with"], device=cfg["device"], trust=trust,
                    input_size=cfg["input_size"], weights=cfg["weights"], output=cfg["output"],
                    custom_objects=cfg["custom_objects"])
        return model.configure(cfg)

    def loaded_with(self) -> dict:
        """The settings the model was loaded with, which a later call cannot change."""
        return {"evaluate_with": self.evaluate_with, "device": self.device, "input_size": self.input_size,
                "output": self.output, "weights": None if self.weights is None else str(self.weights),
                "custom_objects": None if self.custom_objects is None else str(self.custom_objects)}

    def refuse_other(self, cfg: dict, given: set[str]) -> None:
        """One line naming a setting a call gives (`given`) that this loaded model cannot take: a
        run given evaluate_with=keras ran on PyTorch and recorded keras."""
        for key, loaded in self.loaded_with().items():
            asked = cfg[key]
            if key in given and asked not in (None, "auto") and asked != loaded and \
                    not (key == "input_size" and list(asked) == list(self.input_shape[:2])):
                raise UsageError(f"{key}={asked!r}: this Model was loaded with {key}={loaded!r}, and keeps it; load "
                                 f"it again with heatkit.load_model(..., settings={{{key!r}: {asked!r}}})")

    def configure(self, cfg: dict) -> "Model":
        """Takes the run's preprocessing (a named model's family's mean and std where the settings
        give none)."""
        if cfg["device"] == "cuda" and not frameworks.torch().cuda.is_available():
            raise UsageError("device cuda: PyTorch finds no CUDA device here; use --device cpu or auto")
        self.preprocess = Preprocess(**cfg["preprocess"])
        channels = self.input_shape[-1]
        family = self.torch.family_preprocess if "torch" in self.frameworks else None
        if family and self.preprocess.mean is None and self.preprocess.std is None:
            self.preprocess = replace(self.preprocess, mean=tuple(family["mean"]), std=tuple(family["std"]))
        self.preprocess.check(channels)
        return self

    def _from_code(self, source: str) -> None:
        from heatkit.model.torch_net import TorchNet

        if not self.trust:
            raise UsageError(f"-mp {source} runs the code in {source.rpartition(':')[0]}; give --trust-model if you "
                             "trust it")
        if self.weights is not None and not self.weights.is_file():
            raise UsageError(f"weights file {self.weights} not found; give the state dict of {source}")
        self._loaders["torch"] = lambda: TorchNet.load_code(source, self.weights, self.torch_device, self.input_size,
                                                            self.output)

    def _from_zoo(self, named) -> None:
        from heatkit.model.torch_net import TorchNet

        self.named = named
        self._loaders["torch"] = lambda: TorchNet.load_named(named, self.weights, self.torch_device, self.input_size,
                                                             self.output)

    def _from_file(self) -> None:
        from heatkit.model.keras_net import KerasNet
        from heatkit.model.torch_net import TorchNet

        if is_keras_saved_model(self.path):
            self._loaders["keras"] = lambda: KerasNet.load(self.path, self.trust, self.custom_objects)
            return
        if self.path.is_dir():
            kind = ("a TensorFlow SavedModel folder that Keras did not write; export it to ONNX (python -m "
                    f"tf2onnx.convert --saved-model {self.path} --output model.onnx) and give the .onnx file") \
                if (self.path / "saved_model.pb").is_file() else \
                "a folder; give a model file: Keras (.h5, .keras), PyTorch (.pt, .pth) or ONNX (.onnx)"
            raise UsageError(f"-mp {self.path} is {kind}")
        if not self.path.is_file():
            raise UsageError(f"model file {self.path} not found; " + _missing_hint(self.path))
        if self.path.suffix == ".py":
            raise UsageError(f"-mp {self.path}: name the function or class in it that builds the model, as "
                             "path/to/net.py:factory")
        if self.path.suffix == ".onnx":
            self._loaders["torch"] = lambda: TorchNet.load_onnx(self.path, self.torch_device, self.input_size,
                                                                self.output)
            return
        if self.path.suffix not in (*KERAS_SUFFIXES, *TORCH_SUFFIXES):
            raise UsageError(f"{self.path}: give a Keras model (.h5, .keras), a PyTorch model (.pt, .pth) or an ONNX "
                             "model (.onnx)")
        card_path = self.path.with_suffix(".json")
        self.card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        own = "torch" if self.path.suffix in TORCH_SUFFIXES else "keras"
        files = {own: self.path}
        twin = self.path.with_suffix(".h5" if own == "torch" else ".pt")
        if "twin" in self.card and twin.is_file():
            files["keras" if own == "torch" else "torch"] = twin
        if "keras" in files:
            self._loaders["keras"] = lambda: KerasNet.load(files["keras"], self.trust, self.custom_objects)
        if "torch" in files:
            self._loaders["torch"] = (lambda: TorchNet.load_twin(files["torch"], self.card, self.torch_device)) \
                if "twin" in self.card else (lambda: TorchNet.load_file(files["torch"], self.torch_device,
                                                                        self.input_size, self.trust, self.output))

    def _from_object(self, source) -> None:
        from heatkit.model.keras_net import KerasNet
        from heatkit.model.torch_net import TorchNet

        kind = {cls.__module__.split(".")[0] for cls in type(source).__mro__}
        if "keras" in kind or "tensorflow" in kind:
            self._loaders["keras"] = lambda: KerasNet.wrap(source)
        elif "torch" in kind:
            self._loaders["torch"] = lambda: TorchNet.wrap(source, self.torch_device, self.input_size, self.output)
        else:
            raise UsageError(f"cannot explain a {type(source).__name__}; give a model file, a tf.keras.Model or a "
                             "torch.nn.Module")

    # ---- what the model is ----
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C), from the card where there is one, so that a PyTorch run never loads Keras."""
        return tuple(self.card["input_shape"]) if "input_shape" in self.card else self.evaluator.input_shape

    @property
    def num_classes(self) -> int:
        return self.card["num_classes"] if "num_classes" in self.card else self.evaluator.num_classes

    @property
    def class_names(self) -> list[str] | None:
        """The classes' names: the card's, or ImageNet's for a 1000-class torchvision or timm model
        (by name, or a module object of theirs)."""
        if "class_names" in self.card:
            return self.card["class_names"]
        family = "torch" in self.frameworks and self.torch.family_preprocess is not None
        return zoo.imagenet_names() if family and self.num_classes == 1000 else None

    @property
    def ground_truth(self) -> str | None:
        """The rule that gives each image's true class, if the model declares one."""
        return self.card.get("ground_truth")

    def true_label(self, image: np.ndarray) -> int | None:
        return data.true_label(self.ground_truth, image, self.num_classes)

    @property
    def frameworks(self) -> tuple[str, ...]:
        """The frameworks this model runs on."""
        return tuple(name for name in ("keras", "torch") if name in self._loaders)

    def gradient_backend(self, requested: str) -> str:
        """The framework that runs the gradient family: `requested`, or for "auto" Keras where the
        model has a Keras version and PyTorch otherwise. A framework the model lacks is refused."""
        if requested == "auto":
            return "keras" if "keras" in self.frameworks else "torch"
        if requested not in self.frameworks:
            raise UsageError(f"backend {requested}: {self.name} has no {FRAMEWORK_NAMES[requested]} version; "
                             f"leave the backend at 'auto' or choose {' or '.join(self.frameworks)}")
        return requested

    def load(self, frameworks_needed: set[str]) -> None:
        """Loads the evaluator and the needed frameworks' models now, so that a bad model file is a
        one-line error before any work, not a failure of every method."""
        self.evaluator
        for framework in frameworks_needed & set(self.frameworks):
            getattr(self, framework)

    def require(self, framework: str, key: str) -> None:
        """NotApplicable unless this model runs on `framework`, which method `key` needs."""
        if framework not in self.frameworks:
            raise NotApplicable(f"{key} runs on {framework} and {self.name} has no {framework} version")

    def input_value(self, pixel: float | str) -> np.ndarray:
        """A pixel value as the user gives it (0 black, 1 white, "mean" the preprocessing's mean
        color, or mid-gray where it has none) in the model's input space: one value a channel."""
        channels = self.input_shape[-1]
        if pixel == "mean":
            mean = self.preprocess.mean if self.preprocess.mean is not None else (0.5,)
            pixels = np.broadcast_to(np.asarray(mean, dtype=np.float64), (channels,))
        else:
            pixels = np.full(channels, float(pixel))
        return np.asarray(self.preprocess(pixels), dtype=np.float64)

    # ---- evaluation ----
    @property
    def evaluator_framework(self) -> str:
        """The framework that serves logits and probabilities (see `evaluate_with`)."""
        if self.evaluate_with == "auto":
            return "torch" if "torch" in self.frameworks else "keras"
        if self.evaluate_with not in self.frameworks:
            raise UsageError(f"evaluate_with {self.evaluate_with}: {self.name} has no "
                             f"{FRAMEWORK_NAMES[self.evaluate_with]} version; set it to 'auto'")
        return self.evaluate_with

    @cached_property
    def evaluator(self):
        return self.torch if self.evaluator_framework == "torch" else self.keras

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.evaluator.logits(batch)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self.evaluator.probabilities(batch)

    def logits_and_probabilities(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both from one forward pass."""
        return self.evaluator.logits_and_probabilities(batch)

    @property
    def activation_bytes(self) -> int:
        """Bytes one image's forward pass allocates on the evaluating framework."""
        return self.evaluator.activation_bytes

    def windowed_evaluator(self, max_fraction: float, approximate: float):
        """An evaluator of changes of an input within a window, on the PyTorch path of a convolutional
        network (heatkit/model/windowed_evaluator.py), or None."""
        if self.evaluator_framework != "torch":
            return None
        return self.torch.windowed_evaluator(max_fraction, approximate)

    def affine_split(self) -> AffineSplit | None:
        """The model as an affine first layer and the rest, where it has that form."""
        return self.evaluator.affine_split

    def engine(self, image: np.ndarray, target: int, output: str | None = None) -> Engine:
        """The perturbation engine for one input and class, with the options of the run in force:
        evaluating the class's probability or logit as perturbation.output says, or as `output`
        does (PDA and the metrics grade probabilities whatever the setting)."""
        options = current().options
        return Engine(self, image, target, options if output is None else replace(options, output=output))

    # ---- framework handles ----
    @cached_property
    def keras(self):
        if "keras" not in self._loaders:
            raise UsageError(f"{self.name} has no Keras version")
        return self._loaders["keras"]()

    @cached_property
    def torch(self):
        if "torch" not in self._loaders:
            raise UsageError(f"{self.name} has no PyTorch version")
        return self._loaders["torch"]()

    @property
    def head(self):
        """How the model's output gives logits and probabilities (heatkit/model/heads.py)."""
        return self.evaluator.head

    @property
    def notes(self) -> list[str]:
        """What a user should know about how the model is read: its head, a probed input size, a
        first layer that rescales its input as if it were bytes given pixels in [0, 1], or weights
        that were never given."""
        notes = list(self.head.notes(self.name))
        notes += self.torch.notes if "torch" in vars(self) else []
        scale = self.keras.input_scale if "keras" in vars(self) else None
        if scale is not None and scale < 0.05 and self.preprocess.range == "unit" and self.preprocess.mean is None:
            notes.append(f"{self.name} begins with a Rescaling layer that multiplies its input by {scale:.3g}, as for "
                         "pixels in [0, 255], and is given pixels in [0, 1]: give --preprocess byte if it was "
                         "trained on bytes")
        half = next((name for name in ("bfloat16", "float16") if name in self.dtype), None)
        if half:
            notes.append(f"{self.name} computes in {self.dtype}: probabilities, differences and scores are computed in "
                         f"float32 from its {half} logits, which resolve about {2 if half == 'bfloat16' else 3} "
                         "significant digits, so a perturbation that moves a logit by less changes nothing"
                         + (" (LRP analyzes a float32 copy of it)" if self.evaluator_framework == "keras" else ""))
        family = self.torch.family_preprocess if "torch" in vars(self) else None
        if self.source is None and family and self.preprocess.mean == tuple(family["mean"]):
            notes.append(f"{self.name} is a {type(self.torch.module).__module__.split('.')[0]} model: image files and "
                         "numpy pixels are preprocessed with its family's mean and std (set preprocess for others); "
                         "torch tensors are taken as preprocessed already")
        if self.source and (".py:" in self.source or self.named) and self.weights is None:
            notes.append(f"{self.name} is given no --weights: " + (
                "it runs with random weights (a name is built, nothing is downloaded)" if self.named else
                "it runs with the weights its code initializes"))
        return notes

    def evaluating(self):
        """A context in which a PyTorch module the caller built is in eval mode, its training flags
        given back when the block ends (heatkit/model/torch_net.py); a no-op for other models."""
        if "torch" in vars(self):
            return self.torch.evaluating()
        return contextlib.nullcontext()

    @property
    def dtype(self) -> str:
        """The float type the model computes in (a Keras mixed-precision policy by its name)."""
        if self.evaluator_framework == "keras":
            return self.keras.precision
        return str(self.evaluator.dtype).removeprefix("torch.")

    @property
    def torch_device(self) -> str:
        if self.device == "auto":
            return "cuda" if frameworks.torch().cuda.is_available() else "cpu"
        return self.device
