"""The backward pass of a PyTorch model's activations, replaced by a rule: Guided Backprop's and
DeConvNet's for the piecewise-linear rectifiers, DeepLIFT's Rescale rule for every elementwise
nonlinearity; and the operations where no such rule is exact, which make the method not applicable.

Activations are caught where Python calls them (an nn.ReLU module, F.relu, torch.relu,
Tensor.relu, in place or not, and their kin), through a TorchFunctionMode: module hooks, as
captum uses, see only activation modules, so they miss functional calls and fail when one module
is called twice (torchvision's ResNets reuse theirs). TorchScript runs its forward in C++, where
no mode applies: the rules are not applicable there. The model's final softmax or sigmoid is cut
off before any of this sees it (heatkit/model/torch_head.py).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable

RECTIFIER_NAMES = "ReLU, ReLU6, Hardtanh, LeakyReLU, PReLU, Hardsigmoid"


@functools.cache
def kinds() -> dict[str, set]:
    """The functions Python code calls, by what the rules make of them: piecewise-linear
    "rectifiers", "smooth" elementwise activations (DeepLIFT's secant applies, no guided rule),
    "attention" (softmax: neither rule applies), "normalizations" by the input's own statistics
    (a guided rule passes them as a gradient does; no secant is exact through them), and
    "products" (not exact where two operands depend on the input: attention, gating)."""
    torch = frameworks.torch()
    F, T = torch.nn.functional, torch.Tensor
    return {
        "rectifiers": {F.relu, torch.relu, T.relu, F.relu_, torch.relu_, T.relu_, F.relu6, F.hardtanh, F.hardtanh_,
                       F.leaky_relu, F.leaky_relu_, F.prelu, F.hardsigmoid},
        "smooth": {F.elu, F.elu_, F.selu, F.celu, F.gelu, F.silu, F.mish, F.softplus, F.hardswish, F.logsigmoid,
                   F.softsign, F.tanhshrink, F.sigmoid, torch.sigmoid, T.sigmoid, torch.sigmoid_, T.sigmoid_, F.tanh,
                   torch.tanh, T.tanh, torch.tanh_, T.tanh_},
        "attention": {F.softmax, torch.softmax, T.softmax, F.log_softmax, torch.log_softmax, T.log_softmax,
                      F.softmin, F.scaled_dot_product_attention, F.multi_head_attention_forward},
        "normalizations": {F.layer_norm, F.group_norm, F.instance_norm, F.local_response_norm, F.normalize,
                           F.rms_norm},
        "products": {torch.mul, T.mul, T.__mul__, T.__rmul__, torch.matmul, T.matmul, T.__matmul__, torch.bmm, T.bmm,
                     torch.mm, T.mm, torch.einsum, torch.div, T.div, T.__truediv__, T.__rtruediv__},
        "poolings": {F.max_pool2d},  # DeepLIFT's rule for max pooling (deeplift.py)
    }


@dataclass(frozen=True)
class Call:
    """An activation (or pooling) call caught in a forward pass: its function and its arguments
    after the input; called on another input, it computes the same operation on a copy of it (the
    call may be in place)."""

    func: Callable
    args: tuple
    kwargs: dict

    def __call__(self, x):
        return self.func(x.clone(), *self.args, **self.kwargs)

    @property
    def pooling(self) -> bool:
        return self.func in kinds()["poolings"]

    def winners(self, x):
        """For a max pooling: each output's input, as its index in the input's flattened (H, W)."""
        return self.func(x, *self.args, **{**self.kwargs, "return_indices": True})[1]


def name_of(func) -> str:
    return getattr(func, "__name__", str(func)).strip("_")


def replaced(model, name: str, rule: Callable, rectifiers_only: bool, seen: Callable | None = None):
    """A context in which the model's activations compute as usual but pass gradients back by
    rule(x, y, activation, signal, index) -> the gradient at x, `activation` the Call and `index`
    counting the activation calls of the forward pass in order; seen(index, x, y), where given, is
    told of each call. With rectifiers_only (Guided Backprop, DeConvNet), the rectifiers take the
    rule and any other nonlinearity makes the method not applicable; else (DeepLIFT) every
    elementwise activation and max pooling takes it, and operations no such rule makes exact (a
    softmax, a normalization, a product of two activations) do."""
    torch = frameworks.torch()
    from torch.overrides import TorchFunctionMode

    if model.torch.scripted:
        raise NotApplicable(f"{name} changes each activation's backward pass, which TorchScript runs in C++ out of "
                            "Python's reach; give the model as Python code or as a Keras model")
    found = kinds()
    caught = found["rectifiers"] if rectifiers_only else found["rectifiers"] | found["smooth"] | found["poolings"]
    refused = found["smooth"] | found["attention"] if rectifiers_only else found["attention"] | found["normalizations"]

    class Rule(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, activation, index):
            y = activation(x)
            x = x.clone()  # a copy: an in-place call overwrites x afterwards
            ctx.save_for_backward(x, y)
            ctx.activation, ctx.index = activation, index
            if seen is not None:
                seen(index, x, y)
            return y

        @staticmethod
        def backward(ctx, signal):
            x, y = ctx.saved_tensors
            return rule(x, y, ctx.activation, signal, ctx.index), None, None

    class Replaced(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in refused or (not rectifiers_only and func in found["products"] and _computed(args) > 1):
                raise NotApplicable(_no_rule(name, func, rectifiers_only))
            if func not in caught:
                return func(*args, **kwargs)
            activation = Call(func, args[1:], kwargs)
            probe = args[0].detach().clone()
            in_place = func(probe, *args[1:], **kwargs) is probe
            result = Rule.apply(args[0], activation, self.calls)
            self.calls += 1
            return args[0].copy_(result) if in_place else result

    return Replaced()


def _computed(args) -> int:
    """How many of the arguments are tensors computed from the input (parameters and constants have
    no grad_fn)."""
    torch = frameworks.torch()
    return sum(isinstance(arg, torch.Tensor) and arg.grad_fn is not None for arg in args)


def _no_rule(method: str, func, rectifiers_only: bool) -> str:
    operation = name_of(func)
    if rectifiers_only:
        return (f"{method} has a rule for the piecewise-linear rectifiers ({RECTIFIER_NAMES}), and this model also "
                f"computes {operation}, which has none")
    what = "a product of two activations" if func in kinds()["products"] else operation
    return (f"{method}'s Rescale rule is exact through linear layers and elementwise activations, and this model "
            f"computes {what} ({operation}), as attention, normalization or gating do: its map would not sum to "
            "the logit's change")


def derivative(activation, x):
    """activation'(x), by autograd."""
    torch = frameworks.torch()
    with torch.enable_grad():
        inputs = x.detach().requires_grad_()
        (gradient,) = torch.autograd.grad(activation(inputs).sum(), inputs)
    return gradient


def rectifier_rule_gradient(model, images, targets, guided: bool, name: str):
    """d logit / d input of each image, explaining its target, as (N, H, W, C), each rectifier
    passing back only positive signals (DeConvNet), times its local slope (Guided Backprop: 1
    where a ReLU's input was positive, 0 where it was not; a LeakyReLU's slope below 0)."""
    torch = frameworks.torch()
    net = model.torch

    def rule(x, y, activation, signal, index):
        passed = signal.clamp(min=0)
        return passed * derivative(activation, x) if guided else passed

    inputs = net.tensor(images).requires_grad_()
    with replaced(model, name, rule, rectifiers_only=True):
        logits = net.forward(inputs)[torch.arange(len(images)), torch.as_tensor(targets)]
    (gradient,) = torch.autograd.grad(logits.sum(), inputs)  # each image's logit has its own inputs
    return net.array(gradient).transpose(0, 2, 3, 1)
