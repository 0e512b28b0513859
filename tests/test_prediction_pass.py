"""The run's prediction pass, kept with its graph for the method that runs first
(methods/_recording.py): Gradient, Input x Gradient and the gradient CAMs then make no forward
pass of their own; their maps are the peers' and the ones their own passes give, on a
torchvision ResNet, a batch of arrays, and a TorchScript Sequential run module by module."""
import numpy as np
import pytest

import heatkit
from conftest import random_image
from heatkit.base import frameworks
from heatkit.base.run_state import KeptPass, RunState
from heatkit.methods import _recording

SIDE = 48


@pytest.fixture(scope="module")
def resnet():
    torch = frameworks.torch()
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def model(resnet):
    return heatkit.load_model(resnet, settings={"input_size": [SIDE, SIDE]})


def forwards(net, call) -> tuple[int, object]:
    """How many times `call` runs the module's forward, and what it returns."""
    calls = []
    hook = net.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        result = call()
        return len(calls), result
    finally:
        hook.remove()


def maps(model, images, keys, target=None) -> dict:
    run = heatkit.explain(model, images, keys, target=target, settings={"sg.augment_by_n": 2}, progress=False)
    return {key: run.stack(key) for key in keys}


def captum_map(resnet, inputs, key: str, target) -> np.ndarray:
    from captum.attr import InputXGradient, LayerAttribution, LayerGradCam, Saliency

    inputs = inputs.clone().requires_grad_()
    if key == "gradcam":
        cam = LayerGradCam(resnet, resnet.layer4).attribute(inputs, target=target)
        return LayerAttribution.interpolate(cam.clamp(min=0), (SIDE, SIDE), "bilinear").detach()[:, 0].numpy()
    found = Saliency(resnet).attribute(inputs, target=target, abs=False) if key == "grad" else \
        InputXGradient(resnet).attribute(inputs, target=target)
    return found.sum(1).detach().numpy()


@pytest.mark.parametrize("key", ["grad", "inpgrad", "gradcam"])
def test_a_method_run_first_on_one_image_makes_no_pass_of_its_own(key, model, resnet):
    """One forward pass in all (the prediction's) where the call made two; the map is captum's,
    and bit for bit the one the method's own pass gives (SmoothGrad, run first, takes the kept pass
    to no use, and the method after it makes its own)."""
    torch = frameworks.torch()
    inputs = torch.randn(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    maps(model, inputs, [key])  # the model's one-off probes (layout, memory, the CAM's layer)
    passes, kept = forwards(resnet, lambda: maps(model, inputs, [key]))
    assert passes == 1
    with torch.no_grad():
        predicted = int(resnet(inputs).argmax())
    expected = captum_map(resnet, inputs, key, predicted)
    np.testing.assert_allclose(kept[key], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    smoothgrad, _ = forwards(resnet, lambda: maps(model, inputs, ["sg"]))
    own_passes, own = forwards(resnet, lambda: maps(model, inputs, ["sg", key]))
    assert own_passes == smoothgrad + 1
    np.testing.assert_array_equal(own[key], kept[key])


def test_a_batch_of_arrays_and_given_targets_take_the_prediction_pass(model, resnet):
    """Three images of pixels, as users pass them, explaining classes given: one forward pass,
    and each map the one the image gives alone."""
    images = [random_image(SIDE, seed=seed) for seed in range(3)]
    maps(model, images, ["grad"])
    passes, batched = forwards(resnet, lambda: maps(model, images, ["grad"], target=[1, 5, 9]))
    assert passes == 1
    for index, (image, target) in enumerate(zip(images, [1, 5, 9])):
        alone = maps(model, image, ["grad"], target=target)["grad"][0]
        np.testing.assert_allclose(batched["grad"][index], alone, rtol=1e-5, atol=1e-6 * np.abs(alone).max())


def test_the_probabilities_are_those_of_a_pass_without_a_graph(model):
    image = random_image(SIDE, seed=7)
    kept = heatkit.explain(model, image, ["grad"], progress=False).probabilities
    plain = model.probabilities(model.preprocess(image)[None])[0]
    np.testing.assert_allclose(kept, plain, rtol=1e-6, atol=1e-9)


def test_a_torchscript_sequential_records_its_layers_module_by_module(monkeypatch):
    """A scripted Sequential calls no hooks: the prediction pass runs its modules one by one and
    records the CAM's layer there; Grad-CAM's map is the one of the module it was scripted from."""
    torch = frameworks.torch()
    nn = torch.nn
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    image = random_image(16, seed=2)
    settings = {"input_size": [16, 16], "gradcam": {"layers": ["2"]}}
    scripted = heatkit.load_model(torch.jit.script(net), settings=settings)
    plain = heatkit.load_model(net, settings=settings)
    maps(scripted, image, ["gradcam"])
    recorded = []
    record = _recording.run_recording
    monkeypatch.setattr(_recording, "run_recording", lambda *args: recorded.append(1) or record(*args))
    kept = maps(scripted, image, ["gradcam"])
    assert len(recorded) == 1  # by the prediction pass
    expected = maps(plain, image, ["sg", "gradcam"])["gradcam"]
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(kept["gradcam"], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_a_kept_pass_serves_only_its_model_images_and_recorded_modules(model, resnet):
    image = model.preprocess(random_image(SIDE, seed=1))[None]
    state = RunState()
    other = heatkit.load_model(resnet, settings={"input_size": [SIDE, SIDE]})
    state.prediction = KeptPass(model, image, None, None, {resnet.layer4: None})
    assert state.take_pass(other, image, set()) is None  # another model
    assert state.take_pass(model, image + 1e-3, set()) is None  # other pixels
    assert state.take_pass(model, image[:, :-1], set()) is None  # another size
    assert state.take_pass(model, image, {resnet.layer3}) is None  # a module not recorded
    handed = RunState(prediction=state.hand_over())
    assert state.prediction is None and handed.take_pass(model, image.copy(), {resnet.layer4}) is not None
    assert handed.take_pass(model, image, set()) is None  # once: its backward pass frees the graph


def test_input_gradients_without_a_kept_pass_are_autograds(model, resnet):
    """Two targets, one per image, in one call: each row's gradient is its own logit's alone."""
    torch = frameworks.torch()
    batch = np.stack([model.preprocess(random_image(SIDE, seed=seed)) for seed in (5, 6)])
    found = _recording.input_gradients(model, batch, np.array([2, 7]))
    for row, target in zip(range(2), (2, 7)):
        inputs = torch.tensor(batch[row:row + 1].transpose(0, 3, 1, 2), dtype=torch.float32, requires_grad=True)
        resnet(inputs)[0, target].backward()
        expected = inputs.grad[0].numpy().transpose(1, 2, 0)
        np.testing.assert_allclose(found[row], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
