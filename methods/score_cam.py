"""Score-CAM (Wang et al. 2020): each of a conv layer's maps A_k, upsampled to the input and
scaled to [0, 1], masks the input; the target logit of each masked input, softmaxed over the
maps, weighs them: sum_k softmax(s)_k A_k, rectified and upsampled (methods/_layers.cam_method).
As pytorch-grad-cam 1.5 computes it: the upsampling is bilinear with corners aligned, the scores
are logits (the paper's code uses the softmax probability), and a constant map's mask is 0.
One forward pass per map, through the perturbation engine.
"""
import numpy as np

from heatkit.methods._entry import Method, Needs, Paper
from heatkit.methods._layers import AtLayer, bilinear, cam_method
from heatkit.methods.grad_cam import SETTINGS

SCALE_EPSILON = 1e-8  # pytorch-grad-cam's, under a map's range


def scorecam(at: AtLayer) -> np.ndarray:
    height, width = at.image.shape[:2]
    rows = bilinear(at.activations.shape[0], height, corners_aligned=True)
    cols = bilinear(at.activations.shape[1], width, corners_aligned=True)

    def masked_logits(start, stop):
        # (maps, height, width) by two matrix products, the columns' first (half the time of the
        # other order; numpy's einsum of all three operands at once, a loop over every index, took a
        # fifth of the call)
        upsampled = rows @ (at.activations[..., start:stop].transpose(2, 0, 1) @ cols.T)
        low = upsampled.min(axis=(1, 2), keepdims=True)
        masks = (upsampled - low) / (upsampled.max(axis=(1, 2), keepdims=True) - low + SCALE_EPSILON)
        return at.model.logits(masks[..., None] * at.image)[:, at.target]

    scores = at.model.engine(at.image, at.target).passes(at.activations.shape[-1], masked_logits, "scorecam")
    weights = np.exp(scores - scores.max())
    return at.activations @ (weights / weights.sum())


METHOD = Method("scorecam", "Score-CAM", Paper(
    "Wang et al. 2020", "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
    "https://arxiv.org/abs/1910.01279"), Needs.CONV_LAYER, cam_method(scorecam), SETTINGS,
    cheaper="choose a layer with fewer channels in gradcam.layers", passes=lambda model, params: None)  # a channel one
