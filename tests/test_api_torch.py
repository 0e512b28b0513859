"""The API as a PyTorch user calls it: tensors of the model's input in (a batch, one image, a list
of images), one target per image (a tensor), and the maps out as one array or tensor, equal to
captum's; a torchvision module object gets its family's preprocessing and class names."""
import numpy as np
import pytest

import heatkit
from heatkit.base import frameworks
from heatkit.base.errors import UsageError


@pytest.fixture(scope="module")
def resnet():
    torch = frameworks.torch()
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=1000).eval()


def test_a_tensor_batch_and_a_tensor_of_targets_give_captums_saliency_stacked(resnet):
    """explain(net, x) with a tensor failed with "expected str, bytes or os.PathLike object, not
    Tensor"; a tensor of targets with "Boolean value of Tensor ... is ambiguous"."""
    torch = frameworks.torch()
    from captum.attr import Saliency

    inputs = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([1, 500, 999])
    run = heatkit.explain(resnet, inputs, ["grad"], target=targets, progress=False)
    expected = Saliency(resnet).attribute(inputs.clone().requires_grad_(), target=targets, abs=False).sum(1)
    stacked = run.stack("grad")
    assert stacked.shape == (3, 32, 32) and [item.results[0].target for item in run.items] == [1, 500, 999]
    np.testing.assert_allclose(stacked, expected.numpy(), rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    as_tensor = run.stack("grad", as_tensors=True)
    assert isinstance(as_tensor, torch.Tensor) and torch.equal(as_tensor, torch.from_numpy(stacked))
    one = heatkit.explain(resnet, inputs[1], ["grad"], target=500, progress=False)  # one image (C, H, W)
    listed = heatkit.explain(resnet, list(inputs), ["grad"], target=targets, progress=False)  # a list of them
    np.testing.assert_allclose(one.maps["grad"], stacked[1], rtol=1e-4, atol=1e-6 * np.abs(stacked).max())
    np.testing.assert_array_equal(listed.stack("grad"), stacked)


def test_a_torchvision_module_takes_its_familys_preprocessing_and_class_names(resnet):
    """A torchvision module passed to explain got no ImageNet mean and std, and no note said so."""
    pixels = np.random.default_rng(2).random((2, 32, 32, 3))  # a numpy batch: pixels in [0, 1]
    run = heatkit.explain(resnet, pixels, ["grad"], progress=False)
    assert run.model.preprocess.mean == (0.485, 0.456, 0.406) and run.model.preprocess.std == (0.229, 0.224, 0.225)
    assert any("torchvision model" in note and "preprocessed" in note for note in run.notes)
    assert run.class_names[281] == "tabby" and len(run.class_names) == 1000
    torch = frameworks.torch()
    inputs = torch.from_numpy(((pixels - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]))
                              .transpose(0, 3, 1, 2)).float()
    as_tensors = heatkit.explain(resnet, inputs, ["grad"], progress=False)  # the same images, preprocessed here
    np.testing.assert_allclose(as_tensors.stack("grad"), run.stack("grad"), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(as_tensors.items[0].results[0].image, pixels[0], atol=1e-6)  # drawn as the pixels


def test_inputs_that_fit_no_form_are_refused_before_the_model_loads():
    loaded = []
    with pytest.raises(UsageError, match=r"pixels in \[0, 1\]"):
        heatkit.explain(lambda: loaded.append(1), np.full((2, 8, 8, 3), 255.0), ["grad"], progress=False)
    with pytest.raises(UsageError, match="one size"):
        heatkit.explain(lambda: loaded.append(1), [np.zeros((8, 8, 3)), np.zeros((9, 9, 3))], ["grad"], progress=False)
    with pytest.raises(UsageError, match="2 targets for 3 images"):
        heatkit.explain(None, [np.zeros((15, 15, 1))] * 3, ["grad"], target=[1, 2], progress=False,
                        settings={"model_path": "no-such-model.h5"})
    assert not loaded
