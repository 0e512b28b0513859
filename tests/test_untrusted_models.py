"""Model files that would run code when loaded are refused, and their payload never runs."""
import json
import os
import subprocess
import sys

import pytest

from conftest import run_cli, image_scores
from heatkit.base import frameworks

MARKER = "payload-ran"


class Payload:
    """Unpickling this calls open(MARKER, 'w'): the classic malicious pickle, harmless here."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("with_card", [False, True])
def test_a_malicious_pickle_in_a_pt_file_is_refused(tmp_path, capsys, with_card):
    torch = frameworks.torch()
    marker = tmp_path / MARKER
    path = tmp_path / "evil.pt"
    torch.save({"weight": Payload(str(marker))}, path)
    if with_card:  # the card makes it a state dict: loaded with weights_only=True
        spec = [{"layer": "flatten", "name": "flatten", "shape": [15, 15, 1]},
                {"layer": "dense", "name": "dense", "inputs": 225, "units": 256, "bias": True}]
        (tmp_path / "evil.json").write_text(json.dumps({"twin": {"spec": spec, "dtype": "float64"},
                                                       "input_shape": [15, 15, 1], "num_classes": 256}))
    assert run_cli("-mp", path, "-hm", "occlusion", "-op", tmp_path / "out") == 2
    assert ("cannot load" if with_card else "not TorchScript") in capsys.readouterr().err
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the file really is a payload: trusting it runs the code
    assert marker.exists()


# Saved in a separate, eager process: Keras 2.14 writes .keras files only with eager execution on.
# The lambda writes the marker whenever Keras calls it, as it does when it rebuilds the model on loading.
SAVE_LAMBDA_MODEL = """
import sys, tensorflow as tf
marker, path = sys.argv[1:]
inputs = tf.keras.Input((6, 6, 1))
touched = tf.keras.layers.Lambda(lambda x, marker=marker: (open(marker, "w").close(), x)[1])(inputs)
outputs = tf.keras.layers.Dense(3, activation="softmax")(tf.keras.layers.Flatten()(touched))
tf.keras.Model(inputs, outputs).save(path)
"""


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_lambda_layer_keras_file_is_refused_unless_trusted(tmp_path, capsys, suffix):
    marker, path = tmp_path / MARKER, tmp_path / f"lambda{suffix}"
    subprocess.run([sys.executable, "-c", SAVE_LAMBDA_MODEL, marker, path], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    marker.unlink()  # building the model ran it once
    assert run_cli("-mp", path, "-hm", "occlusion", "-op", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "Lambda layer" in err and "--trust-model" in err
    assert not marker.exists()
    assert run_cli("-mp", path, "-hm", "occlusion", "-op", tmp_path / "out", "-q", "--trust-model") == 0
    assert marker.exists()


def test_a_trusted_lambda_model_runs_every_kind_of_method_and_its_sanity_check(tmp_path):
    """Trust given once reaches every analysis and every model variant the sanity check saves."""
    tf = frameworks.tensorflow()
    with frameworks.keras_floatx("float64"):
        inputs = tf.keras.Input((6, 6, 1))
        doubled = tf.keras.layers.Lambda(lambda x: 2.0 * x)(inputs)
        hidden = tf.keras.layers.Dense(5, activation="relu", kernel_initializer=tf.keras.initializers.GlorotNormal(
            seed=1))(tf.keras.layers.Flatten()(doubled))
        outputs = tf.keras.layers.Dense(3, activation="softmax", kernel_initializer=tf.keras.initializers.GlorotNormal(
            seed=2))(hidden)
    path = tmp_path / "lambda.h5"
    tf.keras.Model(inputs, outputs).save(path)
    methods = ["grad", "lrp.epsilon", "occlusion"]
    assert run_cli("-mp", path, "--trust-model", "-hm", *methods, "-op", tmp_path / "run", "-q") == 0
    [folder] = (tmp_path / "run").iterdir()
    assert {key for key, row in image_scores(folder)["methods"].items()
            if "seconds" in row} == set(methods)
    assert run_cli("-mp", path, "--trust-model", "--sanity", "noise", "--set", "sanity.noise_levels=[0.5]",
                   "-hm", *methods, "-op", tmp_path / "sanity", "-q") == 0


def test_a_torchscript_file_that_writes_files_runs_only_with_trust(tmp_path, capsys):
    """A scripted forward that fills torch.from_file(path, shared=True) wrote a file at any path
    (a .pth line in site-packages is code at the next start) and ran without --trust-model."""
    torch = frameworks.torch()
    marker = tmp_path / MARKER

    class Writer(torch.nn.Module):
        target: str

        def __init__(self):
            super().__init__()
            self.fc, self.target = torch.nn.Linear(15 * 15, 3), str(marker)

        def forward(self, x):
            written = torch.from_file(self.target, shared=True, size=8, dtype=torch.uint8)
            written.fill_(65)
            return self.fc(x.flatten(1)) + 0 * written.sum()  # used, so that TorchScript keeps the write

    path = tmp_path / "writer.pt"
    torch.jit.script(Writer()).save(str(path))
    assert run_cli("-mp", path, "-hm", "grad", "-op", tmp_path / "out", "-q") == 2
    err = capsys.readouterr().err
    assert "TorchScript, a program" in err and "--trust-model" in err and err.count("\n") == 1
    assert not marker.exists()
    assert run_cli("-mp", path, "--trust-model", "-hm", "grad", "-op", tmp_path / "out", "-q",
                   "--set", "faithfulness.curves=False") == 0
    assert marker.read_bytes() == b"A" * 8  # trusted, it is the program it is


def test_a_rerun_never_takes_trust_from_the_record(tmp_path, capsys):
    """run.json recorded "trust": true for -mp net.py:build, and --rerun ran its code without
    --trust-model."""
    (tmp_path / "net.py").write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n    return "
                                     "torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(15 * 15, 3))\n")
    argv = ["-hm", "grad", "-q", "--set", "faithfulness.curves=False"]
    assert run_cli("-mp", f"{tmp_path / 'net.py'}:build", "--trust-model", "--input-size", "15", "-op",
                   tmp_path / "first", *argv) == 0
    [folder] = (tmp_path / "first").iterdir()
    capsys.readouterr()
    assert run_cli("--rerun", folder / "run.json", "-op", tmp_path / "again", "-q") == 2
    assert "give --trust-model with --rerun" in capsys.readouterr().err
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())
    assert run_cli("--rerun", folder / "run.json", "--trust-model", "-op", tmp_path / "again", "-q") == 0
