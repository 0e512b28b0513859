"""The backward pass of a PyTorch model's activations, replaced by a rule: Guided Backprop's and
DeConvNet's for the rectifiers and, as the literature extends them, for smooth activations; and
which functions are what (kinds), for these rules and for DeepLIFT's and AttnLRP's
(methods/_deeplift_rules.py, methods/_attnlrp.py).

Activations are caught where Python calls them (an nn.ReLU module, F.relu, torch.relu,
Tensor.relu, in place or not, and their kin), through a TorchFunctionMode: module hooks, as
captum uses, see only activation modules, so they miss functional calls and fail when one module
is called twice (torchvision's ResNets reuse theirs). TorchScript runs its forward in C++, where
no mode applies: the rules are not applicable there. The model's final softmax or sigmoid is cut
off before any of this sees it (heatkit/model/torch_head.py).
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Callable

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.base.run_state import current



@functools.cache
def kinds() -> dict[str, set]:
    """The functions Python code calls, by what they compute: piecewise-linear "rectifiers",
    "smooth" elementwise activations, "attention" (the softmax and attention's own functions),
    "normalizations" by the input's own statistics, and "products" (of two activations where
    both operands depend on the input: attention, gating). The guided rules, zennit's graph and
    the rules of AttnLRP and DeepLIFT (methods/_rerouting.py) each take or refuse them by kind."""
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

    def winners(self, x):
        """For a max pooling: each output's input, as its index in the input's flattened (H, W)."""
        return self.func(x, *self.args, **{**self.kwargs, "return_indices": True})[1]


def in_place(func, args, kwargs) -> bool:
    """Whether an activation call writes its result into its input: an in-place function
    (torch.relu_, Tensor.sigmoid_, F.elu_) or its `inplace` argument set (nn.ReLU(inplace=True))."""
    name = getattr(func, "__name__", "")
    if name.endswith("_") and not name.endswith("__"):
        return True
    parameters = _parameters(func)
    if "inplace" not in parameters:
        return False
    return bool(kwargs.get("inplace", args[parameters.index("inplace")] if len(args) > parameters.index("inplace")
                           else False))


@functools.cache
def _parameters(func) -> list[str]:
    try:
        return list(inspect.signature(func).parameters)
    except (TypeError, ValueError):  # a builtin without a signature: no inplace argument
        return []


def name_of(func) -> str:
    return getattr(func, "__name__", str(func)).strip("_")


def _rectifier_rules(model, name: str, rule: Callable):
    """A context in which the model's elementwise activations compute as usual but pass gradients
    back by rule(x, activation, signal) -> the gradient at x, `activation` the Call; an attention
    softmax, which no such rule covers, makes the method not applicable."""
    torch = frameworks.torch()
    from torch.overrides import TorchFunctionMode

    if model.torch.scripted:
        raise NotApplicable(f"{name} changes each activation's backward pass, which TorchScript runs in C++ out of "
                            "Python's reach; give the model as Python code or as a Keras model")
    found = kinds()
    caught = found["rectifiers"] | found["smooth"]

    class Rule(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, activation):
            y = activation(x)
            ctx.save_for_backward(x.clone())  # a copy: an in-place call overwrites x afterwards
            ctx.activation = activation
            return y

        @staticmethod
        def backward(ctx, signal):
            (x,) = ctx.saved_tensors
            return rule(x, ctx.activation, signal), None

    class Replaced(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in found["attention"]:
                raise NotApplicable(f"{name} has a rule for elementwise activations, and this model also computes "
                                    f"{name_of(func)}, which has none")
            if func not in caught:
                return func(*args, **kwargs)
            result = Rule.apply(args[0], Call(func, args[1:], kwargs))
            return args[0].copy_(result) if in_place(func, args, kwargs) else result

    return Replaced()


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
    where a ReLU's input was positive, 0 where it was not; a LeakyReLU's slope below 0). A smooth
    activation (GELU, SiLU, ...) takes the rule the literature uses for one: DeConvNet's as is;
    Guided Backprop's where its input is positive, nothing where it is not, as a ReLU's; the run
    says so in a note."""
    torch = frameworks.torch()
    net = model.torch
    smooth, met = kinds()["smooth"], set()

    def rule(x, activation, signal):
        passed = signal.clamp(min=0)
        if not guided:
            return passed
        if activation.func in smooth:
            met.add(name_of(activation.func))
            passed = passed * (x > 0)
        return passed * derivative(activation, x)

    inputs = net.tensor(images).requires_grad_()
    with _rectifier_rules(model, name, rule):
        logits = net.forward(inputs)[torch.arange(len(images)), torch.as_tensor(targets)]
    (gradient,) = torch.autograd.grad(logits.sum(), inputs)  # each image's logit has its own inputs
    if met:
        current().note(smooth_rule_note(name, sorted(met)))
    return net.array(gradient).transpose(0, 2, 3, 1)


def smooth_rule_note(method: str, activations: list[str]) -> str:
    return (f"{method}: {', '.join(activations)} took the guided rule the literature uses for smooth activations, "
            "the positive part of the signal where the input is positive, times the slope")
