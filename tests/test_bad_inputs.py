"""The catalogue of bad inputs: each one, given to the CLI, is one line naming the problem and the
fix, exit code 2, no traceback, and no run folder left behind.

CATALOGUE maps a case to (the arguments, made in a fresh folder `t` with the small twin `m`, and a
piece of the expected message). Arguments without -hm run grad (but --rerun, which takes none).
"""
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from heatkit.base import frameworks


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def png(path, size=(64, 48)):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size[::-1], dtype=np.uint8)).save(path, format="PNG")
    return path


def corrupt_png(t):
    """A PNG whose pixel data has a flipped byte: its checksum no longer matches."""
    data = bytearray(png(t / "flipped.png").read_bytes())
    data[data.index(b"IDAT") + 20] ^= 0xFF
    return write(t / "flipped.png", bytes(data))


def nan_tiff(t):
    """A float TIFF whose pixels are NaN."""
    Image.fromarray(np.full((15, 15), np.nan, np.float32), mode="F").save(t / "nan.tif")
    return t / "nan.tif"


def huge_png(t):
    """The header of a 30000 x 30000 PNG, 900 megapixels: past PIL's own limit of 179."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(  # noqa: E731
        ">I", zlib.crc32(kind + data))
    return write(t / "huge.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def fifo(t):
    import os

    os.mkfifo(t / "pipe.png")
    return t / "pipe.png"


def float_tiff(t, value: float):
    """A float TIFF with one pixel of `value` (inf, 1e30): clipped to white before, where NaN was refused."""
    pixels = np.full((15, 15), 0.5, np.float32)
    pixels[3, 4] = value
    Image.fromarray(pixels, mode="F").save(t / "float.tif")
    return t / "float.tif"


def pickle_as_safetensors(t):
    torch = frameworks.torch()
    torch.save({"conv.weight": torch.zeros(2)}, t / "w.safetensors")
    return t / "w.safetensors"


def huge_onnx(t):
    """A linear model whose input declares 100000 x 100000 pixels."""
    import onnx
    from onnx import helper

    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"])], "huge",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 100000, 100000])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, None])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), t / "huge.onnx")
    return t / "huge.onnx"


def saved_model_folder(t):
    (t / "saved").mkdir()
    return write(t / "saved" / "saved_model.pb", b"")


def dense_keras_model(t):
    """A Keras classifier of 10 numbers, not of an image."""
    tf = frameworks.tensorflow()
    inputs = tf.keras.Input((10,))
    path = t / "tabular.h5"
    tf.keras.Model(inputs, tf.keras.layers.Dense(3, activation="softmax")(inputs)).save(path)
    return path


def state_dict_without_card(t, m):
    """The twin's state dict alone: without its card it can only be read as TorchScript."""
    return shutil.copy(m.with_suffix(".pt"), t / "weights.pt")


def torchscript_with_card(t, m):
    """A TorchScript file next to a card that says it is a state dict."""
    torch = frameworks.torch()
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(225, 256))).save(str(t / "script.pt"))
    shutil.copy(m.with_suffix(".json"), t / "script.json")
    return t / "script.pt"


def net_code(t, body="def build():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(225, 256))\n"):
    """A Python file with a factory of a 15 x 15 gray classifier, as a researcher's model code."""
    return write(t / "net.py", ("import torch\n\n" + body).encode())


FAILING = """def build():
    raise KeyError(7)
"""


def unrelated_state_dict(t):
    torch = frameworks.torch()
    torch.save({"conv.weight": torch.zeros(2, 1, 3, 3)}, t / "other.pt")
    return t / "other.pt"


