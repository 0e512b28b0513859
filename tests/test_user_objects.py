"""What the toolkit does to, and says about, the user's own objects and files: code without
weights, a module in training mode, a Keras model that rescales its input as bytes."""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import heatkit
from conftest import replace_method, run_cli, image_scores
from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.model import Model

CODE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(4, 3))
"""


def test_code_without_weights_says_no_weights_were_given_and_records_none(tmp_path, capsys):
    (tmp_path / "net.py").write_text(CODE)
    code = run_cli("-mp", f"{tmp_path / 'net.py'}:build", "--trust-model", "--input-size", "12", "-hm", "grad",
                   "-op", tmp_path / "out", "-q")
    assert code == 0
    assert "note: " in capsys.readouterr().err
    [folder] = (tmp_path / "out").iterdir()
    record = json.loads((folder / "run.json").read_text())
    assert record["model"]["weights"] is None
    assert any("given no --weights: it runs with the weights its code initializes" in note
               for note in image_scores(folder)["notes"])  # what is known, not a guess that they are random


def test_a_module_in_training_mode_is_explained_in_eval_mode_and_given_back_untouched():
    """explain() left the caller's module in eval mode; now every training flag, parameter, buffer
    and requires_grad is as it was, and the maps are those of the module in eval mode."""
    torch = frameworks.torch()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
            self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
            self.drop, self.fc = nn.Dropout(0.5), nn.Linear(6, 4)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(x + self.bn2(self.conv2(x)))
            return self.fc(self.drop(x.mean((2, 3))))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # trained-looking BatchNorm statistics
        for bn in (net.bn1, net.bn2):
            bn.running_mean.normal_(0, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    net.train()
    net.fc.weight.requires_grad_(False)
    before = copy.deepcopy(net.state_dict())
    flags = {name: module.training for name, module in net.named_modules()}
    grads = {name: p.requires_grad for name, p in net.named_parameters()}
    evaluated = copy.deepcopy(net).eval()
    x = np.random.default_rng(1).random((10, 10, 3))
    methods = ["grad", "gb", "deeplift", "lrp.epsilon", "lrp.alpha1beta0", "cam", "gradcam", "occlusion", "mp"]
    settings = {"faithfulness.curves": False, "input_size": [10, 10], "mp.iterations": 3, "occlusion.patch": 3}
    run = heatkit.explain(net, x, methods, target=2, settings=settings, progress=False)
    assert not run.result.failures and not run.result.skipped
    assert {name: module.training for name, module in net.named_modules()} == flags
    assert {name: p.requires_grad for name, p in net.named_parameters()} == grads
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    reference = heatkit.explain(evaluated, x, ["grad", "occlusion"], target=2, settings=settings, progress=False)
    for key in ("grad", "occlusion"):
        np.testing.assert_array_equal(run.maps[key], reference.maps[key])
    assert {name: module.training for name, module in net.named_modules()} == flags


def test_a_module_is_given_back_in_its_training_mode_when_a_call_raises(monkeypatch):
    torch = frameworks.torch()
    nn = torch.nn
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3)).train()

    def bad_setting(model, image, target, params):
        assert not net.training  # evaluated in eval mode
        raise UsageError("a setting the method refuses")

    replace_method(monkeypatch, "grad", bad_setting)
    with pytest.raises(UsageError):
        heatkit.explain(net, np.zeros((4, 4, 1)), ["grad"], settings={"faithfulness.curves": False}, progress=False)
    assert all(module.training for module in net.modules())


RESCALING = """
import sys, tensorflow as tf
layers = tf.keras.layers
inputs = tf.keras.Input((12, 12, 3))
hidden = layers.Conv2D(4, 3, activation="relu")(layers.Rescaling(1 / 255.0)(inputs))
tf.keras.Model(inputs, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(hidden))).save(sys.argv[1])
"""


def keras_rescaling(tmp_path, suffix: str):
    """A functional model that rescales bytes, saved by an eager training script (as users save)."""
    path = tmp_path / f"rescaling{suffix}"
    subprocess.run([sys.executable, "-c", RESCALING, path], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return path


@pytest.mark.parametrize("source", [".h5", ".keras", "EfficientNetB0"])
def test_a_keras_model_that_rescales_bytes_given_unit_pixels_gets_its_note(source, tmp_path):
    """The note was promised but never given for functional .h5, .keras and EfficientNetB0 models."""
    tf = frameworks.tensorflow()
    if source == "EfficientNetB0":
        model = Model(tf.keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=3))
    else:
        model = Model(keras_rescaling(tmp_path, source))
    assert any("Rescaling" in note and "--preprocess byte" in note for note in model.notes)
