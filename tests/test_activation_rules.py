"""Backward rules on the activations users' models have: Guided Backprop and DeConvNet through
every piecewise-linear rectifier against a hand computation, and not applicable on smooth ones;
DeepLIFT and LRP on a small ViT, exact or not applicable; CAM on the heads users write."""
import numpy as np
import pytest

import heatkit
from conftest import random_image
from heatkit.base import frameworks
from heatkit.model import Model

SIDE = 6
QUIET = {"faithfulness.curves": False}


def image(seed: int = 0) -> np.ndarray:
    return random_image(SIDE, 1, seed)


# ---- rectifiers: an MLP of two hidden layers, each rectified ----
RECTIFIERS = {  # name: (activation, its slope), as numpy functions of the pre-activation
    "ReLU6": (lambda z: np.clip(z, 0, 6), lambda z: ((z > 0) & (z < 6)).astype(float)),
    "LeakyReLU": (lambda z: np.where(z > 0, z, 0.2 * z), lambda z: np.where(z > 0, 1.0, 0.2)),
    "Hardtanh": (lambda z: np.clip(z, -4, 4), lambda z: ((z > -4) & (z < 4)).astype(float)),
}


def mlp_weights(seed: int = 3):
    """Weights large enough that the rectifiers clip and saturate on the test image."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 2.0, (SIDE * SIDE, 9)), rng.normal(0, 1.5, 9), rng.normal(0, 1.0, (9, 8)),
            rng.normal(0, 1.0, 8), rng.normal(0, 1.0, (8, 4)), rng.normal(0, 0.1, 4)]


def by_hand(rectifier: str, x: np.ndarray, target: int, rule: str) -> np.ndarray:
    """The rule's backward pass through the MLP, written out: the signal at each rectifier is
    rectified (both rules) and, for Guided Backprop, times the rectifier's slope."""
    activation, slope = RECTIFIERS[rectifier]
    w1, b1, w2, b2, w3, _ = mlp_weights()
    z1 = x.reshape(-1) @ w1 + b1
    z2 = activation(z1) @ w2 + b2
    signal = w3[:, target]
    for z, weight in ((z2, w2), (z1, w1)):
        signal = np.maximum(signal, 0) * (slope(z) if rule == "gb" else 1.0)
        signal = weight @ signal
    return signal.reshape(SIDE, SIDE)


def torch_mlp(rectifier: str):
    torch = frameworks.torch()
    nn = torch.nn
    made = {"ReLU6": nn.ReLU6, "LeakyReLU": lambda: nn.LeakyReLU(0.2), "Hardtanh": lambda: nn.Hardtanh(-4, 4)}[rectifier]
    net = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 9), made(), nn.Linear(9, 8), made(), nn.Linear(8, 4))
    with torch.no_grad():
        for layer, (kernel, bias) in zip([net[1], net[3], net[5]], zip(mlp_weights()[::2], mlp_weights()[1::2])):
            layer.weight.copy_(torch.from_numpy(kernel.T))
            layer.bias.copy_(torch.from_numpy(bias))
    return net.double().eval()


def keras_mlp(rectifier: str, tmp_path):
    tf = frameworks.tensorflow()
    layers = tf.keras.layers
    made = {"ReLU6": lambda: layers.ReLU(max_value=6.0), "LeakyReLU": lambda: layers.LeakyReLU(0.2)}[rectifier]
    with frameworks.keras_floatx("float64"):
        inputs = tf.keras.Input((SIDE, SIDE, 1))
        hidden = made()(layers.Dense(9)(layers.Flatten()(inputs)))
        model = tf.keras.Model(inputs, layers.Dense(4)(made()(layers.Dense(8)(hidden))))
        model.set_weights(mlp_weights())
    path = tmp_path / "mlp.h5"
    model.save(path)
    return path


@pytest.mark.parametrize("framework, rectifier", [("torch", "ReLU6"), ("torch", "LeakyReLU"), ("torch", "Hardtanh"),
                                                  ("keras", "ReLU6"), ("keras", "LeakyReLU")])
