"""A PyTorch image classifier fed NHWC numpy batches: a twin from its card, a TorchScript file,
or a module given as an object."""
from __future__ import annotations

import contextlib
import pickle
import sys
from functools import cached_property
from pathlib import Path

import numpy as np

from heatkit.base import frameworks
from heatkit.base.evaluated import AffineSplit
from heatkit.base.errors import UsageError
from heatkit.base.progress import say
from heatkit.model import graph_patterns, onnx_file, torch_head, twins, zoo
from heatkit.model.code import run_file
from heatkit.model import weights as weights_file
from heatkit.model.files import archive_kind, first_line

PROBE_SIZES = (224, 227, 32, 28, 64, 128, 256, 299)  # tried for a conv net's input side
# A batch of at least this many input pixels (images x height x width: four images of 224 x 224)
# runs channels-last on a net that takes it; a smaller one runs NCHW, unless the net has grouped
# convolutions. Measured, channels-last over NCHW time, 2 threads, on torchvision's ResNet-18 and
# ResNet-50: forward and backward, 1 to 2 images of 224 x 224, 1.01 to 1.38, and 16 of 64 x 64,
# 1.04 to 1.63; forward, 32 of 64 x 64 (131,072 pixels), 1.01 to 1.05; 4 of 224 x 224, 16 of 112
# x 112 and 8 of 160 x 160, 0.90 to 1.00; 16 of 224 x 224, 0.81 to 0.90. MobileNetV2 at any
# size, 0.62 to 0.89; EfficientNet-B0 and ConvNeXt-T, 0.75 to 1.02.
CHANNELS_LAST_PIXELS = 200_000


