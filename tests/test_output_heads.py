"""Every way a classifier's output ends, built as users build it: a softmax as a Keras layer, an
activation function or a forward call; a log-softmax; one sigmoid unit; several; one class;
tuple and dict outputs. Each is checked against the framework's own forward pass and autograd."""
import json

import numpy as np
import pytest

import heatkit
from conftest import image_scores, nchw, random_image, run_cli
from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.model import Model

SIDE = 8
QUIET = {"faithfulness.curves": False}


def image(seed: int = 0, channels: int = 1) -> np.ndarray:
    return random_image(SIDE, channels, seed)


def keras_model(tmp_path, head: str, units: int = 5):
    """Flatten, Dense(units) and the head as written in `head`, saved as .h5; the model object itself
    for an activation given as a function (a file would store its name)."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((SIDE, SIDE, 1))
    flat = layers.Flatten()(inputs)
    dense = dict(kernel_initializer=init.GlorotNormal(seed=1), bias_initializer=init.RandomNormal(seed=2))
    if head == "Softmax layer":
        outputs = layers.Softmax()(layers.Dense(units, **dense)(flat))
    elif head == "tf.nn.softmax activation":
        outputs = layers.Dense(units, activation=tf.nn.softmax, **dense)(flat)
    elif head == "tf.nn.softmax on a tensor":
        outputs = tf.nn.softmax(layers.Dense(units, **dense)(flat))
    elif head == "sigmoid":
        outputs = layers.Dense(units, activation="sigmoid", **dense)(flat)
    elif head == "softmax string":
        outputs = layers.Dense(units, activation="softmax", **dense)(flat)
    else:
        outputs = layers.Dense(units, **dense)(flat)
    if head == "tf.nn.softmax activation":
        return tf.keras.Model(inputs, outputs)
    path = tmp_path / "model.h5"
    tf.keras.Model(inputs, outputs).save(path)
    return path


def keras_predict(path, batch):
    model = Model(path)
    with model.keras.scope():
        return model, model.keras.model.predict(batch, verbose=0)


def dense_kernel(model):
    with model.keras.scope():
        return [layer for layer in model.keras.model.layers if layer.weights][0].get_weights()[0]


@pytest.mark.parametrize("head", ["Softmax layer", "tf.nn.softmax activation", "tf.nn.softmax on a tensor",
                                  "softmax string"])
def test_a_keras_softmax_is_applied_once_however_it_is_written(tmp_path, head):
    """The toolkit's probabilities are Keras' own, and the gradient is of the logit: for Flatten then
    Dense, the Dense weight column of the class."""
    path = keras_model(tmp_path, head)
    batch = np.stack([image(1), image(2)])
    model, predicted = keras_predict(path, batch)
    np.testing.assert_allclose(model.probabilities(batch), predicted, rtol=0, atol=1e-6)
    run = heatkit.explain(model, batch[0], ["grad", "occlusion"], target=3, settings=QUIET, progress=False)
    np.testing.assert_allclose(run.maps["grad"], dense_kernel(model)[:, 3].reshape(SIDE, SIDE), rtol=1e-6, atol=1e-7)
    edited = np.repeat(batch[:1], SIDE * SIDE, axis=0).reshape(SIDE * SIDE, -1)
    edited[np.arange(SIDE * SIDE), np.arange(SIDE * SIDE)] = 0.0
    with model.keras.scope():
        after = model.keras.model.predict(edited.reshape(-1, SIDE, SIDE, 1), verbose=0)[:, 3]
    np.testing.assert_allclose(run.maps["occlusion"], (predicted[0, 3] - after).reshape(SIDE, SIDE), atol=1e-6)


class Net:
    """PyTorch classifiers on 8 x 8 gray images, ending as `head` says."""

    @staticmethod
    def build(head: str, units: int = 5, dtype: str = "float64"):
        torch = frameworks.torch()
        nn = torch.nn
        torch.manual_seed(0)

        class Classifier(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 7), nn.ReLU())
                self.fc = nn.Linear(7, units)

            def forward(self, x):
                z = self.fc(self.body(x))
                if head == "torch.softmax":
                    return torch.softmax(z, dim=1)
                if head == "Tensor.softmax":
                    return z.softmax(-1)
                if head == "log_softmax":
                    return torch.nn.functional.log_softmax(z, dim=-1)
                if head == "sigmoid":
                    return torch.sigmoid(z)
                if head == "tuple":
                    return z, self.body(x)
                if head == "dict":
                    return {"aux": self.body(x), "logits": z}
                return z

        if head == "nn.Softmax":
            net = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 7), nn.ReLU(), nn.Linear(7, units),
                                nn.Softmax(dim=-1))
        else:
            net = Classifier()
        return net.to(getattr(torch, dtype)).eval()

    @staticmethod
    def logits(net, inputs):
        """The net's logits of an NCHW tensor by hand: everything but its final activation."""
        torch = frameworks.torch()
        return net[:-1](inputs) if isinstance(net, torch.nn.Sequential) else net.fc(net.body(inputs))


