"""LRP through what transformers and today's CNNs compute, with AttnLRP's rules (Achtibat et al.,
ICML 2024) as its authors' lxt computes them: the relevance is the input times a gradient whose
backward pass each rule changes, so that what flows back is the rule's relevance over the
activation it reaches.

- linear layers and convolutions: the epsilon rule, z + epsilon sign(z) in the denominator (the
  output's gradient scaled by z / (z + epsilon sign(z)); LRP-Z is epsilon 0);
- LayerNorm, GroupNorm, RMSNorm and F.normalize: the identity rule, the normaliser held constant
  (its gradient stopped), which leaves a linear map of the input;
- elementwise activations (GELU, SiLU, sigmoid, tanh, hard-swish, the rectifiers, ...): the
  identity rule, the relevance passed on whole (the gradient times f(x) / x);
- a product of two activations (attention's q k^T and A v, squeeze-excitation's and a gate's
  x * sigmoid(s)): the uniform rule, an equal share of the relevance to each factor;
- the attention softmax: its gradient, AttnLRP's rule; or, with lrp.attention "cp" (CP-LRP, Ali et
  al. 2022), the attention weights held constant, which gives the values all of the relevance;
- additions, poolings, BatchNorm at inference, reshapes and products with weights: their
  gradient, which shares relevance by contribution.

A bias-free network keeps the logit's relevance whole under these rules, but for AttnLRP's softmax,
whose rule leaves a share where a bias would. An operation no rule here covers (a division by an
activation; exp, log, a power or a root of one) makes the method not applicable, named.
nn.MultiheadAttention is written out for the rules to reach its matrix (methods/_attention.py),
and F.scaled_dot_product_attention, which timm's Attention and other code call, is written out
here. The shared machinery is methods/_rerouting.py.
"""
from __future__ import annotations

import functools

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.methods._activations import in_place
from heatkit.methods._attention import written_attention
from heatkit.methods._rerouting import (activated, functions, normalization_arguments, operands, rerouted, ruled_pass,
                                        scaled_and_shifted, uncovered)

STABLE = 1e-12  # keeps f(x) / x finite at x = 0, where the relevance x times it is 0 anyway


def relevance(model, images, targets, epsilon: float, attention: str):
    """Each image's relevance at every input element, (N, H, W, C), starting from its target's logit."""
    torch = frameworks.torch()
    net = model.torch
    inputs = net.tensor(images).requires_grad_()
    with ruled_pass(net), rules(epsilon, constant_attention=attention == "cp"):
        logits = net.forward(inputs)[torch.arange(len(images)), torch.as_tensor(targets)]
    (gradient,) = torch.autograd.grad(logits.sum(), inputs)
    return net.array(inputs.detach() * gradient).transpose(0, 2, 3, 1)


def rules(epsilon: float, constant_attention: bool):
    """A TorchFunctionMode under which the model's forward pass computes as usual and passes its
    gradient back by the rules above."""
    return _mode_class()(epsilon, constant_attention)


@functools.cache
def _mode_class():
    torch = frameworks.torch()
    from torch.overrides import TorchFunctionMode

    F = torch.nn.functional
    covered = functions()

    class AttnLRP(TorchFunctionMode):
        def __init__(self, epsilon: float, constant_attention: bool):
            super().__init__()
            self.epsilon, self.constant_attention = epsilon, constant_attention

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in covered["linear"]:
                z = func(*args, **kwargs)
                if not self.epsilon or not z.requires_grad:
                    return z
                stabilized = z + self.epsilon * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
                return rerouted(z, z, (z / stabilized).detach())
            if func in covered["activations"] and activated(args[0]):
                return self._identity(func, args, kwargs)
            if func in covered["normalizations"] and activated(args[0]):
                return _normalized(func, *args, **kwargs)
            if func in covered["softmax"]:
                weights = func(*args, **kwargs)
                return weights.detach() if self.constant_attention else weights
            if func is F.scaled_dot_product_attention:
                return self._attention(*args, **kwargs)
            if func in covered["products"]:
                return _uniform(func(*args, **kwargs), operands(func, args))
            operation = uncovered(func, args, activated)
            if operation:
                raise NotApplicable(_no_rule(operation))
            return func(*args, **kwargs)

        @staticmethod
        def _identity(func, args, kwargs):
            """The identity rule: the gradient times f(x) / x; an in-place call writes its result back."""
            x = args[0]
            y = func(x.detach().clone(), *args[1:], **kwargs)
            ratio = y / (x.detach() + STABLE * torch.where(x.detach() >= 0, 1.0, -1.0).to(x.dtype))
            result = rerouted(y, x, ratio)
            return x.copy_(result) if in_place(func, args, kwargs) else result

        def _attention(self, *args, **kwargs):
            def softmax(scores):
                weights = scores.softmax(-1)
                return weights.detach() if self.constant_attention else weights
            return written_attention(lambda a, b: _uniform(a @ b, [a, b]), softmax, *args, **kwargs)

    return AttnLRP


def _uniform(product, factors: list):
    """The uniform rule: each of the product's activated factors gets an equal share."""
    shares = sum(activated(factor) for factor in factors)
    return rerouted(product, product, 1.0 / shares) if shares > 1 else product


def _normalized(func, x, *args, **kwargs):
    """A normalization with its normaliser held constant (the identity rule)."""
    torch = frameworks.torch()
    F = torch.nn.functional
    given = normalization_arguments(func, x, *args, **kwargs)
    if func is F.normalize:
        return x / x.detach().norm(given["p"], given["dim"], keepdim=True).clamp_min(given["eps"])
    if func is F.group_norm:
        x, dims = x.reshape(x.shape[0], given["num_groups"], -1), (-1,)
    else:
        dims = tuple(range(-len(given["normalized_shape"]), 0))
    if func is F.rms_norm:
        eps = torch.finfo(x.dtype).eps if given["eps"] is None else given["eps"]
        y = x / (x.detach().pow(2).mean(dims, keepdim=True) + eps).sqrt()
    else:
        normaliser = (x.detach().var(dims, unbiased=False, keepdim=True) + given["eps"]).sqrt()
        y = (x - x.mean(dims, keepdim=True)) / normaliser
    return scaled_and_shifted(func, y, given)


def _no_rule(operation: str) -> str:
    return (f"AttnLRP's rules cover linear layers, normalizations, elementwise activations, products of two "
            f"activations and the attention softmax, and this model computes {operation}, which none of them covers")