def test_guided_backprop_and_deconvnet_follow_every_rectifier(framework, rectifier, tmp_path):
    x = image(1)
    model = Model(torch_mlp(rectifier) if framework == "torch" else keras_mlp(rectifier, tmp_path))
    run = heatkit.explain(model, x, ["grad", "gb", "deconvnet"], target=2, settings=QUIET, progress=False)
    for key in ("gb", "deconvnet"):
        expected = by_hand(rectifier, x, 2, key)
        np.testing.assert_allclose(run.maps[key], expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
        assert np.abs(run.maps[key] - run.maps["grad"]).max() > 0.1 * np.abs(expected).max(), key  # not the gradient


def test_smooth_activations_take_the_guided_rule_of_the_literature_on_pytorch(tmp_path):
    """On PyTorch, GELU, SiLU and sigmoid take Guided Backprop's rule for smooth activations, the
    positive part of the signal where the input is positive, times the slope, and DeConvNet's, the
    positive part of the signal; the run says which took it. By hand on Linear, activation,
    Linear. Keras has no such rule yet: it says which operation has none."""
    torch = frameworks.torch()
    nn = torch.nn
    x = image()
    for activation, named in ((nn.GELU(), "gelu"), (nn.SiLU(), "silu"), (nn.Sigmoid(), "sigmoid")):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 5), activation, nn.Linear(5, 3)).double()
        run = heatkit.explain(net, x, ["gb", "deconvnet"], target=2, settings=QUIET, progress=False)
        first, second = net[1], net[3]
        hidden = first(torch.from_numpy(x.reshape(1, -1)))[0].detach()
        slope = torch.autograd.functional.jacobian(activation, hidden).diagonal()
        signal = second.weight[2].detach().clamp(min=0)
        guided = (signal * slope * (hidden > 0)) @ first.weight.detach()
        deconvolved = signal @ first.weight.detach()
        for key, expected in (("gb", guided), ("deconvnet", deconvolved)):
            np.testing.assert_allclose(run.maps[key], expected.reshape(SIDE, SIDE).numpy(), rtol=1e-6, atol=1e-9)
        assert any(note.startswith(f"Guided Backprop: {named} took the guided rule") for note in run.notes), run.notes
    tf = frameworks.tensorflow()
    inputs = tf.keras.Input((SIDE, SIDE, 1))
    hidden = tf.keras.layers.Dense(5, activation="gelu")(tf.keras.layers.Flatten()(inputs))
    path = tmp_path / "gelu.h5"
    tf.keras.Model(inputs, tf.keras.layers.Dense(3)(hidden)).save(path)
    run = heatkit.explain(path, image(), ["gb", "deconvnet"], settings=QUIET, progress=False)
    assert all("Erf" in run.result.skipped[key] or "Tanh" in run.result.skipped[key] for key in ("gb", "deconvnet"))