@pytest.mark.parametrize("head", ["torch.softmax", "Tensor.softmax", "nn.Softmax", "log_softmax"])
def test_a_pytorch_softmax_in_forward_or_as_a_module_is_cut_off(head):
    """Probabilities are the module's own output (exp of it for a log-softmax); the gradient is the
    logit's, by autograd on the layers below the softmax."""
    torch = frameworks.torch()
    net = Net.build(head)
    batch = np.stack([image(1), image(2)])
    model = Model(net)
    with torch.no_grad():
        output = net(nchw(batch, dtype=None)).numpy()
    expected = np.exp(output) if head == "log_softmax" else output
    np.testing.assert_allclose(model.probabilities(batch), expected, rtol=0, atol=1e-12)
    inputs = nchw(batch[:1], dtype=None).requires_grad_()
    (gradient,) = torch.autograd.grad(Net.logits(net, inputs)[0, 2], inputs)
    run = heatkit.explain(model, batch[0], ["grad", "ig", "deeplift", "lrp.epsilon"], target=2, settings=QUIET,
                          progress=False)
    np.testing.assert_allclose(run.maps["grad"], gradient[0, 0].numpy(), rtol=1e-6, atol=1e-9)
    with torch.no_grad():
        change = float(Net.logits(net, inputs)[0, 2] - Net.logits(net, torch.zeros_like(inputs))[0, 2])
    # complete: they explain the logit, not the probability (IG up to its quadrature over ReLU kinks)
    assert abs(run.maps["deeplift"].sum() - change) < 1e-6 * max(1.0, abs(change))
    assert abs(run.maps["ig"].sum() - change) < 0.05 * abs(change)
    assert np.abs(run.maps["lrp.epsilon"]).max() > 0  # LRP starts from the logit below the softmax


def test_a_torchscript_softmax_in_forward_is_inverted_and_said(tmp_path, capsys):
    """TorchScript runs its forward in C++: the logits are log p, and the run says so."""
    torch = frameworks.torch()
    path = tmp_path / "net.pt"
    torch.jit.trace(Net.build("torch.softmax"), nchw(image()[None], dtype=None)).save(str(path))
    model = Model(path, trust=True)
    assert model.head.activation == "softmax" and not model.head.below
    batch = np.stack([image(1)])
    np.testing.assert_allclose(model.torch.logits(batch), np.log(model.probabilities(batch)), rtol=1e-12)
    assert any("log-probability" in note for note in model.notes)
    assert run_cli("-mp", path, "--trust-model", "-ip", _png(tmp_path), "-hm", "grad", "-op", tmp_path / "out", "-q") == 0
    assert "note: " in capsys.readouterr().err and "log-probability" in _scores(tmp_path / "out")["notes"][0]


