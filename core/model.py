"""The model wrapper: one object hides whether a Keras model or its PyTorch twin does the work.

Methods ask it for `logits(batch)` and `probabilities(batch)` (batches are NHWC float64 numpy
arrays in the model's input scale), or for the framework handles `keras` and `torch`.
Frameworks are imported only when a handle is first used.

A model made by create_model.py is three files with one stem: `<stem>.h5` (Keras),
`<stem>.pt` (the PyTorch twin's state dict) and `<stem>.json` (its card: the architecture,
its input shape and classes, the ground truth it declares, and its verification figures).
Any other model is one file: a Keras classifier (.h5 or .keras) or a TorchScript module (.pt).
"""
from __future__ import annotations

import json
import pickle
from collections import Counter
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from core import frameworks
from core.center_pixel import true_label
from core.errors import NotApplicable, UsageError
from core.images import Preprocess
from core.perturb import AffineSplit, Engine, EngineOptions

KERAS_SUFFIXES = (".h5", ".keras")
FRAMEWORK_NAMES = {"keras": "Keras", "torch": "PyTorch"}
PROBE_SIZES = (224, 227, 32, 28, 64, 128, 256, 299)  # tried for a TorchScript conv net's input side


class Model:
    """`evaluate_with` serves logits and probabilities: "auto" takes the PyTorch twin where there is
    one (faster on a CPU, and verified equal to the Keras model to 1e-9 when built), else the one
    framework the model has."""

    def __init__(self, path: str | Path, evaluate_with: str = "auto",
                 engine_options: EngineOptions = EngineOptions(), preprocess: Preprocess = Preprocess(),
                 device: str = "auto", trust: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"model file {self.path} not found; build the models with: python create_model.py")
        if self.path.suffix not in (*KERAS_SUFFIXES, ".pt"):
            raise UsageError(f"{self.path}: give a Keras model (.h5, .keras) or a PyTorch model (.pt)")
        self.evaluate_with, self.engine_options = evaluate_with, engine_options
        self.preprocess, self.device, self.trust = preprocess, device, trust
        card_path = self.path.with_suffix(".json")
        self.card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        self.evaluations: Counter = Counter()  # model evaluations by the engine, by path ("full", "fast")

    @cached_property
    def files(self) -> dict[str, Path]:
        """The model's file per framework: the one given, and its twin where the card names one."""
        own = "torch" if self.path.suffix == ".pt" else "keras"
        files = {own: self.path}
        if "architecture" in self.card:
            twin = self.path.with_suffix(".h5" if own == "torch" else ".pt")
            if twin.is_file():
                files["keras" if own == "torch" else "torch"] = twin
        return files

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
        """The frameworks this model runs on."""
        return tuple(name for name in ("keras", "torch") if name in self.files)

    def gradient_backend(self, requested: str) -> str:
        """The framework that runs the gradient family: `requested`, or for "auto" Keras where the
        model has a Keras version and PyTorch otherwise. A framework the model lacks is refused."""
        if requested == "auto":
            return "keras" if "keras" in self.frameworks else "torch"
        if requested not in self.frameworks:
            raise UsageError(f"backend {requested}: {self.path} has no {FRAMEWORK_NAMES[requested]} version; "
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
            raise NotApplicable(f"{key} runs on {framework} and {self.path} has no {framework} version")

    # ---- evaluation ----
    @property
    def evaluator_framework(self) -> str:
        """The framework that serves logits and probabilities (see `evaluate_with`)."""
        if self.evaluate_with == "auto":
            return "torch" if "torch" in self.frameworks else "keras"
        if self.evaluate_with not in self.frameworks:
            raise UsageError(f"evaluate_with {self.evaluate_with}: {self.path} has no "
                             f"{FRAMEWORK_NAMES[self.evaluate_with]} version; set it to 'auto'")
        return self.evaluate_with

    @cached_property
    def evaluator(self) -> "KerasNet | TorchNet":
        return self.torch if self.evaluator_framework == "torch" else self.keras

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
        if "keras" not in self.files:
            raise UsageError(f"{self.path} has no Keras version")
        return KerasNet(self.files["keras"], self.trust)

    @cached_property
    def torch(self) -> "TorchNet":
        if "torch" not in self.files:
            raise UsageError(f"{self.path} has no PyTorch twin ({self.path.with_suffix('.pt')} and its card); "
                             "rebuild it with create_model.py")
        device = self.device
        if device == "auto":
            device = "cuda" if frameworks.torch().cuda.is_available() else "cpu"
        if "architecture" in self.card:
            return TorchNet.load(self.files["torch"], self.card, device)
        return TorchNet.load_script(self.files["torch"], device)


class KerasNet:
    """A Keras image classifier. `logits_model` ends before the softmax: at a softmax Activation
    layer's input, at a copy of a softmax Dense layer without its activation, or, for a model
    without a softmax, at its output (the softmax is then applied here).

    Each model lives in a TensorFlow graph and session of its own: a session copies its whole
    graph whenever operations are added, so in one shared graph every analyzer built got slower
    with every model loaded before it. Use `model` and `logits_model` inside `scope()`: outside it,
    Keras would read their variables through a session that never loaded them.
    """

    def __init__(self, path: Path, trust: bool = False):
        tf = frameworks.tensorflow()
        self.trusted = trust  # Lambda layers allowed: their code runs on loading and in every analysis
        if not trust:
            refuse_code_layers(path)
        self.graph = tf.Graph()
        self.session = frameworks.session(self.graph)
        self.dtype = "float32"
        with self.scope():
            try:
                self.model = _load_keras(tf, path, trust)
            except (OSError, ValueError, TypeError, KeyError) as error:
                raise UsageError(f"cannot load {path} as a Keras model ({_first_line(error)}); "
                                 "give a Keras .h5 or .keras classifier") from None
            if len(self.model.inputs) != 1 or len(self.model.input_shape) != 4 or len(self.model.output_shape) != 2:
                raise UsageError(f"{path}: the model must take one (H, W, C) image and give one vector of classes, "
                                 f"not {self.model.input_shape} -> {self.model.output_shape}")
            self.dtype = self.model.inputs[0].dtype.name
            _reserve_layer_names(self.model)
            self.is_chain = _is_chain(self.model)  # before the logits layer below adds a branch
            logits = _logits_tensor(tf, self.model)
            self.outputs_logits = logits is self.model.output  # no softmax in the model: probabilities apply one
            self.logits_model = tf.keras.Model(self.model.inputs, logits, name=f"{self.model.name}_logits")
            self._run = self.session.make_callable([logits, tf.nn.softmax(logits)], feed_list=self.model.inputs)
        self.input_shape = tuple(self.model.input_shape[1:])
        self.num_classes = int(self.model.output_shape[-1])
        self._built: dict = {}

    def scope(self):
        """This model's graph, session and float type as the defaults for the block (innvestigate
        casts its masks and constants to Keras' float type, which must be the model's)."""
        return frameworks.keras_graph(self.graph, self.session, self.dtype)

    def once(self, key, build: Callable):
        """What build() makes on this model's graph, built once per key and then reused: a graph
        never shrinks, so an analyzer built per map would grow it with every map."""
        if key not in self._built:
            with self.scope():
                self._built[key] = build()
        return self._built[key]

    def weights(self, layer: str) -> list[np.ndarray]:
        """The named layer's weights."""
        with self.scope():
            return self.model.get_layer(layer).get_weights()

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
                or not isinstance(layers[1], tf.keras.layers.Dense) or not self.is_chain):
            return None
        dense = layers[1]
        with self.scope():
            kernel, *bias = dense.get_weights()
            head_input = tf.keras.Input((dense.units,), dtype=dense.dtype)
            hidden = tf.keras.layers.Activation(dense.activation, dtype=dense.dtype)(head_input)
            for layer in layers[2:]:
                hidden = layer(hidden)
            if self.outputs_logits:  # as probabilities() does
                hidden = tf.nn.softmax(hidden)
            head = self.session.make_callable(hidden, feed_list=[head_input])
        return AffineSplit(kernel, bias[0] if bias else np.zeros(dense.units), head)


