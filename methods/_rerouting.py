"""What the rule-based methods on PyTorch share (AttnLRP's LRP, methods/_attnlrp.py; DeepLIFT,
methods/_deeplift_rules.py): a forward pass under a TorchFunctionMode that computes as usual and
sends each operation's gradient back by a rule, set up by rerouting (the value forward, a chosen
linear map of an input backward); which tensors are activations (computed from the input, the
parameters held constant); and which functions each kind of rule covers.

nn.MultiheadAttention is written out for the rules to reach its matrix, and each method writes
out F.scaled_dot_product_attention (timm's Attention calls it) the same way
(methods/_attention.py).
"""
from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.methods import _attention
from heatkit.methods._activations import kinds, name_of


@contextmanager
def ruled_pass(net):
    """The net's parameters held constant, and its attention written out, for a ruled pass."""
    if net.scripted:
        raise NotApplicable("the rule changes each operation's backward pass, which TorchScript runs in C++ out of "
                            "Python's reach; give the model as Python code")
    with constant_parameters(net.module), _attention.explicit(net.module):
        yield


@contextmanager
def constant_parameters(module):
    """The module's parameters as constants for the pass, so that what requires a gradient is what
    the input computes: a tensor made from parameters alone (a Swin's relative position bias, its
    logit scale) is then no activation, and a product with it is a linear map."""
    flags = [(parameter, parameter.requires_grad) for parameter in module.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def rerouted(value, through, factor):
    """`value` forward; backward, the gradient reaching it times `factor` passed on to `through` (a
    tensor `value` is computed from), instead of value's own backward pass."""
    return value.detach() + (through - through.detach()) * factor


def activated(x) -> bool:
    """Whether x is an activation: a tensor computed from the input (parameters are constants here)."""
    return isinstance(x, frameworks.torch().Tensor) and x.requires_grad


@functools.cache
def functions() -> dict[str, set]:
    """The functions a rule here changes, and those none covers, by kind."""
    torch = frameworks.torch()
    F, T = torch.nn.functional, torch.Tensor
    found = kinds()
    divisions = {torch.div, T.div, T.div_, T.__truediv__, T.__itruediv__, T.__rtruediv__}
    return {
        "linear": {F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d},
        "activations": found["rectifiers"] | found["smooth"],
        "softmax": {F.softmax, torch.softmax, T.softmax},
        "max_pooling": {F.max_pool2d},
        "normalizations": {F.layer_norm, F.group_norm, F.rms_norm, F.normalize},
        "products": (found["products"] - divisions) | {torch.baddbmm, T.baddbmm},
        "divisions": divisions,
        "refused": {torch.exp, T.exp, torch.log, T.log, torch.pow, T.pow, T.__pow__, T.__rpow__, torch.sqrt, T.sqrt,
                    torch.rsqrt, T.rsqrt, torch.reciprocal, T.reciprocal, torch.var, T.var, torch.std, T.std,
                    torch.norm, T.norm, torch.linalg.vector_norm, F.log_softmax, torch.log_softmax, T.log_softmax,
                    F.softmin, F.instance_norm, F.local_response_norm, F.multi_head_attention_forward},
    }


def operands(func, args) -> list:
    """The tensors a product multiplies (einsum's follow its equation; baddbmm adds its first)."""
    torch = frameworks.torch()
    if func is torch.einsum:
        return list(args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:])
    if func in (torch.baddbmm, torch.Tensor.baddbmm):
        return list(args[1:3])
    return list(args[:2])


def uncovered(func, args, activated) -> str | None:
    """The operation of a call that no rule here covers, as a refusal names it (a division by an
    activation; exp, log, a power or a root of one; the functions "refused" lists), or None."""
    torch = frameworks.torch()
    covered = functions()
    if func in covered["divisions"] and activated(args[0 if func is torch.Tensor.__rtruediv__ else 1]):
        return f"a division by an activation ({name_of(func)})"
    if func in covered["refused"] and any(activated(arg) for arg in args[:2]):
        return name_of(func)
    return None


def normalization_arguments(func, x, *args, **kwargs) -> dict:
    """A normalization call's arguments by name, its defaults filled in."""
    bound = inspect.signature(func).bind(x, *args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def scaled_and_shifted(func, y, given: dict):
    """A normalization's weight and bias applied to its normalised y (a GroupNorm's per channel,
    y regrouped to its input's shape first)."""
    weight, bias = given["weight"], given.get("bias")
    if func is frameworks.torch().nn.functional.group_norm:
        y = y.reshape(given["input"].shape)
        per_channel = (1, -1) + (1,) * (y.dim() - 2)
        weight = None if weight is None else weight.reshape(per_channel)
        bias = None if bias is None else bias.reshape(per_channel)
    return y * (1 if weight is None else weight) + (0 if bias is None else bias)

