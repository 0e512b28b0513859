"""Explanations read from a transformer's attention (methods/_attention.py finds it), on the grid
of patch tokens, upsampled (bilinear) to the input:

- Attention rollout (Abnar & Zuidema 2020): each attention call's heads fused
  (`rollout.head_fusion`), mixed half and half with the identity for the residual connection,
  rows renormalized, multiplied from the first call to the last; the class token's row. It does
  not depend on the class.
- Chefer et al. 2021's gradient-weighted attention ("Generic Attention-model Explainability"):
  R = I, then R += mean_heads((dlogit/dA * A)+) R call by call; the class token's row. Their CVPR
  2021 method weighs the gradient by A's LRP relevance instead of A; their ICCV 2021 rule here is
  the one the authors' code recommends for ViTs.
- LeGrad (Bousselham et al. 2024): for each block, the class score its tokens give when read by
  the model's own head (their mean, the final norm, the classifier, as torchcam 0.5 reads a
  torchvision ViT), and that score's gradient at the block's attention, its positive part averaged
  over heads and queries; the patch keys' map averaged over the blocks (`legrad.blocks`, the last
  ones).

Both products are carried back as the readout row times each call's matrix, last call first: the
class token's row where the model has one, else the mean of the rows (a global-average head). On
Swin, a window's matrix acts on its window's tokens and leaves the others; between stages, where a
patch merging makes each token from a two by two of the stage below, a token's row is shared
equally by the tokens it is made from, as the merging's mean would share it.
"""
import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.base.rules import Choice, Int
from heatkit.methods import _attention, _layers
from heatkit.methods._entry import GRADIENT_PASSES, REFUSED, Method, Needs, Paper, Setting, Settings

FUSIONS = {"mean": lambda maps: maps.mean(axis=1), "max": lambda maps: maps.max(axis=1),
           "min": lambda maps: maps.min(axis=1)}


def rollout(model, image, target, params):
    def step(call: _attention.Mixing) -> np.ndarray:
        mixed = 0.5 * FUSIONS[params["head_fusion"]](call.weights) + 0.5 * np.eye(call.weights.shape[-1])
        return mixed / mixed.sum(axis=-1, keepdims=True)
    return _carried_back(_attention.record(model, image, None), step, image)


def gradient_weighted(model, image, target, params):
    def step(call: _attention.Mixing) -> np.ndarray:
        return np.eye(call.weights.shape[-1]) + np.maximum(call.gradients * call.weights, 0.0).mean(axis=1)
    return _carried_back(_attention.record(model, image, target), step, image)


def _carried_back(attention: "_attention.Attention", step, image: np.ndarray) -> np.ndarray:
    """The readout row times each call's matrix, last call first, on the first stage's patches."""
    prefix, calls = attention.prefix, attention.calls
    count = prefix + calls[-1].grid[0] * calls[-1].grid[1]
    row = np.eye(count)[0] if prefix else np.full(count, 1.0 / count)
    for call, before in zip(reversed(calls), [*reversed(calls[:-1]), None]):
        row = _through(row, call.tokens, step(call))
        finer = attention.grid if before is None else before.grid
        if finer != call.grid:
            row = _shared_out(row, prefix, finer, call.grid)
    return _layers.upsample(row[prefix:].reshape(attention.grid), image.shape[:2])


