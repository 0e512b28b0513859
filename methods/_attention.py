"""A vision transformer's attention, block by block, on PyTorch: each attention module's
softmax(q k^T / sqrt(d)) for one image, (heads, N, N) over its N tokens, and the target logit's
gradient with respect to it; and the grid of patch tokens.

Attention is read from timm's `Attention` (its explicit path, not the fused kernel that never
forms the matrix) and from torch's `nn.MultiheadAttention` (torchvision's ViT), which is run here
as the same computation written out, so that the matrix is a tensor the output is computed from.
"""
from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable

NO_ATTENTION = "the model has no attention layers (timm's Attention or torch's nn.MultiheadAttention)"
NO_HOOKS = ("attention is read with forward hooks, which a TorchScript module, run in C++, never calls; give the "
            "model as Python code")


@dataclass(frozen=True)
class Attention:
    maps: list[np.ndarray]  # per block, (heads, N, N)
    gradients: list[np.ndarray]  # per block, d logit / d map
    grid: tuple[int, int]  # patch tokens per side
    prefix: int  # tokens before the patch tokens (the class token first)


def modules(net) -> list:
    """The attention modules of the net, in the order they are registered."""
    if net.scripted:
        raise NotApplicable(NO_HOOKS)
    found = [module for module in net.module.modules() if is_attention(module)]
    if not found:
        raise NotApplicable(NO_ATTENTION)
    return found


def record(model, image: np.ndarray, target: int) -> Attention:
    """Every block's attention on the image and the target logit's gradients at them."""
    torch = frameworks.torch()
    net = model.torch
    attention, grid, maps = modules(net), token_grid(model), []
    with explicit(attention, maps.append):
        logits = net.forward(net.tensor(image[None]).requires_grad_())
    gradients = torch.autograd.grad(logits[0, target], maps)
    tokens = maps[0].shape[-1]
    if tokens < grid[0] * grid[1]:
        raise NotApplicable(f"the model's {tokens} tokens are not the grid of patches of its first convolution")
    return Attention([net.array(m[0]) for m in maps], [net.array(g[0]) for g in gradients], grid,
                     tokens - grid[0] * grid[1])


def default_layer(net) -> str | None:
    """The token layer Grad-CAM explains by default on a transformer: the normalization feeding the
    last attention module (timm's blocks[-1].norm1, torchvision's ln_1), whose tokens still carry
    the image (after the last block only the class token counts); None without attention."""
    torch = frameworks.torch()
    named = list(net.module.named_modules())
    last = max((i for i, (_, module) in enumerate(named) if is_attention(module)), default=None)
    if last is None:
        return None
    return next((name for name, module in reversed(named[:last]) if isinstance(module, torch.nn.LayerNorm)), None)


def tokens_as_grid(tokens: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(N, D) tokens as the (h, w, D) grid of the patch tokens, the prefix tokens dropped."""
    return tokens[tokens.shape[0] - grid[0] * grid[1]:].reshape(*grid, tokens.shape[-1])


def token_grid(model) -> tuple[int, int]:
    """The patch grid of a transformer: its first convolution's output size (the patch embedding),
    from one forward pass, cached."""
    torch = frameworks.torch()
    net = model.torch

    def measure():
        sides = []
        embedding = next((m for m in net.module.modules() if isinstance(m, torch.nn.Conv2d)), None)
        if embedding is None:
            raise NotApplicable("the model's tokens have no grid of patches: no convolution embeds them")
        hook = embedding.register_forward_hook(lambda _, __, output: sides.extend(output.shape[-2:]))
        try:
            with torch.no_grad():
                net.forward(net.tensor(np.zeros((1, *model.input_shape))))
        finally:
            hook.remove()
        return int(sides[0]), int(sides[1])
    return net.once("token grid", measure)


def is_attention(module) -> bool:
    return isinstance(module, frameworks.torch().nn.MultiheadAttention) or _is_timm_attention(module)


def _is_timm_attention(module) -> bool:
    return all(hasattr(module, name) for name in ("qkv", "num_heads", "attn_drop", "fused_attn"))


@contextmanager
def explicit(attention: list, keep=None):
    """Each attention module computing its matrix as a tensor (passed to `keep`, where given, as it
    is made), out of the operations a TorchFunctionMode sees."""
    torch = frameworks.torch()
    with ExitStack() as stack:
        for module in attention:
            if isinstance(module, torch.nn.MultiheadAttention):
                module.forward = _written_out(module, keep)
                stack.callback(delattr, module, "forward")
            else:
                fused, module.fused_attn = module.fused_attn, False
                stack.callback(setattr, module, "fused_attn", fused)
                if keep is not None:
                    hook = module.attn_drop.register_forward_hook(lambda _, __, output: keep(output))
                    stack.callback(hook.remove)
        yield


def _written_out(module, keep):
    """nn.MultiheadAttention's self-attention at inference, written out."""
    F = frameworks.torch().nn.functional

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not (query is key is value and module.batch_first and module._qkv_same_embed_dim) or \
                key_padding_mask is not None or attn_mask is not None or module.bias_k is not None:
            raise NotApplicable("attention is read from batch-first self-attention without masks; this "
                                "nn.MultiheadAttention is called otherwise")
        batch, tokens, width = query.shape
        heads = module.num_heads
        q, k, v = F.linear(query, module.in_proj_weight, module.in_proj_bias).reshape(
            batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        attention = (q @ k.transpose(-2, -1) / math.sqrt(width // heads)).softmax(-1)
        if keep is not None:
            keep(attention)
        return module.out_proj((attention @ v).transpose(1, 2).reshape(batch, tokens, width)), None
    return forward
