"""Parametric and leaky rectifiers (PReLU, LeakyReLU, ELU) on Keras and PyTorch nets with the same
weights: every rule-based map agrees between the frameworks, and LRP conserves on the bias-free
net. Keras' PReLU layer computes relu(x) - alpha relu(-x), which Keras' rules once saw as two
rectifiers (Guided Backprop passed min(alpha g, 0) below 0, LRP squared the slope)."""
import numpy as np
import pytest

import heatkit
from heatkit.base import frameworks

SIDE, WIDTHS, CLASSES = 6, (9, 8), 4
KEYS = ["grad", "gb", "deconvnet", "deeplift", "lrp.z", "lrp.epsilon", "lrp.alpha2beta1"]


def weights(bias: bool):
    """Dense kernels (in, out), biases, and each hidden layer's slopes below 0."""
    rng = np.random.default_rng(3)
    sizes = (SIDE * SIDE, *WIDTHS, CLASSES)
    kernels = [rng.normal(0, 1.5, (a, b)) for a, b in zip(sizes, sizes[1:])]
    biases = [rng.normal(0, 1.0, b) * bias for b in sizes[1:]]
    slopes = [rng.uniform(0.05, 0.6, width) for width in WIDTHS]
    return kernels, biases, slopes


def torch_net(rectifier: str, bias: bool):
    torch = frameworks.torch()
    nn = torch.nn
    kernels, biases, slopes = weights(bias)
    layers = [nn.Flatten()]
    for index, (kernel, offset) in enumerate(zip(kernels, biases)):
        linear = nn.Linear(*kernel.shape, bias=bias)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T))
            if bias:
                linear.bias.copy_(torch.from_numpy(offset))
        layers.append(linear)
        if index < len(WIDTHS):
            activation = {"PReLU": lambda: nn.PReLU(WIDTHS[index]), "LeakyReLU": lambda: nn.LeakyReLU(0.3),
                          "ELU": lambda: nn.ELU(0.7)}[rectifier]()
            if rectifier == "PReLU":
                with torch.no_grad():
                    activation.weight.copy_(torch.from_numpy(slopes[index]))
            layers.append(activation)
    return nn.Sequential(*layers).double().eval()


def keras_net(rectifier: str, bias: bool, path):
    tf = frameworks.tensorflow()
    layers = tf.keras.layers
    kernels, biases, slopes = weights(bias)
    with frameworks.keras_floatx("float64"):
        inputs = tf.keras.Input((SIDE, SIDE, 1))
        hidden = layers.Flatten()(inputs)
        for index, (kernel, offset) in enumerate(zip(kernels, biases)):
            dense = layers.Dense(kernel.shape[1], use_bias=bias)
            hidden = dense(hidden)
            dense.set_weights([kernel, offset] if bias else [kernel])
            if index < len(WIDTHS):
                activation = {"PReLU": layers.PReLU, "LeakyReLU": lambda: layers.LeakyReLU(0.3),
                              "ELU": lambda: layers.ELU(0.7)}[rectifier]()
                hidden = activation(hidden)
                if rectifier == "PReLU":
                    activation.set_weights([slopes[index]])
        tf.keras.Model(inputs, hidden).save(path)
    return path


@pytest.mark.parametrize("rectifier", ["PReLU", "LeakyReLU", "ELU"])
@pytest.mark.parametrize("bias", [True, False])
def test_keras_and_pytorch_apply_the_same_rule_to_parametric_rectifiers(rectifier, bias, tmp_path):
    x = np.random.default_rng(1).random((SIDE, SIDE, 1))
    settings = {"faithfulness.curves": False}
    keras = heatkit.explain(keras_net(rectifier, bias, tmp_path / "net.h5"), x, KEYS, target=2, settings=settings,
                            progress=False)
    torch = heatkit.explain(torch_net(rectifier, bias), x, KEYS, target=2, settings=settings, progress=False)
    for key in KEYS:  # ELU, smooth, takes the guided rule for smooth activations on both
        expected = torch.maps[key]
        np.testing.assert_allclose(keras.maps[key], expected, rtol=0, atol=1e-5 * np.abs(expected).max(), err_msg=key)
    if not bias:  # LRP conserves the logit: every activation passes its relevance on whole
        logit = torch.model.logits(x[None])[0, 2]
        for key in ("lrp.z", "lrp.epsilon", "lrp.alpha2beta1"):
            for run in (keras, torch):
                assert run.maps[key].sum() == pytest.approx(logit, rel=1e-5), key


def test_hard_swish_is_one_activation_on_pytorch_and_a_product_on_keras(tmp_path):
    """keras.applications writes hard-swish as x * relu6(x + 3) / 6, a product of two activations,
    which no guided rule covers: Keras' Guided Backprop and DeConvNet once ran on it, and now say
    why not. PyTorch's nn.Hardswish is one elementwise activation, which takes the guided rule for
    smooth activations, said in the run's notes."""
    tf = frameworks.tensorflow()
    layers = tf.keras.layers
    inputs = tf.keras.Input((SIDE, SIDE, 1))
    hidden = layers.Dense(5)(layers.Flatten()(inputs))
    gate = layers.Rescaling(1 / 6)(layers.ReLU(6.0)(layers.Rescaling(1.0, offset=3.0)(hidden)))
    path = tmp_path / "hard_swish.h5"
    tf.keras.Model(inputs, layers.Dense(3)(layers.Multiply()([hidden, gate]))).save(path)
    nn = frameworks.torch().nn
    settings, x = {"faithfulness.curves": False}, np.full((SIDE, SIDE, 1), 0.5)
    keras = heatkit.explain(path, x, ["gb", "deconvnet", "grad"], settings=settings, progress=False)
    assert set(keras.result.skipped) == {"gb", "deconvnet"}
    assert "a product of two activations" in keras.result.skipped["gb"]
    net = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 5), nn.Hardswish(), nn.Linear(5, 3))
    torch = heatkit.explain(net, x, ["gb", "deconvnet", "grad"], settings=settings, progress=False)
    assert not torch.result.skipped and any("hardswish took the guided rule" in note for note in torch.notes)