class TorchNet:
    """A PyTorch classifier fed NHWC numpy batches, on `device`, in its own float type. Its head
    (heatkit/model/heads.py) says how its output gives logits and probabilities; `output` chooses
    the classifier's element of a tuple or dict output. A module the caller built (`owned` False)
    is put in eval mode only while the toolkit evaluates it (see evaluating())."""

    def __init__(self, module, input_shape: tuple[int, int, int], probed: str | None = None, device: str = "cpu",
                 output=None, owned: bool = True, name: str = "the model"):
        self.torch = frameworks.torch()
        self.owned = owned
        if owned:
            self.module, self.device = module.to(device).eval(), device
        else:  # the caller's module runs where it is: moving it would change its parameters
            self.module, self.device = module, str(next(module.parameters()).device)
        self.dtype = next(self.module.parameters()).dtype
        # softmax, differences and scores in float32 at least (float16's resolution loses them)
        self.input_shape = input_shape
        self.notes = [probed] if probed else []  # how the input size was found, how the weights were read
        self.family_preprocess = None  # a named model's family's input size, mean and std (zoo.preprocessing)
        self._built: dict = {}
        height, width, channels = input_shape
        self._chw = (channels, height, width)
        probes = np.stack([np.zeros(input_shape), np.full(input_shape, 0.5),
                           np.random.default_rng(0).random(input_shape)])
        self.channels_last = False
        self.submodules = tuple(self.module.modules())  # walked on every pass: listed once
        self.grouped = any(is_kind(m, self.torch.nn.Conv2d) and _groups(m) > 1 for m in self.submodules)
        with self.evaluating():
            self.head, self.cut = torch_head.find(self.module, self.tensor(probes), output, name)
            self.channels_last = self._runs_channels_last(probes)

    def evaluating(self):
        """The module in eval mode for the block; a caller's module gets its submodules' training
        flags back afterwards, raising or not (its parameters and buffers are never written)."""
        return contextlib.nullcontext() if self.owned else in_eval_mode(self.module, self.submodules)

    @classmethod
    def load_twin(cls, path: Path, card: dict, device: str = "cpu") -> "TorchNet":
        """A twin saved beside its card: the card's spec rebuilds the module, the file is its state dict."""
        torch = frameworks.torch()
        if archive_kind(path) == "torchscript":
            raise UsageError(f"{path} is TorchScript, but its card {path.with_suffix('.json')} describes a state dict; "
                             "remove the card to load it as TorchScript")
        module = twins.build(card["twin"]["spec"], card["twin"]["dtype"])
        try:
            module.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
            raise UsageError(f"cannot load {path} as the state dict its card describes ({first_line(error)}); "
                             "rebuild it with create_model.py") from error
        return cls(module, tuple(card["input_shape"]), device=device, name=str(path))

    @classmethod
    def load_file(cls, path: Path, device: str = "cpu", input_size: list[int] | None = None,
                  trust: bool = False, output=None) -> "TorchNet":
        """A .pt file without a card, trusted: TorchScript, or a module saved whole with torch.save.
        Both run code of the file's: unpickling can call any function, and TorchScript is a program
        (its operators can read and write any file: torch.from_file(path, shared=True) wrote one
        anywhere, a .pth line in site-packages became code at the next Python start), which runs
        at loading (its __setstate__) and at every forward pass."""
        torch = frameworks.torch()
        kind = archive_kind(path)
        if kind == "pickle" and not trust:
            raise UsageError(f"{path} holds a pickled object (a state dict, or a module saved with torch.save), not "
                             "TorchScript, and unpickling it could run code: give --trust-model if you trust it, or "
                             "the code that builds the model: -mp net.py:factory --weights the_state_dict.pt")
        if kind == "torchscript" and not trust:
            raise UsageError(f"{path} is TorchScript, a program that runs as the model does and can read and write "
                             "files: give --trust-model if you trust it, or the model as ONNX (torch.onnx.export) or "
                             "as code with its state dict (-mp net.py:factory --weights state.pt)")
        try:
            module = torch.load(path, weights_only=False, map_location="cpu") if kind == "pickle" else \
                torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError, pickle.UnpicklingError, AttributeError, ModuleNotFoundError) as error:
            raise UsageError(f"cannot load {path} as TorchScript or a saved module ({first_line(error)}); save the "
                             "model with torch.jit.script(model).save(path), or give its code: -mp net.py:factory "
                             "--weights state.pt") from error
        if not isinstance(module, torch.nn.Module):
            raise UsageError(f"{path} holds a {type(module).__name__}, not a model; give the code that builds the model "
                             f"with it as its weights: -mp net.py:factory --weights {path}")
        return cls(module, *input_shape(module, str(path), input_size, output), device, output, name=str(path))

    @classmethod
    def load_code(cls, source: str, weights: Path | None, device: str = "cpu",
                  input_size: list[int] | None = None, output=None) -> "TorchNet":
        """The module a Python file's factory returns (`net.py:factory`, any callable of no arguments),
        with its state dict from `weights` (heatkit/model/weights.py)."""
        module = build_from_code(source)
        notes = []
        if weights is not None:
            state, notes = weights_file.read(weights, source)
            weights_file.load(module, state, weights, source)
        net = cls(module, *input_shape(module, source, input_size, output), device, output, name=source)
        net.notes += notes
        return net

    @classmethod
    def load_onnx(cls, path: Path, device: str = "cpu", input_size: list[int] | None = None,
                  output=None) -> "TorchNet":
        """An ONNX file, converted to a torch.fx GraphModule and checked against onnxruntime
        (heatkit/model/onnx_file.py)."""
        module, shape, layout, notes = onnx_file.load(path, input_size)
        net = cls(module, shape, device=device, output=output, name=str(path))
        net.notes += [*notes, onnx_file.check(path, net, layout)]
        return net

    @classmethod
    def load_named(cls, named, weights: Path | None, device: str = "cpu", input_size: list[int] | None = None,
                   output=None) -> "TorchNet":
        """A torchvision or timm architecture by name (heatkit/model/zoo.py), with its weights."""
        module, notes = zoo.build(named, weights)
        family = zoo.preprocessing(named, module)
        net = cls(module, *input_shape(module, named.source, input_size or family["input_size"], output), device,
                  output, name=named.source)
        net.notes += notes
        net.family_preprocess = family
        return net

    @classmethod
    def wrap(cls, module, device: str = "cpu", input_size: list[int] | None = None, output=None) -> "TorchNet":
        """A module the caller built in this process, in its own float type, left in the training
        mode it is in (see evaluating()). A torchvision or timm module takes its family's input size
        and preprocessing, as its name would (zoo.preprocessing)."""
        name = f"the {type(module).__name__} given"
        family = zoo.family_of(module)
        preprocess = zoo.preprocessing(zoo.Named(family, type(module).__name__), module) if family else None
        with in_eval_mode(module):
            shape = input_shape(module, name, input_size or (preprocess or {}).get("input_size"), output)
        net = cls(module, *shape, device, output, owned=False, name=name)
        net.family_preprocess = preprocess
        return net

    def once(self, key, build):
        """What build() makes for this module (its fx graph for LRP), built once and then reused."""
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    @property
    def scripted(self) -> bool:
        return isinstance(self.module, self.torch.jit.ScriptModule)

    def tensor(self, batch: np.ndarray):
        """An NHWC numpy batch as the module's NCHW input, in its float type and on its device: a copy,
        laid out channels-last in memory where the module takes it (see _runs_channels_last) and
        runs faster so (CHANNELS_LAST_PIXELS). numpy's copy is the tensor's memory: a batch already
        laid out as the tensor (one channel) was shared with the caller, and a read-only one
        (broadcast) made torch warn."""
        if self.channels_last and (self.grouped or np.prod(batch.shape[:3]) >= CHANNELS_LAST_PIXELS):
            return self.torch.from_numpy(np.array(batch, order="C")).permute(0, 3, 1, 2).to(self.device, self.dtype)
        return self.torch.from_numpy(np.array(batch.transpose(0, 3, 1, 2), order="C")).to(self.device, self.dtype)

    def _runs_channels_last(self, probes: np.ndarray) -> bool:
        """Whether a float32 convolutional module gives its output on channels-last input too: its
        convolutions then run faster on large batches (a forward pass of 16 images of 224 x 224 on
        torchvision's ResNet-18, ResNet-50, VGG-11, MobileNetV2 and EfficientNet-B0 took 10 to 33%
        less time, with its backward pass 12 to 35% less). A module that views its input's memory
        as NCHW (x.view(n, -1)) raises on it, and keeps NCHW."""
        torch = self.torch
        if self.dtype != torch.float32 or not any(is_kind(m, torch.nn.Conv2d) for m in self.submodules):
            return False
        inputs = self.tensor(probes)
        with torch.no_grad():
            expected = torch_head.run(self.module, inputs, self.cut)  # the model's own errors are its own
            try:
                found = torch_head.run(self.module, inputs.contiguous(memory_format=torch.channels_last), self.cut)
            except RuntimeError as error:  # a view of NCHW memory, or an operator without the layout
                if frameworks.is_verbose():
                    say(f"channels-last input off for this model ({first_line(error)})")
                return False
        tolerance = 1e-4 * expected.abs() + 1e-5 * expected.abs().max()  # NaN outputs compare unequal: NCHW
        return bool(((found - expected).abs() <= tolerance).all())

    def array(self, tensor) -> np.ndarray:
        """A tensor as numpy, float16 and bfloat16 as float32 (numpy has no bfloat16), in memory of
        numpy's own: a view would keep the tensor's storage alive, and a few bytes of it kept
        among a batch's freed megabytes kept glibc from ever giving them back (PDA's full passes
        on a 96 x 96 CNN grew by 4 GB every 10 s, and a TorchScript ResNet's at 224 to 24 GB)."""
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = tensor.to(self.torch.promote_types(tensor.dtype, self.torch.float32))
        return tensor.cpu().numpy().copy()

    def forward(self, inputs):
        """The logits of an NCHW tensor (see heatkit/model/heads.py), in the module's float type."""
        with self.evaluating():
            return torch_head.logits(self.head, torch_head.run(self.module, inputs, self.cut))

    def probabilities_of(self, logits):
        """The probabilities of logits, in float32 at least."""
        return torch_head.probabilities(self.head, logits)

    @property
    def num_classes(self) -> int:
        return self.head.classes

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.array(self.forward(self.tensor(batch)))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self.logits_and_probabilities(batch)[1]

    def logits_and_probabilities(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.torch.no_grad():
            logits = self.forward(self.tensor(batch))
            return self.array(logits), self.array(self.probabilities_of(logits))

    @cached_property
    def activation_bytes(self) -> int:
        """Bytes of every tensor one image's forward pass makes: what bounds a batch's size."""
        return frameworks.allocated_bytes(lambda: self.forward(self.tensor(np.zeros((1, *self.input_shape)))))

    def windowed_evaluator(self, max_fraction: float, approximate: float = 0.0):
        """An evaluator of windowed changes of an input (heatkit/model/windowed_evaluator.py), or None where
        the module cannot be traced or has no convolution or pooling."""
        from heatkit.model.windowed_evaluator import WindowedEvaluator

        graph = self.once("fx graph", lambda: graph_patterns.traced(self))
        return None if graph is None else WindowedEvaluator(self, graph, max_fraction, approximate)

    @cached_property
    def affine_split(self) -> AffineSplit | None:
        """For a Sequential (TorchScript or not) of Flatten, Linear, then anything."""
        nn = self.torch.nn
        layers = list(self.module.children()) if is_kind(self.module, nn.Sequential) else []
        if self.cut.kind == "last child":
            layers = layers[:-1]  # the final activation: probabilities_of applies its own
        if len(layers) < 2 or not is_kind(layers[0], nn.Flatten) or not is_kind(layers[1], nn.Linear):
            return None
        linear, rest = layers[1], nn.Sequential(*layers[2:])
        kernel = self.array(linear.weight).T  # rows in (C, H, W) order; the engine's are (H, W, C)
        channels, height, width = self._chw
        kernel = kernel.reshape(channels, height, width, -1).transpose(1, 2, 0, 3).reshape(kernel.shape)
        bias = np.zeros(linear.out_features) if linear.bias is None else self.array(linear.bias)

        def logits(z):
            with self.torch.no_grad():
                return torch_head.logits(self.head, rest(self.torch.from_numpy(z).to(self.device, self.dtype)))

        def probabilities(z):
            return self.array(self.probabilities_of(logits(z)))
        # Softmax inputs far below their row's maximum make subnormal exponentials, which the CPU
        # computes slowly; flushing them to zero (only probabilities below 2.2e-308 change) ran the
        # center-pixel model's rest 35% faster. The mode is per thread: only the engine's workers get it.
        return AffineSplit(np.ascontiguousarray(kernel), bias, probabilities, self._one_thread,
                           prepare_worker=lambda: self.torch.set_flush_denormal(True),
                           logits=lambda z: self.array(logits(z)))

    @contextlib.contextmanager
    def _one_thread(self):
        threads = self.torch.get_num_threads()
        self.torch.set_num_threads(1)
        try:
            yield
        finally:
            self.torch.set_num_threads(threads)


@contextlib.contextmanager
def in_eval_mode(module, submodules=None):
    """The module in eval mode for the block, the submodules that were training put back in training
    after it (only those: setting every flag twice took 0.7 ms of each pass of a ResNet-18).
    `submodules`: the module's, where the caller has them listed."""
    training = [submodule for submodule in submodules or module.modules() if submodule.training]
    if training:
        module.eval()
    try:
        yield
    finally:
        for submodule in training:
            submodule.training = True


def input_shape(module, name: str, size: list[int] | None = None, output=None) -> tuple[tuple[int, int, int], str | None]:
    """(H, W, C) of a module's input, and a note where it was probed. The channels come from its
    first Conv2d or Linear layer; the height and width are `size` where given, else a Linear's
    inputs tell them, or the first side of PROBE_SIZES that gives a (batch, classes) output."""
    torch = frameworks.torch()
    first = next((m for m in module.modules() if is_kind(m, torch.nn.Conv2d) or is_kind(m, torch.nn.Linear)), None)
    if first is None:
        raise UsageError(f"{name}: found no Conv2d or Linear layer to read the input's shape from")
    if is_kind(first, torch.nn.Linear):
        inputs = first.weight.shape[1]
        channels = 3 if inputs % 3 == 0 and _is_square(inputs // 3) else 1
        sizes = [(side := round((inputs / channels) ** 0.5), side)]
    else:
        channels, sizes = first.weight.shape[1] * _groups(first), [(side, side) for side in PROBE_SIZES]
    probing = size is None and len(sizes) > 1
    if size is not None:
        sizes = [tuple(size)]
    dtype = next(module.parameters()).dtype
    failure = ""
    for height, width in sizes:
        try:
            with torch.no_grad():
                result, _ = torch_head.select(module.eval()(torch.zeros(1, channels, height, width, dtype=dtype)),
                                              output)
        except RuntimeError as error:
            failure = f" (at {height}x{width} it raised: {first_line(error)})"
            continue
        if result.dim() == 2:
            note = (f"{name} does not fix its input size; it runs at {height}x{width}, the first of "
                    f"{', '.join(map(str, PROBE_SIZES))} that does: give --input-size HxW for another") if probing else None
            return (height, width, channels), note
    tried = ", ".join(f"{height}x{width}" for height, width in sizes)
    raise UsageError(f"{name}: no input of {channels} channels and {tried} pixels gives a (batch, classes) "
                     f"output{failure}; give the model's input size with --input-size HxW")


def build_from_code(source: str):
    """The nn.Module that `path.py:factory` makes: the file is imported (its folder on the import
    path meanwhile) and `factory` called with no arguments."""
    torch = frameworks.torch()
    file, _, factory = source.rpartition(":")
    path = Path(file)
    if not path.is_file() or not factory:
        raise UsageError(f"-mp {source}: give a Python file and the function or class in it that builds the model, "
                         "as path/to/net.py:factory")
    code = run_file(path, f"-mp {source}")
    build = vars(code).get(factory)
    if not callable(build):
        raise UsageError(f"-mp {source}: {path} has no {factory}; give the function or class that builds the model")
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)  # a factory may import its neighbours when called, too
    try:
        module = build()
    except Exception as error:  # the user's code: its error, in one line
        raise UsageError(f"-mp {source}: building the model failed ({type(error).__name__}: {first_line(error)})") \
            from error
    finally:
        sys.path.remove(folder)
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"-mp {source}: {factory}() returned a {type(module).__name__}, not a torch.nn.Module")
    return module


def is_kind(module, kind) -> bool:
    """isinstance, for TorchScript modules too (they keep their class's name as `original_name`)."""
    return isinstance(module, kind) or getattr(module, "original_name", None) == kind.__name__


def _groups(convolution) -> int:
    """A convolution's groups: each takes weight.shape[1] of its input channels. A traced module
    keeps none of its constants, and is read as one group."""
    return getattr(convolution, "groups", 1)


def _is_square(number: int) -> bool:
    return round(number**0.5) ** 2 == number
