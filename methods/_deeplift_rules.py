"""DeepLIFT's multipliers on PyTorch, through what today's networks compute, each rule keeping
completeness exact: the multipliers times (x - baseline) sum to logit(x) - logit(baseline).

- an elementwise nonlinearity y = f(z): the Rescale rule, the secant (f(z) - f(z0)) / (z - z0)
  between the image's z and the baseline's z0 (the derivative where they are within 1e-10);
- max pooling: each window's change shared between the image's winner and the baseline's;
- a product of two activations z = x y (an elementwise or matrix product: attention's q k^T and
  A v, squeeze-excitation, gates): Δz = ȳ Δx + x̄ Δy, with x̄ and ȳ the means of the image's and
  the baseline's values, which is exact for any bilinear product;
- LayerNorm, GroupNorm, RMSNorm and F.normalize, written as the operations they are: centring
  (linear), a square and a reciprocal root (Rescale), and the product of the centred input and
  the root (the product rule);
- the attention softmax as exp (Rescale) over a sum (linear) times a reciprocal (Rescale), a
  product (the product rule), both shifted by one constant, the larger of the two rows' maxima;
- everything linear (layers, additions, poolings by averages, BatchNorm at inference): its
  gradient.

The baseline goes through the model first, every such operation's inputs kept in call order; the
image's pass then takes its rules against the baseline's values, call by call, and its backward
pass gives the multipliers. An operation no rule covers (a division by an activation; exp, log, a
power or a root of one outside the functions above) makes DeepLIFT not applicable, named. The
shared machinery is methods/_rerouting.py.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.methods._activations import Call, derivative, in_place, name_of
from heatkit.methods._attention import written_attention
from heatkit.methods._rerouting import (activated, functions, normalization_arguments, operands, rerouted, ruled_pass,
                                        scaled_and_shifted, uncovered)

NEAR_ZERO = 1e-10  # captum's threshold below which the secant becomes the derivative


def multipliers(model, images, targets, baseline):
    """(d~ logit / d~ input of each image against the baseline image, (N, C, H, W) as the net takes
    it; the baseline's logits, a vector)."""
    torch = frameworks.torch()
    net = model.torch
    mode = _mode_class()
    with ruled_pass(net):
        recorded = mode(None)
        # as many baselines as images: a network may fold its batch (a Swin, into its windows); with
        # gradients, so that what the baseline computes requires one (activated), as on the image's
        # pass, also inside the rules' own arithmetic (attention written out)
        with recorded:
            reference = net.forward(net.tensor(np.broadcast_to(baseline, images.shape)).requires_grad_())[0].detach()
        inputs = net.tensor(images).requires_grad_()
        ruled = mode(recorded.kept)
        with ruled:
            logits = net.forward(inputs)[torch.arange(len(images)), torch.as_tensor(targets)]
    if ruled.count != len(recorded.kept):
        raise _unpaired()
    (found,) = torch.autograd.grad(logits.sum(), inputs)  # each image's logit has its own inputs
    return found, reference


def _unpaired() -> NotApplicable:
    return NotApplicable("DeepLIFT pairs each operation on the image with the same one on the baseline, and this "
                         "model's forward calls different operations for the two (control flow that depends on the "
                         "input)")


def secant(f, z, z0):
    """(f(z) rerouted to pass back the Rescale rule's slope, f(z0)): the secant slope in float32 at
    least (in float16, a difference below the rounding of z made secants of 1e4 and NaN maps)."""
    torch = frameworks.torch()
    y, y0 = f(z.detach()), f(z0)
    wide = torch.promote_types(z.dtype, torch.float32)
    dz, dy = z.detach().to(wide) - z0.to(wide), y.to(wide) - y0.to(wide)
    close = dz.abs() < NEAR_ZERO
    if torch.finfo(z.dtype).bits == 16:  # a difference within z's own rounding is no secant: the derivative
        close |= dz.abs() <= torch.finfo(z.dtype).eps * (z.detach().to(wide).abs() + z0.to(wide).abs())
    slope = dy / torch.where(close, torch.ones_like(dz), dz)
    if close.any():
        slope = torch.where(close, derivative(f, z.detach()).to(wide), slope)
    return rerouted(y, z, slope.to(z.dtype)), y0


def bilinear(f, x, y, x0, y0):
    """(f(x, y) rerouted to pass back the product rule, f(x0, y0)), for f bilinear (a product)."""
    mean_x, mean_y = ((x.detach() + x0) / 2), ((y.detach() + y0) / 2)
    value = f(x.detach(), y.detach())
    return value.detach() + f(x - x.detach(), mean_y) + f(mean_x, y - y.detach()), f(x0, y0)


@functools.cache
def _mode_class():
    torch = frameworks.torch()
    from torch.overrides import TorchFunctionMode

    F = torch.nn.functional
    covered = functions()

    class MaxPooling(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, pooling, z0, y0):
            y = pooling(z)
            ctx.save_for_backward(z, y, z0, y0)
            ctx.pooling = pooling
            return y

        @staticmethod
        def backward(ctx, signal):
            z, y, z0, y0 = ctx.saved_tensors
            return _max_pooling(z, y, z0, y0, ctx.pooling, signal), None, None, None

    class DeepLIFT(TorchFunctionMode):
        """With `kept` None, the baseline's pass, keeping each ruled operation's inputs; else the
        image's, taking the rules against what was kept."""

        def __init__(self, kept: list | None):
            super().__init__()
            self.recording, self.kept, self.count = kept is None, [] if kept is None else kept, 0

        def paired(self, *tensors):
            """The baseline's values of this operation's inputs (kept now, on the baseline's pass)."""
            if self.recording:
                self.kept.append(tuple(tensor.detach().clone() for tensor in tensors))  # an in-place call follows
                return None
            if self.count >= len(self.kept) or any(kept.shape != tensor.shape
                                                   for kept, tensor in zip(self.kept[self.count], tensors)):
                raise _unpaired()
            self.count += 1
            return self.kept[self.count - 1]

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in covered["activations"] and activated(args[0]):
                return self._activation(func, args, kwargs)
            if func in covered["max_pooling"] and activated(args[0]):
                pooling = Call(func, args[1:], kwargs)
                baseline = self.paired(args[0])
                if self.recording:
                    return func(*args, **kwargs)
                (z0,) = baseline
                return MaxPooling.apply(args[0], pooling, z0, pooling(z0))
            if func in covered["normalizations"] and activated(args[0]):
                baseline = self.paired(args[0])
                return func(*args, **kwargs) if self.recording else _normalized(func, args[0], baseline[0],
                                                                               *args[1:], **kwargs)
            if func in covered["softmax"] and activated(args[0]):
                return self._softmax(func, args, kwargs)
            if func is F.scaled_dot_product_attention:
                return self._attention(*args, **kwargs)
            if func in covered["products"]:
                factors = operands(func, args)
                if sum(activated(factor) for factor in factors) > 1:
                    return self._product(func, args, kwargs, factors)
            operation = uncovered(func, args, activated)
            if operation:
                raise NotApplicable(_no_rule(operation))
            return func(*args, **kwargs)

        def _activation(self, func, args, kwargs):
            z = args[0]
            baseline = self.paired(z)
            activation = Call(func, args[1:], kwargs)
            if self.recording:
                result = activation(z)
            else:
                result, _ = secant(activation, z, baseline[0])
            return z.copy_(result) if in_place(func, args, kwargs) else result

        def _product(self, func, args, kwargs, factors):
            baseline = self.paired(*factors)
            if self.recording:
                return func(*args, **kwargs)
            if len(factors) != 2 or func in (torch.baddbmm, torch.Tensor.baddbmm):
                raise NotApplicable(_no_rule(f"a product of {len(factors)} activations ({name_of(func)})"))
            if func is torch.einsum:
                equation = args[0]
                return bilinear(lambda x, y: torch.einsum(equation, x, y), *factors, *baseline)[0]
            return bilinear(lambda x, y: func(x, y, *args[2:], **kwargs), *factors, *baseline)[0]

        def _softmax(self, func, args, kwargs):
            bound = inspect.signature(F.softmax).bind(*args, **kwargs) if func is F.softmax else None
            x = args[0]
            dim = bound.arguments["dim"] if bound else (args[1] if len(args) > 1 else kwargs["dim"])
            baseline = self.paired(x)
            if self.recording:
                return func(*args, **kwargs)
            return _softmax(x, baseline[0], dim)

        def _attention(self, *args, **kwargs):
            return written_attention(lambda a, b: self.__torch_function__(torch.matmul, (), (a, b)),
                                     lambda scores: self.__torch_function__(torch.softmax, (), (scores, -1)),
                                     *args, **kwargs)

    return DeepLIFT


def _softmax(x, x0, dim: int):
    """softmax(x) with the rules of its parts, against the baseline's x0."""
    torch = frameworks.torch()
    shift = torch.maximum(x.detach().amax(dim, keepdim=True), x0.amax(dim, keepdim=True))
    exponentials, exponentials0 = secant(torch.exp, x - shift, x0 - shift)
    reciprocal, reciprocal0 = secant(torch.reciprocal, exponentials.sum(dim, keepdim=True),
                                     exponentials0.sum(dim, keepdim=True))
    return bilinear(torch.mul, exponentials, reciprocal, exponentials0, reciprocal0)[0]


def _normalized(func, x, x0, *args, **kwargs):
    """A normalization written as centring, a square, a reciprocal root and a product, each with
    its rule, against the baseline's x0; its affine weight and bias after."""
    torch = frameworks.torch()
    F = torch.nn.functional
    given = normalization_arguments(func, x, *args, **kwargs)
    square = functools.partial(torch.pow, exponent=2)
    if func is F.normalize:
        if given["p"] != 2:
            raise NotApplicable(_no_rule(f"F.normalize with p={given['p']}"))
        total, total0 = (value.sum(given["dim"], keepdim=True) for value in secant(square, x, x0))
        eps = given["eps"]
        inverse, inverse0 = secant(lambda t: 1 / t.sqrt().clamp_min(eps), total, total0)
        return bilinear(torch.mul, x, inverse, x0, inverse0)[0]
    if func is F.group_norm:
        groups = given["num_groups"]
        x, x0 = x.reshape(x.shape[0], groups, -1), x0.reshape(x0.shape[0], groups, -1)
        dims = (-1,)
    else:
        dims = tuple(range(-len(given["normalized_shape"]), 0))
    eps = given["eps"] if given["eps"] is not None else torch.finfo(x.dtype).eps
    if func is F.rms_norm:
        centred, centred0 = x, x0
    else:
        centred, centred0 = x - x.mean(dims, keepdim=True), x0 - x0.mean(dims, keepdim=True)
    squares, squares0 = secant(square, centred, centred0)
    root, root0 = secant(torch.rsqrt, squares.mean(dims, keepdim=True) + eps, squares0.mean(dims, keepdim=True) + eps)
    return scaled_and_shifted(func, bilinear(torch.mul, centred, root, centred0, root0)[0], given)


def _max_pooling(z, y, z0, y0, pooling, signal):
    """DeepLIFT's multipliers through a max pooling, which keep the sum (as captum's rule, with
    overlapping windows' shares added, not overwritten): a window's change y - y0 goes to the
    image's winner as max(y, y0) - y0 and to the baseline's winner as y - max(y, y0), and each
    input's multiplier is its share over its own change (the gradient where that change is 0)."""
    torch = frameworks.torch()
    top = torch.maximum(y, y0)
    winners, baseline_winners = pooling.winners(z), pooling.winners(z0).expand_as(y)
    shares = torch.zeros_like(z).flatten(2)
    shares.scatter_add_(2, winners.flatten(2), (signal * (top - y0)).flatten(2))
    shares.scatter_add_(2, baseline_winners.flatten(2), (signal * (y - top)).flatten(2))
    gradient = torch.zeros_like(z).flatten(2).scatter_add_(2, winners.flatten(2), signal.flatten(2))
    dz = (z - z0).flatten(2)
    close = dz.abs() < NEAR_ZERO
    return torch.where(close, gradient, shares / torch.where(close, torch.ones_like(dz), dz)).view_as(z)


def _no_rule(operation: str) -> str:
    return (f"DeepLIFT's rules keep completeness through linear layers, elementwise activations, max pooling, "
            f"products of two activations, normalizations and the attention softmax, and this model computes "
            f"{operation}, which none of them covers")
