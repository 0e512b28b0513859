"""The gradient with each ReLU's backward pass replaced, on the PyTorch model: Guided Backprop
(Springenberg et al. 2015) passes a signal only where it is positive and the ReLU's input was
positive; DeConvNet (Zeiler & Fergus 2014) only where the signal is positive.

Every ReLU is caught where Python calls it (nn.ReLU, F.relu, torch.relu, Tensor.relu and their
in-place forms), through a TorchFunctionMode: captum's module hooks see only nn.ReLU modules,
so a model calling F.relu would get the plain gradient there without a word.
"""
from __future__ import annotations

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable


def relu_backward_gradient(model, image: np.ndarray, target: int, guided: bool, name: str) -> np.ndarray:
    """d logit_target / d input with the modified ReLU backward pass, as an (H, W, C) array."""
    torch = frameworks.torch()
    from torch.overrides import TorchFunctionMode

    net = model.torch
    if net.scripted:
        raise NotApplicable(f"{name} changes each ReLU's backward pass, which TorchScript runs in C++ out of "
                            "Python's reach; give the model as Python code or as a Keras model")
    functional = torch.nn.functional
    out_of_place = {functional.relu, torch.relu, torch.Tensor.relu}
    in_place = {functional.relu_, torch.relu_, torch.Tensor.relu_}

    class ModifiedRelu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            positive = x > 0
            ctx.save_for_backward(positive)
            return x * positive

        @staticmethod
        def backward(ctx, signal):
            (positive,) = ctx.saved_tensors
            passed = signal.clamp(min=0)
            return passed * positive if guided else passed

    class ModifiedRelus(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func not in out_of_place and func not in in_place:
                return func(*args, **kwargs)
            if func in in_place or kwargs.get("inplace", args[1] if len(args) > 1 else False):  # F.relu's flag
                return args[0].copy_(ModifiedRelu.apply(args[0]))
            return ModifiedRelu.apply(args[0])

    inputs = net.tensor(image[None]).requires_grad_()
    with ModifiedRelus():
        logit = net.forward(inputs)[0, target]
    (gradient,) = torch.autograd.grad(logit, inputs)
    return net.array(gradient[0]).transpose(1, 2, 0)
