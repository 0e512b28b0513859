"""Eigen-CAM (Muhammad & Yeasin 2020): a conv layer's activations projected on their first
principal component, position by position (the activations centred over positions, as
pytorch-grad-cam 1.5 does); EigenGrad-CAM (pytorch-grad-cam's) projects G * A instead. Neither
depends on the class for Eigen-CAM; EigenGrad-CAM does through G.

A principal component's sign is arbitrary (LAPACK builds differ), so it is fixed here: the
projection correlates positively with the sum over channels of what was projected. Rectified and
upsampled as the rest of the CAM family (methods/_layers.cam_method).
"""
import numpy as np

from heatkit.methods._entry import Method, Needs, Paper
from heatkit.methods._layers import AtLayer, cam_method, cam_modules
from heatkit.methods.grad_cam import SETTINGS


def principal_projection(values: np.ndarray) -> np.ndarray:
    """(H', W', K) values, centred over positions, projected on their first right singular vector."""
    rows = values.reshape(-1, values.shape[-1]).astype(np.float64)
    rows = rows - rows.mean(axis=0)
    _, _, right = np.linalg.svd(rows, full_matrices=False)
    projection = rows @ right[0]
    total = values.sum(axis=-1).reshape(-1)
    if projection @ (total - total.mean()) < 0:
        projection = -projection
    return projection.reshape(values.shape[:2])


def eigencam(at: AtLayer) -> np.ndarray:
    return principal_projection(at.activations)


def eigengradcam(at: AtLayer) -> np.ndarray:
    return principal_projection(at.gradients * at.activations)


PAPER = Paper("Muhammad & Yeasin 2020", "Eigen-CAM: Class Activation Map using Principal Components",
              "https://arxiv.org/abs/2008.00299")
METHODS = [
    Method("eigencam", "Eigen-CAM", PAPER, Needs.CONV_LAYER, cam_method(eigencam), SETTINGS,
        from_prediction=cam_modules),
    Method("eigengradcam", "EigenGrad-CAM", Paper(
        "Gildenblat et al. 2021", "PyTorch library for CAM methods (EigenGradCAM)",
        "https://github.com/jacobgil/pytorch-grad-cam"), Needs.CONV_LAYER, cam_method(eigengradcam), SETTINGS,
        from_prediction=cam_modules),
]
