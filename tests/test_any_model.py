"""Models the toolkit did not make (TorchScript, Keras), several images per run, labels, devices."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import heatkit
from conftest import run_cli, image_maps, image_scores
from heatkit.base import frameworks


@pytest.fixture(scope="module")
def rgb_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rgb")
    rng = np.random.default_rng(5)
    for name in ("b", "a", "c"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def torchscript_path(tmp_path_factory):
    """A small RGB CNN with a softmax at its end, scripted: no card, no twin."""
    torch = frameworks.torch()
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5), nn.Softmax(dim=-1))
    path = tmp_path_factory.mktemp("script") / "net.pt"
    torch.jit.script(net).save(str(path))
    return path


@pytest.fixture(scope="module")
def keras_path(tmp_path_factory):
    """A Keras RGB classifier whose Dense layer carries the softmax, on 16 x 16 inputs."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((16, 16, 3))
    hidden = layers.Conv2D(4, 3, activation="relu", kernel_initializer=init.GlorotNormal(seed=1))(inputs)
    hidden = layers.GlobalAveragePooling2D()(hidden)
    outputs = layers.Dense(4, activation="softmax", kernel_initializer=init.GlorotNormal(seed=2))(hidden)
    path = tmp_path_factory.mktemp("keras") / "user.h5"
    tf.keras.Model(inputs, outputs).save(path)
    return path


def finished(out):
    """A one-image run's folder, scores and maps."""
    [folder] = out.iterdir()
    return folder, image_scores(folder), image_maps(folder)


def finished_several(out):
    """A run's folder, scores.json and heatmaps.npz as written (keys `<stem>/<map key>`)."""
    [folder] = out.iterdir()
    with np.load(folder / "heatmaps.npz") as maps:
        return folder, json.loads((folder / "scores.json").read_text()), dict(maps)


def test_a_torchscript_model_runs_end_to_end(torchscript_path, rgb_images, tmp_path, capsys):
    methods = ["grad", "gb", "ig", "deeplift", "lrp.epsilon", "gradcam", "cam", "occlusion", "lime", "mp"]
    code = run_cli("-mp", torchscript_path, "--trust-model", "-ip", rgb_images / "a.png", "-hm", *methods, "-op", tmp_path, "-q",
                   "--set", "mp.iterations=3", "--set", "lime.num_samples=50", "--set", "ig.steps=4",
                   "--set", "occlusion.patch=32", "--set", "occlusion.stride=32")
    assert code == 0
    _, scores, maps = finished(tmp_path)
    ran = set(scores["methods"]) - {key for key, row in scores["methods"].items() if "not_applicable" in row}
    assert {"grad", "ig", "gradcam", "occlusion", "lime", "mp"} <= ran
    for key in ("deeplift", "gb"):  # hooks, or a ReLU backward changed from Python: not in TorchScript
        assert "TorchScript" in scores["methods"][key]["not_applicable"]
    assert scores["backend"] == "torch" and {scores["methods"][key]["framework"] for key in ran} == {"torch"}
    assert maps["grad"].shape == (224, 224) and maps["input"].shape == (224, 224, 3)  # the first side that runs
    # the module's own softmax, and its logit's gradient (the scripted Sequential without its Softmax)
    torch = frameworks.torch()
    module = torch.jit.load(str(torchscript_path))
    inputs = torch.from_numpy(maps["input"].transpose(2, 0, 1)[None].astype(np.float32)).requires_grad_()
    children = list(module.children())
    logits = inputs
    for child in children[:-1]:
        logits = child(logits)
    target = scores["explained_class"]
    assert scores["explained_probability"] == pytest.approx(float(torch.softmax(logits, -1)[0, target].detach()),
                                                            rel=1e-6)
    (gradient,) = torch.autograd.grad(logits[0, target], inputs)
    np.testing.assert_allclose(maps["grad"], gradient[0].sum(0).numpy(), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_a_backend_the_model_lacks_is_refused(torchscript_path, keras_path, tmp_path, capsys, backend):
    lacking = torchscript_path if backend == "keras" else keras_path
    assert run_cli("-mp", lacking, "--trust-model", "--backend", backend, "-hm", "grad", "-op", tmp_path) == 2
    assert f"has no {'Keras' if backend == 'keras' else 'PyTorch'} version" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_keras_model_with_a_softmax_dense_runs(keras_path, rgb_images, tmp_path):
    code = run_cli("-mp", keras_path, "-ip", rgb_images / "a.png", "-hm", "grad", "lrp.z", "gradcam", "cam",
                   "occlusion", "mp", "-op", tmp_path, "-q")
    assert code == 0
    _, scores, maps = finished(tmp_path)
    assert maps["grad"].shape == (16, 16) and maps["input"].shape == (16, 16, 3)
    assert "not_applicable" in scores["methods"]["mp"]  # it needs a PyTorch version
    assert scores["ground_truth"] is False
    # CAM is the conv maps weighted by the Dense column of the class, upsampled from 14 x 14
    from heatkit.methods._layers import upsample
    from heatkit.model import Model

    model = Model(keras_path)
    tf = frameworks.tensorflow()
    with model.keras.scope():
        conv = tf.keras.Model(model.keras.model.inputs, model.keras.model.layers[1].output)
        features = conv.predict(maps["input"][None], verbose=0)[0]
        kernel = model.keras.model.layers[-1].get_weights()[0]
    expected = upsample(features @ kernel[:, scores["explained_class"]], (16, 16))
    np.testing.assert_allclose(maps["cam"], expected, rtol=1e-5, atol=1e-7)


def test_logits_stop_before_the_softmax_of_a_dense_layer(keras_path):
    from heatkit.model import Model

    model = Model(keras_path)
    batch = np.random.default_rng(0).random((3, 16, 16, 3))
    logits, probabilities = model.keras.logits(batch), model.keras.probabilities(batch)
    assert probabilities.dtype == np.float32  # the model's own precision
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probabilities, rtol=1e-6)
    with model.keras.scope():
        np.testing.assert_allclose(probabilities, model.keras.model.predict(batch), rtol=1e-6)


