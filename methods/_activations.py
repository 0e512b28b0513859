"""The backward pass of a PyTorch model's activations, replaced by a rule: Guided Backprop's and
DeConvNet's for ReLUs, DeepLIFT's Rescale rule for every elementwise nonlinearity.

Activations are caught where Python calls them (an nn.ReLU module, F.relu, torch.relu,
Tensor.relu, in place or not, and their kin), through a TorchFunctionMode: module hooks, as
captum uses, see only activation modules, so they miss functional calls and fail when one module
is called twice (torchvision's ResNets reuse theirs). TorchScript runs its forward in C++, where
no mode applies: the rules are not applicable there.
"""
from __future__ import annotations

from typing import Callable

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable


def _activations(relu_only: bool) -> set:
    """The elementwise activation functions Python code calls (an nn module calls one of these)."""
    torch = frameworks.torch()
    F, T = torch.nn.functional, torch.Tensor
    relu = {F.relu, torch.relu, T.relu, F.relu_, torch.relu_, T.relu_}
    if relu_only:
        return relu
    return relu | {F.relu6, F.hardtanh, F.hardtanh_, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.selu, F.celu,
                   F.gelu, F.silu, F.mish, F.softplus, F.hardswish, F.hardsigmoid, F.sigmoid, torch.sigmoid,
                   T.sigmoid, torch.sigmoid_, T.sigmoid_, F.tanh, torch.tanh, T.tanh, torch.tanh_, T.tanh_}


def replaced(model, name: str, rule: Callable, relu_only: bool):
    """A context in which the model's activations compute as usual but pass gradients back by
    rule(x, y, activation, signal) -> the gradient at x. With relu_only, only ReLUs are caught."""
    torch = frameworks.torch()
    from torch.overrides import TorchFunctionMode

    if model.torch.scripted:
        raise NotApplicable(f"{name} changes each activation's backward pass, which TorchScript runs in C++ out of "
                            "Python's reach; give the model as Python code or as a Keras model")
    caught = _activations(relu_only)

    class Rule(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, activation):
            y = activation(x)
            ctx.save_for_backward(x.clone(), y)  # a copy: an in-place call overwrites x afterwards
            ctx.activation = activation
            return y

        @staticmethod
        def backward(ctx, signal):
            x, y = ctx.saved_tensors
            return rule(x, y, ctx.activation, signal), None

    class Replaced(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func not in caught:
                return func(*args, **kwargs)

            def activation(x):  # on a copy: the call may be in place
                return func(x.clone(), *args[1:], **kwargs)

            probe = args[0].detach().clone()
            in_place = func(probe, *args[1:], **kwargs) is probe
            result = Rule.apply(args[0], activation)
            return args[0].copy_(result) if in_place else result

    return Replaced()


def derivative(activation, x):
    """activation'(x), by autograd."""
    torch = frameworks.torch()
    with torch.enable_grad():
        inputs = x.detach().requires_grad_()
        (gradient,) = torch.autograd.grad(activation(inputs).sum(), inputs)
    return gradient


def relu_rule_gradient(model, image, target: int, guided: bool, name: str):
    """d logit / d input as an (H, W, C) array, each ReLU passing back only positive signals
    (DeConvNet), and only where its input was positive (Guided Backprop)."""
    torch = frameworks.torch()
    net = model.torch

    def rule(x, y, activation, signal):
        passed = signal.clamp(min=0)
        return passed * (x > 0) if guided else passed

    inputs = net.tensor(image[None]).requires_grad_()
    with replaced(model, name, rule, relu_only=True):
        logit = net.forward(inputs)[0, target]
    (gradient,) = torch.autograd.grad(logit, inputs)
    return net.array(gradient[0]).transpose(1, 2, 0)
