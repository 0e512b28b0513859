"""A confident model's probability is 1.0 in float32, and perturbations of it change nothing:
the run says so, and perturbation.output = "logit" explains the change of the logit, on every
path of the engine (fast, windowed, full passes)."""
import numpy as np
import pytest

import heatkit
from heatkit.base import frameworks

SIDE = 6


def confident(conv: bool):
    """A net whose class 1 has p = 1 - 1e-9 or so on the test image: its last layer scaled up."""
    torch = frameworks.torch()
    nn = torch.nn
    torch.manual_seed(0)
    first = [nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * (SIDE - 2) ** 2, 3)] if conv else \
        [nn.Flatten(), nn.Linear(SIDE * SIDE, 5), nn.ReLU(), nn.Linear(5, 3)]
    net = nn.Sequential(*first).eval()  # float32, whose softmax of a 25-logit lead is 1.0
    with torch.no_grad():
        net[-1].bias.copy_(torch.tensor([0.0, 25.0, 0.0]))
    return net


def logits(net, batch: np.ndarray) -> np.ndarray:
    torch = frameworks.torch()
    with torch.no_grad():
        return net(torch.from_numpy(batch.transpose(0, 3, 1, 2)).float()).double().numpy()


@pytest.mark.parametrize("conv, fast", [(False, True), (False, False), (True, True)])
def test_occlusion_of_a_confident_model_explains_its_logit_when_asked(conv, fast):
    net = confident(conv)
    x = np.random.default_rng(5).random((SIDE, SIDE, 1))
    settings = {"input_size": [SIDE, SIDE], "faithfulness.curves": False, "perturbation.fast": fast}
    run = heatkit.explain(net, x, ["occlusion"], target=1, settings=settings, progress=False)
    flat = np.count_nonzero(run.maps["occlusion"])
    assert flat < 0.1 * SIDE * SIDE
    assert any("saturated" in note and "perturbation.output=logit" in note for note in run.notes), run.notes
    run = heatkit.explain(net, x, ["occlusion"], target=1, progress=False,
                          settings={**settings, "perturbation.output": "logit"})
    occluded = np.repeat(x[None], SIDE * SIDE, axis=0)
    occluded.reshape(SIDE * SIDE, -1)[np.arange(SIDE * SIDE), np.arange(SIDE * SIDE)] = 0.0
    expected = (logits(net, x[None])[0, 1] - logits(net, occluded)[:, 1]).reshape(SIDE, SIDE)
    np.testing.assert_allclose(run.maps["occlusion"], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert np.count_nonzero(expected) > flat + 8 and not any("saturated" in note for note in run.notes)