def test_several_images_equal_single_runs(small_model_path, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name in ("x", "y"):
        Image.fromarray(rng.integers(0, 256, (15, 15), dtype=np.uint8)).save(folder / f"{name}.png")
    methods = ["grad", "occlusion", "shapley"]
    settings = ["--set", "shapley.samples=2"]
    assert run_cli("-mp", small_model_path, "-ip", folder, "-hm", *methods, "-op", tmp_path / "both", "-q",
                   *settings) == 0
    _, scores, maps = finished_several(tmp_path / "both")
    assert [row["image"] for row in scores["images"]] == [str(folder / "x.png"), str(folder / "y.png")]
    for name in ("x", "y"):
        assert run_cli("-mp", small_model_path, "-ip", folder / f"{name}.png", "-hm", *methods, "-op",
                       tmp_path / name, "-q", *settings) == 0
        _, alone, single = finished(tmp_path / name)
        for key in methods:
            assert np.array_equal(maps[f"{name}/{key}"], single[key])
        assert alone["methods"]["grad"]["center_rank"] == \
            scores["images"][0 if name == "x" else 1]["methods"]["grad"]["center_rank"]


def test_a_folder_gives_its_images_sorted_and_more_than_max_images_get_a_figure_each(
        torchscript_path, rgb_images, tmp_path):
    assert run_cli("-mp", torchscript_path, "--trust-model", "-ip", rgb_images, "-hm", "grad", "-op", tmp_path, "-q",
                   "--set", "figure.max_images=2") == 0
    folder, scores, _ = finished_several(tmp_path)
    assert [row["image"].rsplit("/", 1)[1] for row in scores["images"]] == ["a.png", "b.png", "c.png"]
    assert sorted(p.name for p in folder.glob("*.png")) == ["heatmaps_a.png", "heatmaps_b.png", "heatmaps_c.png"]


def test_labels_must_name_every_class(torchscript_path, rgb_images, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    assert run_cli("-mp", torchscript_path, "--trust-model", "-ip", rgb_images / "a.png", "--labels", labels, "-op", tmp_path / "o") == 2
    assert "2 names and the model 5 classes" in capsys.readouterr().err
    labels.write_text("cat\ndog\nfox\nowl\nyak\n")
    assert run_cli("-mp", torchscript_path, "--trust-model", "-ip", rgb_images / "a.png", "--labels", labels, "-hm", "grad",
                   "-op", tmp_path / "o", "-q") == 0


def test_byte_preprocessing_scales_the_input(torchscript_path, rgb_images):
    from heatkit.base.images import Preprocess, load_image

    pixels = load_image(rgb_images / "a.png", (8, 8, 3))
    np.testing.assert_allclose(Preprocess("byte")(pixels), pixels * 255)
    imagenet = Preprocess("unit", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(pixels)
    np.testing.assert_allclose(imagenet[..., 1], (pixels[..., 1] - 0.456) / 0.224)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_the_named_preprocessings_are_keras_applications_modes(mode):
    """settings={"preprocess": NAME} (once "unknown setting 'preprocess'; did you mean 'preprocess'?")
    gives what keras.applications' preprocess_input(mode=NAME) gives the same image's bytes."""
    from keras.src.applications import imagenet_utils

    from heatkit.base.images import Preprocess

    cfg = heatkit.settings({"preprocess": mode})
    pixels = np.random.default_rng(0).integers(0, 256, (4, 5, 3)) / 255.0
    expected = imagenet_utils.preprocess_input(pixels * 255.0, mode=mode)
    np.testing.assert_allclose(Preprocess(**cfg["preprocess"])(pixels), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(frameworks.torch().cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_line(small_model_path, tmp_path, capsys):
    assert run_cli("-mp", small_model_path, "--device", "cuda", "-op", tmp_path) == 2
    assert "no CUDA device" in capsys.readouterr().err


# Saved and predicted in a separate, eager process, as a user's training script would.
SAVE_AND_PREDICT = """
import sys, numpy as np, tensorflow as tf
folder = sys.argv[1]
init = tf.keras.initializers
inputs = tf.keras.Input((8, 8, 1))
hidden = tf.keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=init.GlorotNormal(seed=1))(inputs)
outputs = tf.keras.layers.Dense(6, activation="softmax", kernel_initializer=init.GlorotNormal(seed=2))(
    tf.keras.layers.Flatten()(hidden))
model = tf.keras.Model(inputs, outputs)
model.layers[-1].set_weights([w * 30 for w in model.layers[-1].get_weights()])  # far from any initial weights
model.save(folder + "/cnn.keras")
model.save(folder + "/cnn.h5")
batch = np.random.default_rng(0).random((4, 8, 8, 1))
np.save(folder + "/batch.npy", batch)
np.save(folder + "/predicted.npy", model.predict(batch, verbose=0))
"""


def test_keras_files_are_explained_with_their_saved_weights(tmp_path):
    """Keras 2.14 in graph mode would load a .keras file's weights as assignment ops it never runs."""
    from heatkit.model import Model

    subprocess.run([sys.executable, "-c", SAVE_AND_PREDICT, tmp_path], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    batch, predicted = np.load(tmp_path / "batch.npy"), np.load(tmp_path / "predicted.npy")
    for suffix in (".keras", ".h5"):
        probabilities = Model(tmp_path / f"cnn{suffix}").probabilities(batch)
        np.testing.assert_allclose(probabilities, predicted, rtol=0, atol=1e-6)


@pytest.mark.parametrize("flatten", ["view", "flatten"])
@pytest.mark.parametrize("groups", [1, 4])
def test_a_cnn_runs_channels_last_where_it_can_and_gives_autograds_gradient(flatten, groups):
    """Channels-last memory speeds float32 convolutions up on large batches, and grouped ones on
    any; a module that views its activations as NCHW memory (x.view(n, -1)) raises on it, so it
    keeps NCHW. Either way the maps are the model's (and a grouped first convolution's input has
    its groups times its weight's channels)."""
    import heatkit
    from heatkit.model.torch_net import CHANNELS_LAST_PIXELS

    torch = frameworks.torch()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(4, 8, 3, padding=1, groups=groups), nn.Linear(8 * 8 * 8, 3)

        def forward(self, x):
            hidden = torch.relu(self.conv(x))
            return self.fc(hidden.view(len(hidden), -1) if flatten == "view" else hidden.flatten(1))

    torch.manual_seed(0)
    net = Net().eval()
    image = np.random.default_rng(2).random((8, 8, 4))
    run = heatkit.explain(net, image, ["grad"], target=1, progress=False,
                          settings={"faithfulness.curves": False, "input_size": [8, 8]})
    takes_it = flatten == "flatten"
    assert run.model.torch.channels_last == takes_it
    for images, expected in ((1, takes_it and groups > 1), (CHANNELS_LAST_PIXELS // 64, takes_it)):
        tensor = run.model.torch.tensor(np.zeros((images, 8, 8, 4)))
        assert tensor.is_contiguous(memory_format=torch.channels_last) == expected != tensor.is_contiguous()
    inputs = torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32).contiguous().requires_grad_()
    (gradient,) = torch.autograd.grad(net(inputs)[0, 1], inputs)
    np.testing.assert_allclose(run.maps["grad"], gradient[0].sum(0).numpy(), rtol=1e-5, atol=1e-7)


def test_methods_that_take_a_batch_give_each_image_its_own_map(monkeypatch):
    """Several images in one call: the gradient family, DeepLIFT and LRP on PyTorch run them as one
    batch, and equal the maps of one image at a time (float64, to 1e-10 of each map's scale),
    each image's row explaining its own class (here 0, 3 and 1); the Gradient is autograd's."""
    import heatkit
    from heatkit.methods.registry import REGISTRY

    torch = frameworks.torch()
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
            self.inner, self.head = nn.Conv2d(6, 6, 3, padding=1), nn.Linear(6, 5)

        def forward(self, x):
            hidden = torch.relu(self.bn(self.conv(x)))
            return self.head((hidden + torch.relu(self.inner(hidden))).mean((2, 3)))

    torch.manual_seed(1)
    net = Residual().double().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
    rng = np.random.default_rng(0)
    images, targets = np.stack([rng.random((10, 10, 3)) for _ in range(3)]), np.array([0, 3, 1])
    settings = {"faithfulness.curves": False, "input_size": [10, 10]}
    model = heatkit.load_model(net, settings=settings)
    keys = [key for key, method in REGISTRY.items() if "torch" in method.batched]
    assert {"grad", "inpgrad", "gb", "deconvnet", "deeplift", "lrp.epsilon"} <= set(keys)
    cfg = heatkit.settings(settings)
    for key in keys:
        method = REGISTRY[key]
        params = cfg[method.settings.name] if method.settings else {}
        together = method.batched["torch"](model, images, targets, params)
        for image, target, found in zip(images, targets, together):
            alone = method.function("torch")(model, image, target, params)
            np.testing.assert_allclose(found, alone, rtol=0, atol=1e-10 * np.abs(alone).max(), err_msg=key)
    for image, target, found in zip(images, targets, REGISTRY["grad"].batched["torch"](model, images, targets, {})):
        inputs = torch.tensor(image.transpose(2, 0, 1)[None]).requires_grad_()
        (gradient,) = torch.autograd.grad(net(inputs)[0, target], inputs)
        np.testing.assert_allclose(found, gradient[0].sum(0).numpy(), rtol=1e-6)
    batches = []
    batched = REGISTRY["grad"].batched["torch"]
    monkeypatch.setitem(REGISTRY["grad"].batched, "torch", lambda *args: batches.append(len(args[1])) or batched(*args))
    run = heatkit.explain(model, list(images), keys, settings=settings, progress=False)
    assert batches == [3]  # the pipeline ran the three images as one batch
    for image, item in zip(images, run.items):
        alone = heatkit.explain(model, image, keys, settings=settings, progress=False).result
        for key in keys:
            np.testing.assert_allclose(item.results[0].maps[key], alone.maps[key], rtol=0,
                                       atol=1e-10 * np.abs(alone.maps[key]).max(), err_msg=key)