def test_a_scripted_sequential_ending_in_a_softmax_is_cut_below_it(tmp_path):
    torch = frameworks.torch()
    path = tmp_path / "seq.pt"
    net = Net.build("nn.Softmax")
    torch.jit.script(net).save(str(path))
    model = Model(path, trust=True)
    assert model.head.activation == "softmax" and model.head.below and not model.notes
    batch = np.stack([image(3)])
    np.testing.assert_allclose(model.torch.logits(batch), Net.logits(net, nchw(batch, dtype=None)).detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_a_binary_sigmoid_classifier_is_two_classes_explained_through_its_logit(tmp_path, framework):
    """One sigmoid unit: probabilities (1 - p, p), class 1's logit s and class 0's -s. Occlusion,
    PDA and the faithfulness scores see the probability move."""
    torch = frameworks.torch()
    x = image(4)
    if framework == "keras":
        model = Model(keras_model(tmp_path, "sigmoid", units=1))
        with model.keras.scope():
            p = float(model.keras.model.predict(x[None], verbose=0)[0, 0])
        kernel = dense_kernel(model)[:, 0].reshape(SIDE, SIDE)
    else:
        net = Net.build("sigmoid", units=1)
        model = Model(net)
        with torch.no_grad():
            p = float(net(nchw(x[None], dtype=None))[0, 0])
        inputs = nchw(x[None], dtype=None).requires_grad_()
        (kernel,) = torch.autograd.grad(Net.logits(net, inputs)[0, 0], inputs)
        kernel = kernel[0, 0].numpy()
    assert model.num_classes == 2
    np.testing.assert_allclose(model.probabilities(x[None])[0], [1 - p, p], atol=1e-6)
    settings = {"faithfulness.curves": True, "pda.levels": 8}
    for target, sign in ((1, 1.0), (0, -1.0)):
        run = heatkit.explain(model, x, ["grad", "occlusion", "pda"], target=target, settings=settings, progress=False)
        np.testing.assert_allclose(run.maps["grad"], sign * kernel, rtol=1e-5, atol=1e-7)
        assert np.abs(run.maps["occlusion"]).max() > 1e-4 and np.isfinite(run.maps["pda"]).all()
        scores = run.scores["occlusion"]
        assert scores["deletion_area"] < 0.999 and scores["aopc"] > 1e-3
    assert any("two classes" in note for note in model.notes)


def test_one_unbounded_keras_unit_is_a_logit_though_the_probes_stay_in_0_1(tmp_path):
    """Dense(1) without an activation, its output in [0, 1] on the probe inputs and 1.54 on a white
    image: a logit s, two classes (sigmoid(-s), sigmoid(s)); read as a sigmoid, its probabilities
    were NaN there."""
    tf = frameworks.tensorflow()
    inputs = tf.keras.Input((SIDE, SIDE, 1))
    dense = tf.keras.layers.Dense(1)
    model = tf.keras.Model(inputs, dense(tf.keras.layers.Flatten()(inputs)))
    dense.set_weights([np.full((SIDE * SIDE, 1), 0.04), np.array([0.1])])
    model.save(tmp_path / "logit.h5")
    white = np.ones((SIDE, SIDE, 1))
    run = heatkit.explain(tmp_path / "logit.h5", white, ["grad"], settings={"faithfulness.curves": False},
                          progress=False)
    s = 0.1 + 0.04 * SIDE * SIDE
    np.testing.assert_allclose(run.probabilities, [1 / (1 + np.exp(s)), 1 / (1 + np.exp(-s))], rtol=1e-5)
    np.testing.assert_allclose(run.maps["grad"], np.full((SIDE, SIDE), 0.04), rtol=1e-5)  # class 1, the logit's


def test_a_multi_label_sigmoid_head_explains_each_label_as_its_own_yes_or_no(tmp_path):
    torch = frameworks.torch()
    net = Net.build("sigmoid", units=4)
    model = Model(net)
    batch = np.stack([image(5), image(6)])
    with torch.no_grad():
        expected = net(nchw(batch, dtype=None)).numpy()
    np.testing.assert_allclose(model.probabilities(batch), expected, atol=1e-12)
    assert model.num_classes == 4 and any("multi-label" in note for note in model.notes)
    assert "multi-label" in model.head.record()["explains"]


def test_a_softmax_over_one_class_is_refused(tmp_path, capsys):
    torch = frameworks.torch()
    keras_path = keras_model(tmp_path, "softmax string", units=1)
    script = tmp_path / "one.pt"
    torch.jit.script(Net.build("nn.Softmax", units=1)).save(str(script))
    for path in (keras_path, script):
        with pytest.raises(UsageError, match="one class"):
            Model(path, trust=True).probabilities(image()[None])
        assert run_cli("-mp", path, "--trust-model", "-hm", "occlusion", "-op", tmp_path / "out") == 2
        assert "one class" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("head", ["tuple", "dict"])
def test_tuple_and_dict_outputs_give_the_classifier_tensor_and_say_which(tmp_path, head):
    torch = frameworks.torch()
    net = Net.build(head)
    x = image(7)
    run = heatkit.explain(net, x, ["grad", "occlusion"], target=1, settings=QUIET, progress=False)
    inputs = nchw(x[None], dtype=None).requires_grad_()
    (gradient,) = torch.autograd.grad(Net.logits(net, inputs)[0, 1], inputs)
    np.testing.assert_allclose(run.maps["grad"], gradient[0, 0].numpy(), rtol=1e-6, atol=1e-9)
    folder = run.save(tmp_path)
    recorded = json.loads((folder / "run.json").read_text())["model"]["head"]
    assert recorded["output"] == ("[0]" if head == "tuple" else "['logits']")
    chosen = heatkit.explain(net, x, ["grad"], target=1, settings={**QUIET, "output": "aux" if head == "dict" else 1},
                             progress=False)
    assert chosen.model.num_classes == 7  # the other output, read as 7 classes


def _png(folder):
    from PIL import Image

    path = folder / "x.png"
    Image.fromarray((image(9)[..., 0] * 255).astype(np.uint8)).save(path)
    return path


def _scores(out):
    [folder] = out.iterdir()
    return image_scores(folder)