def _through(row: np.ndarray, tokens: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """row times the matrix whose windows' blocks are `matrices` (windows, n, n) at `tokens` and
    that is the identity on any token no window holds."""
    padded = np.append(row, 0.0)  # a padding position (-1) reads 0, and what reaches it is dropped
    result = np.zeros_like(padded)
    np.add.at(result, tokens, np.einsum("wi,wij->wj", padded[tokens], matrices))
    held = np.zeros(len(padded), dtype=bool)
    held[tokens] = True
    result[~held] = padded[~held]
    return result[:-1]


def _shared_out(row: np.ndarray, prefix: int, finer: tuple, coarser: tuple) -> np.ndarray:
    """A coarser stage's row on the finer stage's tokens, each merged token's share split equally
    among the (up to four) tokens it is made from."""
    if coarser != (-(-finer[0] // 2), -(-finer[1] // 2)):
        raise NotApplicable(f"the tokens change from {finer[0]} x {finer[1]} to {coarser[0]} x {coarser[1]} between "
                            "attention calls, which is not a patch merging of two by two")
    parents = (np.arange(finer[0])[:, None] // 2) * coarser[1] + np.arange(finer[1])[None, :] // 2
    shares = np.bincount(parents.ravel(), minlength=coarser[0] * coarser[1])
    return np.concatenate([row[:prefix], (row[prefix:][parents] / shares[parents]).ravel()])


def legrad(model, image, target, params):
    torch = frameworks.torch()
    net = model.torch
    blocks, readout = _blocks_and_readout(net.module)
    outputs = []
    hooks = [block.register_forward_hook(lambda _, __, output: outputs.append(output)) for block in blocks]
    try:
        with _attention.recording(model) as recorder:
            net.forward(net.tensor(image[None]).requires_grad_())
    finally:
        for hook in hooks:
            hook.remove()
    weights = [found for found, window in recorder.found]
    if len(weights) != len(blocks):
        raise NotApplicable(f"LeGrad reads one attention per block; the model's {len(blocks)} blocks made "
                            f"{len(weights)}")
    grid = _attention.token_grid(model)
    chosen = range(len(blocks))[-params["blocks"]:] if params["blocks"] else range(len(blocks))
    maps = []
    for index in chosen:
        score = readout(outputs[index].mean(dim=1))[0, target]
        (gradient,) = torch.autograd.grad(score, weights[index], retain_graph=True)
        maps.append(net.array(gradient[0].clamp_min(0).mean(dim=(0, 1))))
    patches = np.mean(maps, axis=0)[-grid[0] * grid[1]:]
    return _layers.upsample(patches.reshape(grid), image.shape[:2])


def _blocks_and_readout(module):
    """A ViT's blocks, and its head as a function of a block's pooled tokens: torchvision's
    VisionTransformer and timm's (its final norm, then its pooled tokens' norm and classifier)."""
    from torchvision.models.vision_transformer import VisionTransformer

    if isinstance(module, VisionTransformer):
        return list(module.encoder.layers), lambda pooled: module.heads(module.encoder.ln(pooled))
    try:
        from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
    except ImportError:  # timm is optional
        TimmVisionTransformer = ()
    if isinstance(module, TimmVisionTransformer) and module.attn_pool is None:
        return list(module.blocks), lambda pooled: module.head(module.fc_norm(module.norm(pooled)))
    raise NotApplicable("LeGrad reads each block's tokens with the model's own head, which it knows on torchvision's "
                        "and timm's VisionTransformer (timm's without an attention-pooling head)")


def legrad_passes(model, params) -> int:
    """A forward pass, and a backward pass for each block's score (counted whole, though it stops
    at the block)."""
    if "torch" not in model.frameworks:
        return GRADIENT_PASSES
    blocks = sum(_attention.is_attention(module) for module in model.torch.module.modules())
    return 1 + 2 * min(blocks, params["blocks"] or blocks)


ROLLOUT = Settings("rollout", "rollout: attention rollout (Abnar & Zuidema 2020) on a vision transformer.", {
    "head_fusion": Setting("mean", Choice(tuple(FUSIONS)), "how a block's heads are fused: the paper's mean, or "
                                                           "their max or min"),
})
LEGRAD = Settings("legrad", "legrad: LeGrad (Bousselham et al. 2024) on a vision transformer.", {
    "blocks": Setting(0, Int(min=0), "how many of the last blocks' maps are averaged; 0 for all of them"),
})
ATTENTION_FAMILIES = {**dict.fromkeys(("ReLU CNNs", "gated CNNs", "ConvNeXt"), f"{REFUSED} (no attention)"),
                      "ViT": "its attention maps", "Swin": "its window attention, stage by stage"}
LEGRAD_FAMILIES = {**dict.fromkeys(("ReLU CNNs", "gated CNNs", "ConvNeXt"), f"{REFUSED} (no attention)"),
                   "ViT": "its attention maps", "Swin": f"{REFUSED} (its stages' widths differ from the head's)"}
METHODS = [
    Method("rollout", "Attention Rollout", Paper("Abnar & Zuidema 2020", "Quantifying Attention Flow in Transformers",
                                                 "https://arxiv.org/abs/2005.00928"),
           Needs.ATTENTION, {"torch": rollout}, ROLLOUT, families=ATTENTION_FAMILIES),
    Method("chefer", "Gradient-weighted attention", Paper(
        "Chefer et al. 2021", "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder "
        "Transformers", "https://arxiv.org/abs/2103.15679"), Needs.ATTENTION, {"torch": gradient_weighted},
           families=ATTENTION_FAMILIES),
    Method("legrad", "LeGrad", Paper("Bousselham et al. 2024", "LeGrad: An Explainability Method for Vision "
                                     "Transformers via Feature Formation Sensitivity", "https://arxiv.org/abs/2404.03214"),
           Needs.ATTENTION, {"torch": legrad}, LEGRAD, families=LEGRAD_FAMILIES, passes=legrad_passes),
]
