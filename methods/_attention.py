"""A transformer's attention on PyTorch, found from what its forward pass computes: every softmax
whose weights then multiply values, softmax(q k^T) v, however the code writes it (a module's own
product; F.scaled_dot_product_attention, written out here so that the matrix forms; torch's
nn.MultiheadAttention, written out the same way); for one image, with the target logit's gradient
at each; and where each of its queries and keys sits among the image's tokens.

Global attention (a ViT's) mixes all of a block's tokens: its prefix tokens (the class token
first) and the grid of patch tokens that the first convolution (the patch embedding) makes.
Windowed attention (Swin's, in torchvision and timm) mixes the tokens of each window of its block's
grid after the cyclic shift; the window positions are mapped back to the grid from the block's
window size and shift, in the order its own code pads, shifts and partitions (-1 marks padding).
"""
from __future__ import annotations

import functools
import math
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable

NO_ATTENTION = "the model computes no attention: no softmax whose weights multiply values, softmax(q k^T) v"
NO_HOOKS = ("attention is read from the forward pass in Python, which a TorchScript module, run in C++, never "
            "calls; give the model as Python code")


@dataclass(frozen=True)
class Mixing:
    """One attention call on one image: per window, its heads' weights and the target logit's
    gradient at them, (windows, heads, n, n); and the token each window position is among its
    stage's prefix + height x width tokens, (windows, n), -1 for padding."""
    weights: np.ndarray
    gradients: np.ndarray | None
    tokens: np.ndarray
    grid: tuple[int, int]


@dataclass(frozen=True)
class Attention:
    calls: list[Mixing]  # in the order the forward pass makes them
    grid: tuple[int, int]  # the patch tokens per side of the first call's stage
    prefix: int  # tokens before the patch tokens (the class token first)


def record(model, image: np.ndarray, target: int | None) -> Attention:
    """Every attention call on the image, with the target logit's gradients at its weights (none
    where target is None)."""
    torch = frameworks.torch()
    net = model.torch
    with recording(model) as recorder:
        logits = net.forward(net.tensor(image[None]).requires_grad_())
    found, grid = recorder.found, token_grid(model)
    gradients = [None] * len(found)
    if target is not None:
        gradients = torch.autograd.grad(logits[0, target], [weights for weights, _ in found])
    counts = {weights.shape[-1] for weights, window in found if window is None}
    if len(counts) > 1 or min(counts, default=grid[0] * grid[1]) < grid[0] * grid[1]:
        raise NotApplicable(f"the model's attention mixes {sorted(counts)} tokens, which are not the {grid[0]} x "
                            f"{grid[1]} patches of its first convolution after a fixed number of prefix tokens")
    calls = [_mixing(net, weights, gradient, window, grid) for (weights, window), gradient in zip(found, gradients)]
    return Attention(calls, grid, counts.pop() - grid[0] * grid[1] if counts else 0)


@contextmanager
def recording(model):
    """The forward passes inside find the model's attention; the recorder's `found` lists each
    call's weights (a tensor in the graph) with its window's token map, or None for global."""
    net = model.torch
    if net.scripted:
        raise NotApplicable(NO_HOOKS)
    recorder = _recorder_class()()
    with explicit(net.module), _windows(net.module, recorder), recorder:
        yield recorder
    if not recorder.found:
        raise NotApplicable(NO_ATTENTION)


def _mixing(net, weights, gradient, window, grid) -> Mixing:
    array = net.array(weights)
    if array.ndim == 3:  # (batch x heads, n, n), as older code multiplies with bmm
        array = array[None]
    gradients = None if gradient is None else net.array(gradient).reshape(array.shape)
    if window is None:
        return Mixing(array[:1], None if gradients is None else gradients[:1], np.arange(array.shape[-1])[None], grid)
    stage, tokens = window
    if len(tokens) != array.shape[0] or tokens.shape[1] != array.shape[-1]:
        raise NotApplicable(f"a windowed attention's weights {array.shape} do not fit its {len(tokens)} windows of "
                            f"{tokens.shape[1]} tokens")
    return Mixing(array, gradients, tokens, stage)


def window_tokens(grid: tuple[int, int], window, shift, rolled_first: bool) -> np.ndarray:
    """Each window position's token on the grid, (windows, window area), -1 where padding: the
    grid padded to whole windows and cyclically shifted back by `shift` (timm shifts first and
    pads after; torchvision pads first and shifts no side that one window covers), then cut into
    windows row by row, each read row by row."""
    index = np.arange(grid[0] * grid[1]).reshape(grid)
    padding = ((0, -grid[0] % window[0]), (0, -grid[1] % window[1]))
    if rolled_first:
        index = np.pad(np.roll(index, (-shift[0], -shift[1]), (0, 1)), padding, constant_values=-1)
    else:
        index = np.pad(index, padding, constant_values=-1)
        shift = [0 if window[axis] >= index.shape[axis] else shift[axis] for axis in (0, 1)]
        index = np.roll(index, (-shift[0], -shift[1]), (0, 1))
    rows, columns = index.shape[0] // window[0], index.shape[1] // window[1]
    return index.reshape(rows, window[0], columns, window[1]).transpose(0, 2, 1, 3).reshape(-1, window[0] * window[1])


