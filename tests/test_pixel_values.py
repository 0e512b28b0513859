"""References, baselines and fills are pixels of the image as the user sees it (0 black, 1 white,
"mean" the preprocessing's mean color), converted to the model's input once: on a model
normalised by a mean and std, 0 of its input is the mean image, not black."""
import json

import numpy as np
import pytest

import heatkit
from heatkit.base import frameworks

SIDE = 8
NORMALISED = {"preprocess.mean": [0.5], "preprocess.std": [0.25], "input_size": [SIDE, SIDE], "faithfulness.curves": False}


def network():
    torch = frameworks.torch()
    nn = torch.nn
    torch.manual_seed(8)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * (SIDE - 2) ** 2, 4)).double().eval()
    with torch.no_grad():
        net[3].weight.mul_(10)  # logits that move with the input
    return net


def logit(net, pixels: np.ndarray, target: int) -> float:
    """The logit of pixels in [0, 1], normalised as NORMALISED says, computed here by hand."""
    torch = frameworks.torch()
    inputs = torch.from_numpy(((pixels - 0.5) / 0.25).transpose(2, 0, 1)[None])
    with torch.no_grad():
        return float(net(inputs)[0, target])


@pytest.mark.parametrize("reference, pixel", [(0.0, 0.0), (1.0, 1.0), ("mean", 0.5)])
def test_ig_and_deeplift_sum_to_the_logits_change_from_the_reference_pixels(reference, pixel, tmp_path):
    net = network()
    x = np.random.default_rng(2).random((SIDE, SIDE, 1))
    run = heatkit.explain(net, x, ["ig", "deeplift"], target=1, progress=False,
                          settings={**NORMALISED, "ig.reference": reference, "deeplift.baseline": reference,
                                    "ig.steps": 256})
    change = logit(net, x, 1) - logit(net, np.full_like(x, pixel), 1)
    others = [logit(net, x, 1) - logit(net, np.full_like(x, other), 1) for other in (0.0, 0.5, 1.0) if other != pixel]
    assert min(abs(change - other) for other in others) > 0.2 * abs(change)  # the reference tells them apart
    assert run.maps["deeplift"].sum() == pytest.approx(change, rel=1e-5)
    assert run.maps["ig"].sum() == pytest.approx(change, rel=2e-2)  # a quadrature over the ReLUs' kinks
    record = json.loads((run.save(tmp_path) / "run.json").read_text())
    assert record["settings"]["ig"]["reference"] == reference
    assert record["request"]["pixel_values_in_model_input"]["ig.reference"] == [(pixel - 0.5) / 0.25]


def test_occlusion_fills_with_the_pixel_value_given():
    net = network()
    x = np.random.default_rng(3).random((SIDE, SIDE, 1))
    run = heatkit.explain(net, x, ["occlusion"], target=2, progress=False,
                          settings={**NORMALISED, "occlusion.fill": 1.0, "perturbation.fast": False})
    white = x.copy()
    white[3, 4] = 1.0
    torch = frameworks.torch()
    probabilities = [torch.softmax(torch.tensor([logit(net, image, c) for c in range(4)]), 0)[2].item()
                     for image in (x, white)]
    assert run.maps["occlusion"][3, 4] == pytest.approx(probabilities[0] - probabilities[1], rel=1e-5)


def test_meaningful_perturbations_images_are_pixels_as_drawn():
    """Its blurred and perturbed images were drawn in the model's normalised space, clipped: they
    are pixels in [0, 1], which the preprocessing takes back to what the model saw."""
    from heatkit.methods import meaningful_perturbation

    net = network()
    x = np.random.default_rng(4).random((SIDE, SIDE, 1))
    model = heatkit.load_model(net, settings=NORMALISED)
    found = meaningful_perturbation.attribute(model, model.preprocess(x), 1, {
        **heatkit.settings()["mp"], "iterations": 5, "mask_size": 3})
    blurred, perturbed = found.extras["blurred"], found.extras["perturbed"]
    assert 0 <= blurred.min() and blurred.max() <= 1 and 0 <= perturbed.min() and perturbed.max() <= 1
    np.testing.assert_allclose(blurred.mean(), x.mean(), atol=0.05)  # a blur keeps the mean brightness
    probability = model.probabilities(model.preprocess(perturbed)[None])[0, 1]
    assert probability == pytest.approx(found.extras["probability"][-1], abs=0.05)  # one step after the last
