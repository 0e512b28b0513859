"""The CAM family against pytorch-grad-cam 1.5, on torchvision's ResNet-18 at 64 x 64 and its
layer3 (4 x 4 maps, 256 channels): both runs min-max scaled as pytorch-grad-cam scales its output.
The classifier's weights are scaled by 100 so that the logits' gradients dwarf the 1e-6 that
pytorch-grad-cam adds under Grad-CAM++'s denominator (the paper adds nothing)."""
import numpy as np
import pytest

import heatkit
from conftest import random_image, trained_looking
from heatkit.base import frameworks
from heatkit.methods import eigen_cam
from heatkit.methods._layers import AtLayer
from heatkit.methods.registry import REGISTRY

SIDE, TARGET = 64, 3
PEERS = {"gradcam": "GradCAM", "gradcampp": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "hirescam": "HiResCAM",
         "layercam": "LayerCAM", "eigencam": "EigenCAM", "eigengradcam": "EigenGradCAM", "scorecam": "ScoreCAM",
         "ablationcam": "AblationCAM"}


@pytest.fixture(scope="module")
def resnet():
    torch = frameworks.torch()
    import torchvision

    torch.manual_seed(0)
    net = trained_looking(torchvision.models.resnet18(num_classes=10))
    with torch.no_grad():
        net.fc.weight *= 100
    return net


@pytest.fixture(scope="module")
def image():
    return random_image(SIDE, seed=3)


def scaled(cam: np.ndarray) -> np.ndarray:
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-7)


def peer(name: str, net, image: np.ndarray, negate: bool = False) -> np.ndarray:
    """pytorch-grad-cam's map at layer3; `negate` flips the sign of Eigen-CAM's principal component."""
    torch = frameworks.torch()
    import pytorch_grad_cam
    from pytorch_grad_cam import eigen_cam as their_eigen_cam
    from pytorch_grad_cam import eigen_grad_cam as their_eigen_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    inputs = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32))
    with pytest.MonkeyPatch.context() as patch:
        for module in (their_eigen_cam, their_eigen_grad_cam):
            projection = module.get_2d_projection
            patch.setattr(module, "get_2d_projection", (lambda p: lambda values: -p(values))(projection) if negate
                          else projection)
        with getattr(pytorch_grad_cam, name)(net, [net.layer3]) as cam:
            return cam(inputs, targets=[ClassifierOutputTarget(TARGET)])[0]


@pytest.mark.parametrize("key", PEERS)
def test_each_cam_equals_pytorch_grad_cam(key, resnet, image):
    model = heatkit.load_model(resnet, settings={"input_size": [SIDE, SIDE]})
    ours = scaled(REGISTRY[key].impl["torch"](model, image, TARGET, {"layers": ["layer3"]}))
    theirs = peer(PEERS[key], resnet, image)
    if key.startswith("eigen") and not np.allclose(ours, theirs, atol=1e-4):  # the component's sign is arbitrary
        theirs = peer(PEERS[key], resnet, image, negate=True)
    assert np.ptp(ours) > 0.5
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_eigen_cam_fixes_the_components_sign_by_the_channel_sum():
    """Activations of rank one, u v^T with v > 0: Eigen-CAM is u centred, whichever sign the SVD
    returns, and it does not depend on the class."""
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(5, 6)), rng.random(8) + 0.1
    activations = u[..., None] * v
    at = AtLayer(None, np.zeros((5, 6, 1)), 0, "conv", activations, rng.normal(size=activations.shape))
    expected = (u - u.mean()) * np.linalg.norm(v)
    np.testing.assert_allclose(eigen_cam.eigencam(at), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(eigen_cam.principal_projection(-activations), -expected, rtol=1e-10, atol=1e-12)