CATALOGUE = {
    # image files
    "missing image": (lambda t, m: ["-ip", t / "nope.png", "-mp", m], "image file"),
    "empty image": (lambda t, m: ["-ip", write(t / "empty.png", b""), "-mp", m], "cannot read"),
    "truncated image": (lambda t, m: ["-ip", write(t / "cut.png", png(t / "cut.png").read_bytes()[:60]), "-mp", m],
                        "cannot read"),
    "corrupt image": (lambda t, m: ["-ip", corrupt_png(t), "-mp", m], "cannot read"),
    "text as image": (lambda t, m: ["-ip", write(t / "notes.jpg", b"not an image\n"), "-mp", m], "cannot read"),
    "folder without images": (lambda t, m: ["-ip", t, "-mp", m], "holds no image files"),
    "decompression bomb": (lambda t, m: ["-ip", png(t / "big.png"), "-mp", m, "--set", "max_image_pixels=1000"],
                           "more than the limit of 1,000 (max_image_pixels"),
    "900-megapixel PNG": (lambda t, m: ["-ip", huge_png(t), "-mp", m], "more than the limit of 50,000,000"),
    "float image of NaN": (lambda t, m: ["-ip", nan_tiff(t), "-mp", m], "225 pixels that are not finite levels"),
    # model files
    "missing model": (lambda t, m: ["-mp", t / "none.h5"], "check the path given to -mp"),
    "a project model not built": (lambda t, m: ["-mp", t / "models" / "digits.h5"], "build it with: make models"),
    "model folder": (lambda t, m: ["-mp", t], "is a folder; give a model file"),
    "SavedModel folder": (lambda t, m: ["-mp", saved_model_folder(t).parent], "is a TensorFlow SavedModel folder"),
    "empty model": (lambda t, m: ["-mp", write(t / "empty.h5", b"")], "cannot read"),
    "corrupt model": (lambda t, m: ["-mp", write(t / "bad.h5", m.read_bytes()[:2000])], "cannot read"),
    "image as model": (lambda t, m: ["-mp", png(t / "model.keras")], "cannot read"),
    "model of another kind": (lambda t, m: ["-mp", write(t / "model.tflite", b"\x08\x07")], "give a Keras model"),
    "corrupt ONNX model": (lambda t, m: ["-mp", write(t / "model.onnx", b"\x08\x07")], "as an ONNX model"),
    "model input not an image": (lambda t, m: ["-mp", dense_keras_model(t)], "must take one (H, W, C) image"),
    "state dict as TorchScript": (lambda t, m: ["-mp", state_dict_without_card(t, m)], "not TorchScript"),
    "TorchScript as state dict": (lambda t, m: ["-mp", torchscript_with_card(t, m)], "remove the card"),
    # models from code
    "code without trust": (lambda t, m: ["-mp", f"{net_code(t)}:build"], "give --trust-model if you trust it"),
    "code without a factory": (lambda t, m: ["-mp", net_code(t), "--trust-model"], "path/to/net.py:factory"),
    "factory not in the code": (lambda t, m: ["-mp", f"{net_code(t)}:make", "--trust-model"], "has no make"),
    "factory failing": (lambda t, m: ["-mp", f"{net_code(t, FAILING)}:build",
                                      "--trust-model"], "building the model failed (KeyError: 7)"),
    "factory of no module": (lambda t, m: ["-mp", f"{net_code(t, 'build = dict')}:build", "--trust-model"],
                             "returned a dict, not a torch.nn.Module"),
    "weights of another model": (lambda t, m: ["-mp", f"{net_code(t)}:build", "--trust-model", "--weights",
                                               unrelated_state_dict(t)], "unexpected: conv.weight"),
    "weights missing": (lambda t, m: ["-mp", f"{net_code(t)}:build", "--trust-model", "--weights", t / "w.pt"],
                        "weights file"),
    "weights for a model file": (lambda t, m: ["-mp", m, "--weights", unrelated_state_dict(t)],
                                 "--weights goes with a model given as code"),
    "input size the model refuses": (lambda t, m: ["-mp", f"{net_code(t)}:build", "--trust-model", "--input-size",
                                                   "16"], "no input of 1 channels and 16x16 pixels"),
    "class beyond the model": (lambda t, m: ["-mp", m, "-cl", 256], "give 0 to 255"),
    "ImageNet scaling of a gray model": (lambda t, m: ["-mp", m, "--preprocess", "imagenet"],
                                         "3 values and the model 1 channel; give one value"),
    # arguments and settings
    "unknown method": (lambda t, m: ["-mp", m, "-hm", "gradd"], "unknown method 'gradd' (did you mean 'grad'?); "
                                                               "choose from grad"),
    "method in capitals": (lambda t, m: ["-mp", m, "-hm", "Grad"], "unknown method 'Grad' (did you mean 'grad'?)"),
    "method abbreviated": (lambda t, m: ["-mp", m, "-hm", "lrp.eps"],
                           "unknown method 'lrp.eps' (did you mean 'lrp.epsilon'?)"),
    "pixel out of range": (lambda t, m: ["-mp", m, "-cp", -1], "give 0 to 255"),
    "label not a number": (lambda t, m: ["-mp", m, "-cl", "cat"], "invalid int value"),
    "unknown setting": (lambda t, m: ["-mp", m, "--set", "ig.step=3"], "did you mean 'ig.steps'"),
    "wrong type": (lambda t, m: ["-mp", m, "--set", "ig.steps=many"], "ig.steps must be an integer"),
    "zero steps": (lambda t, m: ["-mp", m, "--set", "ig.steps=0"], "ig.steps must be at least 2"),
    "negative samples": (lambda t, m: ["-mp", m, "-hm", "shapley", "--set", "shapley.samples=-5"],
                         "shapley.samples must be at least 1"),
    "patch larger than the image": (lambda t, m: ["-mp", m, "-hm", "occlusion", "--set", "occlusion.patch=16"],
                                    "occlusion.patch 16 is larger than the 15x15 input"),
    "negative seed": (lambda t, m: ["-mp", m, "--seed", -1], "seed must be at least 0"),
    "seed not an integer": (lambda t, m: ["-mp", m, "--set", "sg.seed=0.5"], "sg.seed must be an integer"),
    "set without =": (lambda t, m: ["-mp", m, "--set", "ig.steps"], "--set takes KEY=VALUE"),
    "sweep without values": (lambda t, m: ["-mp", m, "--sweep", "ig.steps"], "write METHOD.SETTING=V1,V2"),
    "sweep of an unknown key": (lambda t, m: ["-mp", m, "--sweep", "ig.stepz=4,8"], "did you mean 'ig.steps'"),
    "sweep value out of range": (lambda t, m: ["-mp", m, "-hm", "ig", "--sweep", "ig.steps=8,0"],
                                 "ig.steps must be at least 2"),
    "sweep of an unchosen method": (lambda t, m: ["-mp", m, "-hm", "grad", "--sweep", "ig.steps=4,8"],
                                    "none of the chosen methods reads the ig settings"),
    "unknown sanity check": (lambda t, m: ["-mp", m, "--sanity", "shuffle"], "invalid choice: 'shuffle'"),
    "negative model noise": (lambda t, m: ["-mp", m, "--sanity", "noise", "--set", "sanity.noise_levels=[-0.5]"],
                             "sanity.noise_levels"),
    "two experiments at once": (lambda t, m: ["-mp", m, "--sanity", "cascading", "--growing-patch"],
                                "run one experiment"),
    "experiment without a map": (lambda t, m: ["-mp", m, "-hm", "cam", "--sanity", "cascading"],
                                 "no chosen method gave a map"),
    "rerun of a missing record": (lambda t, m: ["--rerun", t / "run.json"], "cannot repeat"),
    "labels file missing": (lambda t, m: ["-mp", m, "--labels", t / "labels.txt"], "labels.txt is not found"),
    # files that are not files, and files that lie
    "a FIFO as the image": (lambda t, m: ["-mp", m, "-ip", fifo(t)], "not a regular file"),
    "a FIFO as the config": (lambda t, m: ["-mp", m, "--config", fifo(t)], "not a regular file"),
    "a FIFO as the labels": (lambda t, m: ["-mp", m, "--labels", fifo(t)], "not a regular file"),
    "a TIFF of infinities": (lambda t, m: ["-mp", m, "-ip", float_tiff(t, np.inf)], "not finite levels"),
    "a TIFF of 1e30": (lambda t, m: ["-mp", m, "-ip", float_tiff(t, 1e30)], "not finite levels"),
    "a pickle named .safetensors": (lambda t, m: ["-mp", f"{net_code(t)}:build", "--trust-model", "--weights",
                                                  pickle_as_safetensors(t)], "cannot load"),
    "safetensors whose header lies": (lambda t, m: ["-mp", f"{net_code(t)}:build", "--trust-model", "--weights",
                                                    write(t / "w.safetensors", (10**9).to_bytes(8, "little") + b"{}")],
                                      "cannot load"),
    "ONNX of a huge declared input": (lambda t, m: ["-mp", huge_onnx(t)], "more than 50,000,000"),
    # config files that go wrong
    **{f"config raising {error}": (lambda t, m, code=code: ["-mp", m, "--config", write(t / "c.py", code.encode())],
                                   error) for error, code in (("NameError", "ig = dict(steps=step)\n"),
                                                              ("ZeroDivisionError", "x = 1 / 0\n"),
                                                              ("ModuleNotFoundError", "import nothing_here\n"))},
    "config exiting": (lambda t, m: ["-mp", m, "--config", write(t / "c.py", b"raise SystemExit(0)\n")],
                       "called exit(0)"),
    "config a folder": (lambda t, m: ["-mp", m, "--config", t], "not a regular file"),
    "config of a NaN": (lambda t, m: ["-mp", m, "--config", write(t / "c.py", b"sg = dict(noise_scale=float('nan'))\n")],
                        "sg.noise_scale must be a finite number"),
    "config of a bad JSON value": (lambda t, m: ["-mp", m, "--config", write(t / "c.json", b'{"ig": {"steps": 0}}')],
                                   "ig.steps must be at least 2"),
    "config naming a group": (lambda t, m: ["-mp", m, "--config", write(t / "c.py", b"ig = 5\n")],
                              "ig is a group of settings"),
    # the dataset mode
    "dataset count not a number": (lambda t, m: ["-mp", m, "--dataset", "random:many"], "give random:N"),
    "dataset folder missing": (lambda t, m: ["-mp", m, "--dataset", t / "none"], "give a folder of images"),
    "random images on another model": (lambda t, m: ["-mp", f"{net_code(t)}:build", "--trust-model", "--dataset",
                                                     "random:3"], "is neither a center-pixel nor a region model"),
    "dataset with an image": (lambda t, m: ["-mp", m, "--dataset", "random:3", "-ip", m], "drop -ip"),
    "workers without a dataset": (lambda t, m: ["-mp", m, "--workers", 2], "go with --dataset"),
    "negative workers": (lambda t, m: ["-mp", m, "--dataset", "random:3", "--workers", -1], "give 0"),
    "scheduler not an address": (lambda t, m: ["-mp", m, "--dataset", "random:3", "--scheduler", "notanaddress"],
                                 "missing port number"),
    # output
    "output folder not writable": (lambda t, m: ["-mp", m, "-op", write(t / "file", b"") / "sub"],
                                   "choose a writable folder with -op"),
}


@pytest.mark.parametrize("case", CATALOGUE)
def test_bad_input_is_one_line_and_exit_2(case, small_model_path, tmp_path, capsys):
    make_argv, message = CATALOGUE[case]
    cases, out = tmp_path / "case", tmp_path / "out"
    cases.mkdir()
    argv = [str(a) for a in make_argv(cases, small_model_path)]
    argv += ([] if "-hm" in argv or "--rerun" in argv else ["-hm", "grad"]) + ([] if "-op" in argv else ["-op", out])
    capsys.readouterr()
    assert run_cli(*argv, "-q") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert message in err
    assert not out.exists() or list(out.iterdir()) == []