class TorchNet:
    """A PyTorch module returning logits, fed NHWC numpy batches, on `device`."""

    def __init__(self, module, input_shape: tuple[int, int, int], device: str = "cpu"):
        self.torch = frameworks.torch()
        self.device = device
        self.module = module.to(device).eval()
        self.dtype = next(self.module.parameters()).dtype
        self.input_shape = input_shape
        height, width, channels = input_shape
        self._chw = (channels, height, width)

    @classmethod
    def load(cls, path: Path, card: dict, device: str = "cpu") -> "TorchNet":
        """A twin made by create_model.py: its module class from the card, its weights a state dict."""
        from core.torch_models import ARCHITECTURES

        torch = frameworks.torch()
        if _archive_kind(path) == "torchscript":
            raise UsageError(f"{path} is TorchScript, but its card {path.with_suffix('.json')} describes a state dict; "
                             "remove the card to load it as TorchScript")
        module = ARCHITECTURES[card["architecture"]](**card["arguments"])
        try:
            module.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
            raise UsageError(f"cannot load {path} as the state dict its card describes ({_first_line(error)}); "
                             "rebuild it with create_model.py") from None
        return cls(module, tuple(card["input_shape"]), device)

    @classmethod
    def load_script(cls, path: Path, device: str = "cpu") -> "TorchNet":
        """A TorchScript classifier. Its input's channels come from its first Conv2d or Linear
        layer; the side from a Linear's inputs, or the first of PROBE_SIZES that runs."""
        torch = frameworks.torch()
        if _archive_kind(path) == "pickle":
            raise UsageError(f"{path} holds a state dict or a pickled object, not TorchScript; save the model "
                             "with torch.jit.script(model).save(path), or keep a create_model.py twin beside its card")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as error:
            raise UsageError(f"cannot load {path} as TorchScript ({_first_line(error)}); save the model with "
                             "torch.jit.script(model).save(path), or give a create_model.py twin with its card") from None
        module = module.double().eval()
        first = next((m for m in module.modules() if m.original_name in ("Conv2d", "Linear")), None)
        if first is None:
            raise UsageError(f"{path}: found no Conv2d or Linear layer to read the input's shape from")
        weight = first.weight
        if first.original_name == "Linear":
            inputs = weight.shape[1]
            channels = 3 if inputs % 3 == 0 and _is_square(inputs // 3) else 1
            sizes = [round((inputs / channels) ** 0.5)]
        else:
            channels, sizes = weight.shape[1], PROBE_SIZES
        for size in sizes:
            try:
                with torch.no_grad():
                    output = module(torch.zeros(1, channels, size, size, dtype=torch.float64))
            except RuntimeError:
                continue
            if output.dim() == 2:
                net = cls(module, (size, size, channels), device)
                net.softmax_inside = bool(torch.all(output >= 0) and torch.allclose(output.sum(), torch.ones((), dtype=output.dtype)))
                return net
        raise UsageError(f"{path}: no input of {channels} channels and side {', '.join(map(str, sizes))} gives "
                         "a (batch, classes) output")

    softmax_inside = False  # a TorchScript module that outputs probabilities: its log is the logits

    @property
    def scripted(self) -> bool:
        return isinstance(self.module, self.torch.jit.ScriptModule)

    def tensor(self, batch: np.ndarray):
        """An NHWC numpy batch as the module's NCHW input, in its float type and on its device."""
        return self.torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(self.device, self.dtype)

    def array(self, tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy()

    def forward(self, inputs):
        """The logits of an NCHW tensor."""
        output = self.module(inputs)
        return self.torch.log(output) if self.softmax_inside else output

    @property
    def num_classes(self) -> int:
        return int(self.logits(np.zeros((1, *self.input_shape))).shape[-1])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.array(self.forward(self.tensor(batch)))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.array(self._as_probabilities(self.module(self.tensor(batch))))

    def _as_probabilities(self, output):
        """The module's output as probabilities: itself where the module ends in a softmax."""
        return output if self.softmax_inside else self.torch.softmax(output, dim=-1)

    @cached_property
    def affine_split(self) -> AffineSplit | None:
        """For a Sequential (TorchScript or not) of Flatten, Linear, then anything."""
        nn = self.torch.nn
        layers = list(self.module.children()) if _is(self.module, nn.Sequential) else []
        if len(layers) < 2 or not _is(layers[0], nn.Flatten) or not _is(layers[1], nn.Linear):
            return None
        linear, rest = layers[1], nn.Sequential(*layers[2:])
        kernel = self.array(linear.weight).T  # rows in (C, H, W) order; the engine's are (H, W, C)
        channels, height, width = self._chw
        kernel = kernel.reshape(channels, height, width, -1).transpose(1, 2, 0, 3).reshape(kernel.shape)
        bias = np.zeros(linear.out_features) if linear.bias is None else self.array(linear.bias)

        def head(z):
            with self.torch.no_grad():
                return self.array(self._as_probabilities(rest(self.torch.from_numpy(z).to(self.device, self.dtype))))
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


def refuse_code_layers(path: Path) -> None:
    """UsageError if the Keras file holds a Lambda layer: loading one runs the Python code stored in
    the file. Reads the file's JSON config only."""
    import zipfile

    import h5py

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                text = archive.read("config.json").decode()
        else:
            with h5py.File(path, "r") as handle:
                text = handle.attrs.get("model_config", "")
                text = text.decode() if isinstance(text, bytes) else text
        config = json.loads(text)
    except (OSError, KeyError, ValueError) as error:
        raise UsageError(f"cannot read {path} as a Keras model ({_first_line(error)}); "
                         "give a Keras .h5 or .keras classifier") from None
    if '"class_name": "Lambda"' in json.dumps(config):
        raise UsageError(f"{path} holds a Lambda layer, whose Python code would run on loading; "
                         "give --trust-model if you trust the file")


def _load_keras(tf, path: Path, trust: bool):
    """The Keras model in the file. Keras 2.14 loads a .keras file's weights with
    `variable.assign`, which in graph mode only builds assignment ops: we run them (the
    variables' initializers first), or the model would keep its initial weights."""
    if path.suffix != ".keras":
        return tf.keras.models.load_model(path, compile=False)
    graph = tf.compat.v1.get_default_graph()
    before = set(graph.get_operations())
    model = tf.keras.models.load_model(path, compile=False, safe_mode=not trust)
    initializers = {variable.initializer for variable in model.variables}
    loads = [op for op in graph.get_operations()
             if op not in before and op.type in ("AssignVariableOp", "Assign") and op not in initializers]
    tf.compat.v1.keras.backend.get_session().run(loads)  # get_session initializes the variables first
    return model


def _reserve_layer_names(model) -> None:
    """Keras names a new layer after its class, numbered per graph (add, add_1, ...), without looking
    at the layers loaded into that graph: the layers innvestigate builds would take the names of a
    loaded model's (a residual model's "add", a "lambda") and fail. Counting the model's names in
    the graph first makes new names skip them."""
    from keras.src import backend  # keras 2.14's per-graph name counters, which Keras keeps no public handle on

    counters = backend.get_default_graph_uid_map()
    for name in [model.name, *(layer.name for layer in model.submodules)]:
        base, _, number = name.rpartition("_")
        base, number = (base, int(number)) if number.isdigit() and base else (name, 0)
        counters[("", base)] = max(counters[("", base)], number + 1)


def _logits_tensor(tf, model):
    """The pre-softmax output of a Keras classifier (see KerasNet)."""
    last = model.layers[-1]
    softmax = tf.keras.activations.softmax
    if isinstance(last, tf.keras.layers.Activation) and last.activation is softmax:
        return last.input
    if isinstance(last, tf.keras.layers.Dense) and last.activation is softmax:
        linear = tf.keras.layers.Dense.from_config({**last.get_config(), "activation": "linear",
                                                    "name": f"{last.name}_logits"})
        logits = linear(last.input)
        linear.set_weights(last.get_weights())
        return logits
    return model.output


def _is(module, kind) -> bool:
    """isinstance, for TorchScript modules too (they keep their class's name as `original_name`)."""
    return isinstance(module, kind) or getattr(module, "original_name", None) == kind.__name__


def _is_square(number: int) -> bool:
    return round(number**0.5) ** 2 == number


def _archive_kind(path: Path) -> str | None:
    """What a PyTorch zip archive holds: "torchscript" (it has code), "pickle" (torch.save's
    objects, a state dict among them), or None when the file is no such archive."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = [name.split("/", 1)[-1] for name in archive.namelist()]
    return "torchscript" if "constants.pkl" in names else "pickle" if "data.pkl" in names else None


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _is_chain(model) -> bool:
    """Whether every layer feeds only the next one, so that the layers can be re-applied in order."""
    return all(len(layer._inbound_nodes) <= 1 and len(layer._outbound_nodes) <= 1 for layer in model.layers)