# ---- a small ViT: patch embedding, class token, attention, LayerNorm, GELU ----
VIT_CODE = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.heads = heads

    def forward(self, x):
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attention = (q @ k.transpose(-2, -1) * (dim // self.heads) ** -0.5).softmax(dim=-1)
        x = x + self.proj((attention @ v).transpose(1, 2).reshape(batch, tokens, dim))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, side=8, patch=4, dim=16, heads=2, depth=2, classes=4):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.position = nn.Parameter(torch.randn(1, (side // patch) ** 2 + 1, dim) * 0.5)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.position
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def build():
    torch.manual_seed(0)
    return ViT().eval()
"""


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    (folder / "vit.py").write_text(VIT_CODE)
    return str(folder / "vit.py") + ":build"


def test_on_a_vit_alpha_beta_is_not_applicable_lrp_takes_attnlrp_and_deeplift_and_ig_are_complete(vit):
    """The alpha-beta rules give no exact answer through attention and LayerNorm: they say so
    instead of a map that does not sum to the logit (-3.8e5 against 0.55 before). LRP-Z and
    LRP-epsilon take AttnLRP's rules (tests/test_modern_architectures.py checks them against lxt);
    DeepLIFT's rules for products, normalizations and the softmax keep it complete; Integrated
    Gradients is model-agnostic and stays complete."""
    torch = frameworks.torch()
    x = np.random.default_rng(4).random((8, 8, 3))
    methods = ["deeplift", "lrp", "gb", "deconvnet", "ig", "grad", "gradcam"]
    run = heatkit.explain(vit, x, methods, target=1, trust=True, settings={**QUIET, "ig.steps": 64, "input_size": [8, 8]},
                          progress=False)
    skipped = run.result.skipped
    for key in ("lrp.alpha1beta0", "lrp.alpha2beta1", "gb", "deconvnet"):
        assert key in skipped, key
    assert "LayerNorm" in skipped["lrp.alpha1beta0"] and "AttnLRP" in skipped["lrp.alpha1beta0"]
    assert np.isfinite(run.maps["lrp.z"]).all() and np.abs(run.maps["lrp.epsilon"]).max() > 0
    assert "gelu" in skipped["gb"] or "softmax" in skipped["gb"]
    net = run.model.torch
    with torch.no_grad():
        change = float(net.forward(net.tensor(x[None]))[0, 1] - net.forward(net.tensor(np.zeros((1, 8, 8, 3))))[0, 1])
    assert abs(run.maps["ig"].sum() - change) < 1e-3 * abs(change)
    assert abs(run.maps["deeplift"].sum() - change) < 1e-4 * abs(change)
    assert "gradcam" in run.maps  # at the patch embedding, the one convolution


def test_keras_deeplift_and_lrp_refuse_attention_and_a_softmax_inside(tmp_path):
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((8, 8, 1))
    tokens = layers.Reshape((4, 16))(layers.Conv2D(16, 4, 4, kernel_initializer=init.GlorotNormal(seed=1))(inputs))
    tokens = layers.LayerNormalization()(tokens + layers.MultiHeadAttention(2, 8)(tokens, tokens))
    outputs = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(tokens))
    path = tmp_path / "attention.h5"
    tf.keras.Model(inputs, outputs).save(path)
    run = heatkit.explain(path, np.random.default_rng(2).random((8, 8, 1)), ["deeplift", "lrp.epsilon", "grad"],
                          settings=QUIET, progress=False)
    for key in ("deeplift", "lrp.epsilon"):
        assert "Softmax" in run.result.skipped[key] or "product" in run.result.skipped[key], key
    assert "grad" in run.maps


# ---- CAM on the heads users write ----
def torch_cam_nets():
    torch = frameworks.torch()
    nn = torch.nn

    class MeanHead(nn.Module):  # functional ReLUs, x.mean((2, 3)), then Linear
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1), nn.Linear(6, 5)

        def features(self, x):
            return torch.relu(self.c2(torch.relu(self.c1(x))))

        def forward(self, x):
            return self.fc(self.features(x).mean((2, 3)))

    class PoolDropoutHead(MeanHead):  # AdaptiveAvgPool2d(1), Flatten, Dropout, Linear
        def __init__(self):
            super().__init__()
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3))

        def forward(self, x):
            return self.fc(self.head(self.features(x)))

    torch.manual_seed(0)
    return {"x.mean((2, 3))": MeanHead().double(), "pool, flatten, dropout": PoolDropoutHead().double()}


@pytest.mark.parametrize("head", ["x.mean((2, 3))", "pool, flatten, dropout"])
def test_cam_finds_the_global_average_through_dropout_flatten_and_a_mean(head):
    torch = frameworks.torch()
    net = torch_cam_nets()[head]
    x = np.random.default_rng(3).random((10, 10, 3))
    run = heatkit.explain(net, x, ["cam"], target=2, settings={**QUIET, "input_size": [10, 10]}, progress=False)
    with torch.no_grad():
        maps = net.features(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0].numpy()
    expected = np.tensordot(net.fc.weight[2].detach().numpy(), maps, axes=1)  # 10 x 10: no upsampling
    np.testing.assert_allclose(run.maps["cam"], expected, rtol=1e-5, atol=1e-6)
    assert net.training  # explained in eval mode, given back in the mode it came in


@pytest.mark.parametrize("pooling", ["keepdims, flatten", "reduce_mean"])
def test_keras_cam_finds_the_global_average_through_flatten_and_reduce_mean(pooling, tmp_path):
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((10, 10, 3))
    maps = layers.Conv2D(4, 3, padding="same", activation="relu", name="maps",
                         kernel_initializer=init.GlorotNormal(seed=1))(inputs)
    pooled = layers.Flatten()(layers.GlobalAveragePooling2D(keepdims=True)(maps)) if pooling != "reduce_mean" else \
        tf.reduce_mean(maps, axis=[1, 2])
    outputs = layers.Dense(3, activation="softmax", name="fc", kernel_initializer=init.GlorotNormal(seed=2))(
        layers.Dropout(0.2)(pooled))
    path = tmp_path / "cam.h5"
    tf.keras.Model(inputs, outputs).save(path)
    x = np.random.default_rng(5).random((10, 10, 3))
    model = Model(path)
    run = heatkit.explain(model, x, ["cam"], target=1, settings=QUIET, progress=False)
    with model.keras.scope():
        features = tf.keras.Model(model.keras.model.inputs, model.keras.model.get_layer("maps").output).predict(
            x[None], verbose=0)[0]
        kernel = model.keras.model.get_layer("fc").get_weights()[0]
    np.testing.assert_allclose(run.maps["cam"], features @ kernel[:, 1], rtol=1e-5, atol=1e-6)
