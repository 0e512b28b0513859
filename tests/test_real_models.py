"""Models as researchers have them: a residual BatchNorm network in a PyTorch .py file with its
state dict, and a Keras functional residual network with BatchNorm and Rescaling. Known answers on
them: completeness, LRP conservation, Grad-CAM by hand, and the same maps however the model is given."""
import importlib
import json
import sys

import numpy as np
import pytest

import heatkit
from conftest import he_scaled, image_maps, random_image, run_cli
from heatkit.base import frameworks
from heatkit.methods.registry import REGISTRY, Needs

SIDE = 16
NET_CODE = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.down = nn.Identity() if stride == 1 else nn.Sequential(
            nn.Conv2d(channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.down(x))


class Net(nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, 1, 1, bias=bias), nn.BatchNorm2d(6), nn.ReLU())
        self.layer1 = Block(6)
        self.layer2 = Block(6, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5, bias=bias)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1))


def build():
    return Net()


def build_bias_free():
    """No biases anywhere: BatchNorm's shift and running mean are 0 in its weights."""
    return Net(bias=False).double()
'''


def seeded_batchnorm(net, torch, bias_free: bool):
    """Seeded random weights and BatchNorm statistics, at He et al.'s scale so that the logits vary
    with the input (the network is untrained: its known answers hold for any weights)."""
    generator = torch.Generator().manual_seed(3)
    he_scaled(net, generator)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                size = module.num_features
                module.weight.copy_(0.5 + torch.rand(size, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
                if not bias_free:
                    module.bias.copy_(0.2 * torch.randn(size, generator=generator))
                    module.running_mean.copy_(0.2 * torch.randn(size, generator=generator))
    return net.eval()


@pytest.fixture(scope="module")
def torch_net(tmp_path_factory):
    """(the folder of net.py and its state dicts, the module) of the residual BatchNorm network.
    The code is importable meanwhile, as a researcher's is: torch.save and TorchScript need that."""
    torch = frameworks.torch()
    folder = tmp_path_factory.mktemp("torch_net")
    (folder / "net.py").write_text(NET_CODE)
    sys.path.insert(0, str(folder))
    code = importlib.import_module("net")
    torch.manual_seed(0)
    net = seeded_batchnorm(code.build(), torch, bias_free=False)
    torch.save(net.state_dict(), folder / "net_state.pt")
    torch.manual_seed(1)
    torch.save(seeded_batchnorm(code.build_bias_free(), torch, bias_free=True).state_dict(),
               folder / "bias_free_state.pt")
    yield folder, net
    sys.path.remove(str(folder))
    del sys.modules["net"]


@pytest.fixture(scope="module")
def keras_path(tmp_path_factory):
    """A Keras functional residual network: Rescaling, conv + BatchNorm + ReLU, a residual block, GAP, Dense."""
    tf = heatkit.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((SIDE, SIDE, 1))
    hidden = layers.Rescaling(2.0, offset=-1.0)(inputs)
    hidden = layers.ReLU()(layers.BatchNormalization(name="bn0")(layers.Conv2D(
        6, 3, padding="same", name="stem", kernel_initializer=init.GlorotNormal(seed=1))(hidden)))
    branch = layers.ReLU()(layers.BatchNormalization(name="bn1")(layers.Conv2D(
        6, 3, padding="same", use_bias=False, name="conv1", kernel_initializer=init.GlorotNormal(seed=2))(hidden)))
    branch = layers.BatchNormalization(name="bn2")(layers.Conv2D(
        6, 3, padding="same", use_bias=False, name="conv2", kernel_initializer=init.GlorotNormal(seed=3))(branch))
    hidden = layers.ReLU()(layers.Add()([hidden, branch]))
    logits = layers.Dense(5, name="logits", kernel_initializer=init.GlorotNormal(seed=4))(
        layers.GlobalAveragePooling2D()(hidden))
    model = tf.keras.Model(inputs, logits)
    rng = np.random.default_rng(5)
    for name in ("bn0", "bn1", "bn2"):
        layer = model.get_layer(name)
        layer.set_weights([0.5 + rng.random(6), 0.2 * rng.normal(size=6), 0.2 * rng.normal(size=6),
                           0.5 + rng.random(6)])
    path = tmp_path_factory.mktemp("keras_net") / "residual.h5"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def image():
    return random_image(SIDE, 1, seed=7)


def torch_source(torch_net) -> dict:
    """load_model's arguments for the network given as code."""
    folder, _ = torch_net
    return {"model": f"{folder / 'net.py'}:build", "trust": True,
            "settings": {"weights": str(folder / "net_state.pt"), "input_size": [SIDE, SIDE]}}


def explain(source: dict, image, methods, **settings):
    return heatkit.explain(source["model"], image, methods, settings={**source.get("settings", {}), **settings},
                           trust=source.get("trust", False), progress=False)


def logit_change(run, image, baseline: float) -> float:
    """f(image) - f(baseline image) of the explained class's logit."""
    logits = run.model.logits(np.stack([image, np.full_like(image, baseline)]))
    return float(logits[0, run.result.target] - logits[1, run.result.target])


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_deeplift_and_integrated_gradients_are_complete(framework, torch_net, keras_path, image):
    source = torch_source(torch_net) if framework == "torch" else {"model": str(keras_path)}
    run = explain(source, image, ["deeplift", "ig"], **{"ig.steps": 256, "deeplift.baseline": 0.2, "ig.reference": 0.2})
    assert run.scores["deeplift"]["framework"] == run.scores["ig"]["framework"] == framework
    change = logit_change(run, image, 0.2)
    assert abs(change) > 0.05
    assert run.maps["deeplift"].sum(dtype=np.float64) == pytest.approx(change, rel=1e-4)  # exact, in float32
    assert run.maps["ig"].sum(dtype=np.float64) == pytest.approx(change, rel=1e-2)  # a quadrature of 256 points


@pytest.mark.parametrize("rule", ["lrp.z", "lrp.epsilon", "lrp.alpha1beta0"])
def test_lrp_conserves_the_logit_through_residual_additions_and_batchnorm(rule, torch_net, image):
    """Alpha 2, beta 1 conserves only where every neuron has contributions of both signs; a 1 x 1
    shortcut convolution over 6 ReLU outputs often lacks negative ones, and those neurons pass on
    twice their relevance, as the rule says."""
    folder, _ = torch_net
    source = {"model": f"{folder / 'net.py'}:build_bias_free", "trust": True,
              "settings": {"weights": str(folder / "bias_free_state.pt"), "input_size": [SIDE, SIDE]}}
    run = explain(source, image, [rule])
    assert run.model.dtype == "float64" and run.scores[rule]["framework"] == "torch"
    logit = run.model.logits(image[None])[0, run.result.target]
    assert run.maps[rule].sum(dtype=np.float64) == pytest.approx(logit, rel=1e-5)


@pytest.mark.parametrize("bias", ["split", "whole"])
def test_pytorch_lrp_equals_innvestigates_on_the_keras_twin(bias, gap_model_path):
    image = np.random.default_rng(2).random((12, 12, 3))
    rules = ["lrp.z", "lrp.epsilon", "lrp.alpha1beta0", "lrp.alpha2beta1"]
    runs = {backend: heatkit.explain(str(gap_model_path), image, rules, settings={
        "backend": backend, "lrp.alpha_beta_bias": bias}, progress=False) for backend in ("keras", "torch")}
    for rule in rules:
        keras_map, torch_map = runs["keras"].maps[rule], runs["torch"].maps[rule]
        assert runs["torch"].scores[rule]["framework"] == "torch"
        np.testing.assert_allclose(torch_map, keras_map, rtol=0, atol=1e-6 * np.abs(keras_map).max(), err_msg=rule)


def test_grad_cam_at_named_layers_equals_a_hand_computation(torch_net, image):
    torch = frameworks.torch()
    _, net = torch_net
    layers = ["layer1.conv2", "layer2"]
    run = explain(torch_source(torch_net), image, ["gradcam"], **{"gradcam.layers": layers})
    modules = dict(net.named_modules())
    captured = {}
    hooks = [modules[name].register_forward_hook(lambda _, __, output, name=name: captured.__setitem__(name, output))
             for name in layers]
    logits = net(torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32))
    for hook in hooks:
        hook.remove()
    gradients = torch.autograd.grad(logits[0, run.result.target], [captured[name] for name in layers])
    for name, gradient in zip(layers, gradients):
        activations = captured[name][0].detach().numpy()
        weights = gradient[0].numpy().mean(axis=(1, 2))
        cam = np.maximum(np.tensordot(weights, activations, axes=1), 0)
        if name == "layer1.conv2":  # at the input's resolution: no upsampling
            np.testing.assert_allclose(run.maps[f"gradcam@{name}"], cam, rtol=1e-5, atol=1e-6 * cam.max())
        else:  # 8 x 8, upsampled: its 2 x 2 blocks' mean is close to the map's value there
            upsampled = run.maps[f"gradcam@{name}"]
            assert upsampled.shape == (SIDE, SIDE)
            blocks = upsampled.reshape(8, 2, 8, 2).mean(axis=(1, 3))
            np.testing.assert_allclose(blocks, cam, atol=0.3 * cam.max())
            assert np.corrcoef(blocks.ravel(), cam.ravel())[0, 1] > 0.95


METHODS = ["grad", "gb", "deeplift", "lrp.epsilon", "gradcam", "occlusion"]


def test_the_model_from_a_file_gives_the_maps_of_the_object(torch_net, keras_path, image):
    _, net = torch_net
    from_code = explain(torch_source(torch_net), image, METHODS)
    from_object = heatkit.explain(net, image, METHODS, settings={"input_size": [SIDE, SIDE]}, progress=False)
    tf = heatkit.tensorflow()
    from_keras_file = explain({"model": str(keras_path)}, image, METHODS)
    from_keras_object = heatkit.explain(tf.keras.models.load_model(keras_path), image, METHODS, progress=False)
    for first, second in ((from_code, from_object), (from_keras_file, from_keras_object)):
        assert set(first.maps) == set(METHODS)
        for key in METHODS:
            assert first.maps[key].tobytes() == second.maps[key].tobytes(), key


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_every_method_runs_on_a_residual_batchnorm_network(framework, torch_net, keras_path, image):
    source = torch_source(torch_net) if framework == "torch" else {"model": str(keras_path)}
    cheap = {"pda.levels": 8, "shapley.samples": 2, "lime.num_samples": 50, "shap.nsamples": 50,
             "rise.num_masks": 50, "mp.iterations": 5, "mp.mask_size": 5, "mp.blur_sigma": 2.0}
    run = explain(source, image, "all", **cheap)
    # Meaningful Perturbation optimizes its mask with torch's autograd, Ablation-CAM ablates with a torch hook,
    # innvestigate has no gamma rule: a Keras-only model has none of them
    torch_only = [key for key, method in REGISTRY.items() if list(method.impl) == ["torch"]]
    attention = {key: "LeGrad reads" if key == "legrad" else "the model computes no attention"  # a CNN has none
                 for key, method in REGISTRY.items() if method.needs is Needs.ATTENTION}
    skipped = {key: f"{key} runs on torch" for key in torch_only} if framework == "keras" else attention
    assert set(run.maps) == set(REGISTRY) - set(skipped) and not run.result.failures
    assert {key: reason[:len(skipped[key])] for key, reason in run.result.skipped.items()} == skipped
    for key, attribution in run.maps.items():
        assert attribution.shape == (SIDE, SIDE) and attribution.dtype == np.float32
        assert np.isfinite(attribution).all() and np.abs(attribution).max() > 0, key
    # the identities that tie the maps to the model and to each other
    maps, target = run.maps, run.result.target
    change = float(np.diff(run.model.logits(np.stack([np.zeros_like(image), image]))[:, target])[0])
    assert maps["deeplift"].sum(dtype=np.float64) == pytest.approx(change, rel=1e-4)
    assert maps["ig"].sum(dtype=np.float64) == pytest.approx(change, rel=0.05)  # up to its quadrature over ReLU kinks
    np.testing.assert_allclose(maps["inpgrad"], image[..., 0] * maps["grad"], rtol=1e-5, atol=1e-7)
    if framework == "torch":  # the gradient family against autograd and captum on the module itself
        _, net = torch_net
        expected = references(net, image, target, run.result.layers["gradcam"])
        for key, reference in expected.items():
            np.testing.assert_allclose(maps[key], reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max(), err_msg=key)


def references(net, image, target: int, layer: str) -> dict[str, np.ndarray]:
    """grad: autograd's gradient of the logit; gb: captum's GuidedBackprop; gradcam: ReLU of the
    layer's maps weighted by their mean gradients (autograd), upsampled; guided_gradcam: the two
    references' product."""
    torch = frameworks.torch()
    from captum.attr import GuidedBackprop

    from heatkit.methods._layers import upsample

    double = type(net)().double()  # a copy in float64, without in-place ReLUs, which captum's hooks refuse
    double.load_state_dict(net.state_dict())
    for module in double.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    double.eval()
    inputs = torch.from_numpy(image.transpose(2, 0, 1)[None].copy()).requires_grad_()
    found = {}
    hook = dict(double.named_modules())[layer].register_forward_hook(lambda m, i, output: found.update(a=output))
    logit = double(inputs)[0, target]
    features = found["a"]
    gradient, feature_gradient = torch.autograd.grad(logit, [inputs, features])
    hook.remove()
    cam = torch.relu((feature_gradient.mean(dim=(2, 3), keepdim=True) * features).sum(1))[0].detach().numpy()
    guided = GuidedBackprop(double).attribute(inputs, target=target)[0].sum(0).detach().numpy()
    gradcam = upsample(cam, image.shape[:2])
    return {"grad": gradient[0].sum(0).numpy(), "gb": guided, "gradcam": gradcam, "guided_gradcam": guided * gradcam}


def test_a_pickled_module_needs_trust_and_then_gives_the_codes_maps(torch_net, image, tmp_path, capsys):
    torch = frameworks.torch()
    _, net = torch_net
    torch.save(net, tmp_path / "whole.pt")
    assert run_cli("-mp", tmp_path / "whole.pt", "-ip", "images/camera.png", "-op", tmp_path / "out", "-q") == 2
    assert "--trust-model" in capsys.readouterr().err
    whole = heatkit.explain(str(tmp_path / "whole.pt"), image, ["grad", "lrp.z"], trust=True,
                            settings={"input_size": [SIDE, SIDE]}, progress=False)
    from_code = explain(torch_source(torch_net), image, ["grad", "lrp.z"])
    for key in ("grad", "lrp.z"):
        assert whole.maps[key].tobytes() == from_code.maps[key].tobytes()


def test_torchscript_runs_in_its_own_dtype_and_a_probed_size_is_a_note(torch_net, tmp_path, capsys):
    torch = frameworks.torch()
    _, net = torch_net
    torch.jit.script(net).save(str(tmp_path / "scripted.pt"))
    out = tmp_path / "out"
    assert run_cli("-mp", tmp_path / "scripted.pt", "--trust-model", "-ip", "images/camera.png", "-hm", "grad", "-op", out, "-q") == 0
    err = capsys.readouterr().err
    assert "note: " in err and "--input-size" in err  # a fully convolutional net: its size was probed
    [folder] = out.iterdir()
    record = json.loads((folder / "run.json").read_text())
    assert record["model"]["dtype"] == "float32"
    assert run_cli("-mp", tmp_path / "scripted.pt", "--trust-model", "-ip", "images/camera.png", "-hm", "grad", "-op", out, "-q",
                   "--input-size", "24x16") == 0
    assert "note: " not in capsys.readouterr().err
    newest = max(out.iterdir(), key=lambda path: path.stat().st_mtime_ns)
    assert image_maps(newest)["grad"].shape == (24, 16)