@contextmanager
def _windows(module, recorder):
    """Forward hooks that tell the recorder, while a Swin block runs, how its windows sit on its
    (batch, height, width, channels) input."""
    kinds = _windowed_kinds()
    with ExitStack() as stack:
        for inner in module.modules():
            rolled_first = next((first for kind, first in kinds if isinstance(inner, kind)), None)
            if rolled_first is None:
                continue

            def enter(block, args, rolled_first=rolled_first):
                grid = tuple(args[0].shape[1:3])
                recorder.window = grid, window_tokens(grid, block.window_size, block.shift_size, rolled_first)

            stack.callback(inner.register_forward_pre_hook(enter).remove)
            stack.callback(inner.register_forward_hook(lambda *_: setattr(recorder, "window", None)).remove)
        yield


def _windowed_kinds() -> list[tuple[type, bool]]:
    """The modules that window attention, each with whether it shifts before padding (timm) or after."""
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    kinds = [(ShiftedWindowAttention, False)]
    try:
        from timm.models.swin_transformer import SwinTransformerBlock
        from timm.models.swin_transformer_v2 import SwinTransformerV2Block
    except ImportError:  # timm is optional
        return kinds
    return kinds + [(SwinTransformerBlock, True), (SwinTransformerV2Block, True)]


@functools.cache
def _recorder_class():
    torch = frameworks.torch()
    from torch.overrides import TorchFunctionMode

    F, T = torch.nn.functional, torch.Tensor
    softmaxes = {F.softmax, torch.softmax, T.softmax}
    dropouts = {F.dropout, torch.dropout}
    products = {torch.matmul, T.matmul, T.__matmul__, torch.bmm, T.bmm}

    class Recorder(TorchFunctionMode):
        """Keeps each softmax over the last axis whose square weights (kept through dropout) are
        the left factor of a product."""

        def __init__(self):
            super().__init__()
            self.found, self.window, self._softmaxed = [], None, []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is F.scaled_dot_product_attention:
                return written_attention(lambda a, b: a @ b, self._weighed, *args, **kwargs)
            result = func(*args, **kwargs)
            if func in softmaxes and _last_axis(args, kwargs, result):
                self._softmaxed.append(result)
            elif func in dropouts and self._is_softmaxed(args[0]):
                self._softmaxed.append(result)
            elif func in products and self._is_softmaxed(args[0]) and args[0].shape[-1] == args[0].shape[-2]:
                self.found.append((args[0], self.window))
            return result

        def _weighed(self, scores):
            weights = scores.softmax(-1)
            self.found.append((weights, self.window))
            return weights

        def _is_softmaxed(self, tensor) -> bool:
            return any(tensor is kept for kept in self._softmaxed)

    return Recorder


def _last_axis(args, kwargs, result) -> bool:
    axis = kwargs.get("dim", args[1] if len(args) > 1 else None)
    return axis is not None and axis % result.dim() == result.dim() - 1


def written_attention(product, softmax, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                      enable_gqa=False):
    """F.scaled_dot_product_attention written out at inference, its two products and its softmax
    by the given `product(a, b)` and `softmax(scores)` (a rule-based method's ruled ones)."""
    torch = frameworks.torch()
    if enable_gqa:
        raise NotApplicable("grouped-query attention (enable_gqa) is not written out here")
    scores = product(q, k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if is_causal:
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return product(softmax(scores), v)


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
    """timm's Attention and torch's nn.MultiheadAttention: the modules after whose last one
    Grad-CAM reads a transformer's tokens, one a block."""
    return isinstance(module, frameworks.torch().nn.MultiheadAttention) or _is_timm_attention(module)


def _is_timm_attention(module) -> bool:
    return all(hasattr(module, name) for name in ("qkv", "num_heads", "attn_drop", "fused_attn"))


@contextmanager
def explicit(module):
    """Each nn.MultiheadAttention in the module written out, so that its matrix is a tensor made
    of the operations a TorchFunctionMode sees (F.scaled_dot_product_attention, which timm's
    Attention calls, each mode writes out itself: written_attention)."""
    torch = frameworks.torch()
    with ExitStack() as stack:
        for inner in module.modules():
            if isinstance(inner, torch.nn.MultiheadAttention):
                inner.forward = _self_attention(inner)
                stack.callback(delattr, inner, "forward")
        yield


def _self_attention(module):
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
        return module.out_proj((attention @ v).transpose(1, 2).reshape(batch, tokens, width)), None
    return forward
