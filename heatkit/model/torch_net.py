"""A PyTorch image classifier fed NHWC numpy batches: a twin from its card, a TorchScript file,
or a module given as an object."""
from __future__ import annotations

import pickle
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np

from heatkit.base import frameworks
from heatkit.base.engine import AffineSplit
from heatkit.base.errors import UsageError
from heatkit.model import twins
from heatkit.model.files import archive_kind, first_line

PROBE_SIZES = (224, 227, 32, 28, 64, 128, 256, 299)  # tried for a conv net's input side


class TorchNet:
    """A PyTorch classifier fed NHWC numpy batches, on `device`, in its own float type. Its module
    returns logits, or probabilities (`softmax_inside`: then their log stands for the logits)."""

    def __init__(self, module, input_shape: tuple[int, int, int], device: str = "cpu"):
        self.torch = frameworks.torch()
        self.device = device
        self.module = module.to(device).eval()
        self.dtype = next(self.module.parameters()).dtype
        self.input_shape = input_shape
        height, width, channels = input_shape
        self._chw = (channels, height, width)
        with self.torch.no_grad():  # a module that ends in a softmax gives rows of non-negative numbers summing to 1
            output = self.module(self.tensor(np.stack([np.zeros(input_shape), np.full(input_shape, 0.5)])))
        self.softmax_inside = bool((output >= 0).all() and self.torch.allclose(output.sum(1), output.new_ones(2)))

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
                             "rebuild it with create_model.py") from None
        return cls(module, tuple(card["input_shape"]), device)

    @classmethod
    def load_script(cls, path: Path, device: str = "cpu", input_size: list[int] | None = None) -> "TorchNet":
        """A TorchScript classifier, converted to float64."""
        torch = frameworks.torch()
        if archive_kind(path) == "pickle":
            raise UsageError(f"{path} holds a state dict or a pickled object, not TorchScript; save the model "
                             "with torch.jit.script(model).save(path), or keep a create_model.py twin beside its card")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as error:
            raise UsageError(f"cannot load {path} as TorchScript ({first_line(error)}); save the model with "
                             "torch.jit.script(model).save(path), or give a create_model.py twin with its card") from None
        module = module.double().eval()
        return cls(module, input_shape(module, str(path), input_size), device)

    @classmethod
    def wrap(cls, module, device: str = "cpu", input_size: list[int] | None = None) -> "TorchNet":
        """A module the caller built in this process, in its own float type."""
        return cls(module, input_shape(module, f"the {type(module).__name__} given", input_size), device)

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


def input_shape(module, name: str, size: list[int] | None = None) -> tuple[int, int, int]:
    """(H, W, C) of a module's input. The channels come from its first Conv2d or Linear layer; the
    height and width are `size` where given, else a Linear's inputs tell them, or the first side of
    PROBE_SIZES that gives a (batch, classes) output."""
    torch = frameworks.torch()
    first = next((m for m in module.modules() if _is(m, torch.nn.Conv2d) or _is(m, torch.nn.Linear)), None)
    if first is None:
        raise UsageError(f"{name}: found no Conv2d or Linear layer to read the input's shape from")
    if _is(first, torch.nn.Linear):
        inputs = first.weight.shape[1]
        channels = 3 if inputs % 3 == 0 and _is_square(inputs // 3) else 1
        sizes = [(side := round((inputs / channels) ** 0.5), side)]
    else:
        channels, sizes = first.weight.shape[1], [(side, side) for side in PROBE_SIZES]
    if size is not None:
        sizes = [tuple(size)]
    dtype = next(module.parameters()).dtype
    for height, width in sizes:
        try:
            with torch.no_grad():
                output = module(torch.zeros(1, channels, height, width, dtype=dtype))
        except RuntimeError:
            continue
        if output.dim() == 2:
            return height, width, channels
    tried = ", ".join(f"{height}x{width}" for height, width in sizes)
    raise UsageError(f"{name}: no input of {channels} channels and {tried} pixels gives a (batch, classes) output; "
                     "give the model's input size with --input-size HxW")


def _is(module, kind) -> bool:
    """isinstance, for TorchScript modules too (they keep their class's name as `original_name`)."""
    return isinstance(module, kind) or getattr(module, "original_name", None) == kind.__name__


def _is_square(number: int) -> bool:
    return round(number**0.5) ** 2 == number
