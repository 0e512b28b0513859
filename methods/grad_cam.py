"""The CAM methods that weigh a conv layer's maps A_k by the target logit's gradients G_k there,
each one function of (A, G) at the layer's resolution (methods/_layers.cam_method rectifies and
upsamples it, bilinear, to the input), as pytorch-grad-cam 1.5 defines them:

- Grad-CAM (Selvaraju et al. 2017): sum_k mean(G_k) A_k.
- Grad-CAM++ (Chattopadhyay et al. 2018): each position's positive gradient weighted by
  g^2 / (2 g^2 + sum(A_k) g^3), the closed form for an exponential of the logit.
- XGrad-CAM (Fu et al. 2020): sum_k w_k A_k with w_k = sum(G_k A_k) / sum(A_k).
- HiResCAM (Draelos & Carin 2020): sum_k G_k A_k, position by position.
- Layer-CAM (Jiang et al. 2021): sum_k max(G_k, 0) A_k, position by position.

`gradcam.layers` chooses the layers (default the last conv layer); several give one map each.
"""
import numpy as np

from heatkit.base.rules import ListOf, Optional, Text
from heatkit.methods._entry import Method, Needs, Paper, Setting, Settings
from heatkit.methods._layers import AtLayer, cam_method, cam_modules

XGRAD_EPSILON = 1e-7  # pytorch-grad-cam's, for a channel whose activations sum to 0


def gradcam(at: AtLayer) -> np.ndarray:
    return at.activations @ at.gradients.mean(axis=(0, 1))


def gradcampp(at: AtLayer) -> np.ndarray:
    activations, gradients = at.activations, at.gradients
    squared, cubed = gradients**2, gradients**3
    denominator = 2 * squared + activations.sum(axis=(0, 1)) * cubed
    alpha = np.divide(squared, denominator, out=np.zeros_like(squared), where=denominator != 0)
    return activations @ (alpha * np.maximum(gradients, 0.0)).sum(axis=(0, 1))


def xgradcam(at: AtLayer) -> np.ndarray:
    weights = (at.gradients * at.activations).sum(axis=(0, 1)) / (at.activations.sum(axis=(0, 1)) + XGRAD_EPSILON)
    return at.activations @ weights


def hirescam(at: AtLayer) -> np.ndarray:
    return (at.gradients * at.activations).sum(axis=-1)


def layercam(at: AtLayer) -> np.ndarray:
    return (np.maximum(at.gradients, 0.0) * at.activations).sum(axis=-1)


GRAD_CAM = cam_method(gradcam)  # Guided Grad-CAM's too
PAPER = Paper("Selvaraju et al. 2017", "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization",
              "https://arxiv.org/abs/1610.02391")
SETTINGS = Settings("gradcam", "gradcam: the conv layers the CAM family explains (Grad-CAM, Selvaraju et al. 2017, and "
                               "its variants, Score-CAM, Ablation-CAM, Eigen-CAM, Guided Grad-CAM), by their Keras "
                               "names or PyTorch module paths; several give one map each. CAM (Zhou et al. 2016) "
                               "always uses the layer before the global average pooling.", {
    "layers": Setting(None, Optional(ListOf(Text())), 'None: the last conv layer; or a list, e.g. ["conv2", "conv3"]'),
})
METHODS = [
    Method("gradcam", "Grad-CAM", PAPER, Needs.CONV_LAYER, GRAD_CAM, SETTINGS, from_prediction=cam_modules),
    Method("gradcampp", "Grad-CAM++", Paper(
        "Chattopadhyay et al. 2018", "Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks",
        "https://arxiv.org/abs/1710.11063"), Needs.CONV_LAYER, cam_method(gradcampp), SETTINGS,
        from_prediction=cam_modules),
    Method("xgradcam", "XGrad-CAM", Paper(
        "Fu et al. 2020", "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
        "https://arxiv.org/abs/2008.02312"), Needs.CONV_LAYER, cam_method(xgradcam), SETTINGS,
        from_prediction=cam_modules),
    Method("hirescam", "HiResCAM", Paper(
        "Draelos & Carin 2020", "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural "
        "networks", "https://arxiv.org/abs/2011.08891"), Needs.CONV_LAYER, cam_method(hirescam), SETTINGS,
        from_prediction=cam_modules),
    Method("layercam", "Layer-CAM", Paper(
        "Jiang et al. 2021", "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
        "https://doi.org/10.1109/TIP.2021.3089943"), Needs.CONV_LAYER, cam_method(layercam), SETTINGS,
        from_prediction=cam_modules),
]
