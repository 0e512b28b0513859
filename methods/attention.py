"""Explanations read from a vision transformer's attention (methods/_attention.py), on the grid of
patch tokens, upsampled (bilinear) to the input:

- Attention rollout (Abnar & Zuidema 2020): each block's attention, its heads fused
  (`rollout.head_fusion`), mixed half and half with the identity for the residual connection,
  rows renormalized, multiplied from the first block to the last; the class token's row. It does
  not depend on the class.
- Chefer et al. 2021's gradient-weighted attention ("Generic Attention-model Explainability"):
  R = I, then R += mean_heads((dlogit/dA * A)+) R block by block; the class token's row. Their
  CVPR 2021 method weighs the gradient by A's LRP relevance instead of A; their ICCV 2021 rule
  here is the one the authors' code recommends for ViTs.

A model without a class token (a global-average head) takes the mean of the rows.
"""
import numpy as np

from heatkit.base.rules import Choice
from heatkit.methods import _attention, _layers
from heatkit.methods._entry import REFUSED, Method, Needs, Paper, Setting, Settings

FUSIONS = {"mean": lambda maps: maps.mean(axis=0), "max": lambda maps: maps.max(axis=0),
           "min": lambda maps: maps.min(axis=0)}


def rollout(model, image, target, params):
    attention = _attention.record(model, image, target)
    flow = np.eye(attention.maps[0].shape[-1])
    for maps in attention.maps:
        mixed = 0.5 * FUSIONS[params["head_fusion"]](maps) + 0.5 * np.eye(len(flow))
        flow = (mixed / mixed.sum(axis=-1, keepdims=True)) @ flow
    return _patch_map(flow, attention, image)


def gradient_weighted(model, image, target, params):
    attention = _attention.record(model, image, target)
    relevance = np.eye(attention.maps[0].shape[-1])
    for maps, gradients in zip(attention.maps, attention.gradients):
        relevance = relevance + np.maximum(gradients * maps, 0.0).mean(axis=0) @ relevance
    return _patch_map(relevance, attention, image)


def _patch_map(flow: np.ndarray, attention: "_attention.Attention", image: np.ndarray) -> np.ndarray:
    """The class token's row of a token-to-token matrix over the patch tokens, at the input's size."""
    row = flow[0] if attention.prefix else flow.mean(axis=0)
    return _layers.upsample(row[attention.prefix:].reshape(attention.grid), image.shape[:2])


SETTINGS = Settings("rollout", "rollout: attention rollout (Abnar & Zuidema 2020) on a vision transformer.", {
    "head_fusion": Setting("mean", Choice(tuple(FUSIONS)), "how a block's heads are fused: the paper's mean, or "
                                                           "their max or min"),
})
# the attention of timm's Attention and nn.MultiheadAttention; Swin's windows are neither
ATTENTION_FAMILIES = {**dict.fromkeys(("ReLU CNNs", "gated CNNs", "ConvNeXt", "Swin"),
                                      f"{REFUSED} (no attention read)"), "ViT": "its attention maps"}
METHODS = [
    Method("rollout", "Attention Rollout", Paper("Abnar & Zuidema 2020", "Quantifying Attention Flow in Transformers",
                                                 "https://arxiv.org/abs/2005.00928"),
           Needs.ATTENTION, {"torch": rollout}, SETTINGS, families=ATTENTION_FAMILIES),
    Method("chefer", "Gradient-weighted attention", Paper(
        "Chefer et al. 2021", "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder "
        "Transformers", "https://arxiv.org/abs/2103.15679"), Needs.ATTENTION, {"torch": gradient_weighted},
           families=ATTENTION_FAMILIES),
]
