"""Shared fixtures: small center-pixel twins and a small CNN twin, built once per session, and a seeded rng."""
from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

import create_model
from heatkit import cli
from heatkit.base import frameworks
from heatkit.model.twins import twin_of

SMALL = 15  # side of the small test twins

frameworks.verbose(False)
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two worker processes on two cores: one thread each
    frameworks.torch().set_num_threads(1)


def build(out: Path, *settings: str, size: int = SMALL) -> Path:
    """A center-pixel twin built by create_model.py into `out`; returns its Keras path."""
    overrides = [arg for setting in settings for arg in ("--set", setting)]
    assert create_model.main(["--image-size", str(size), "--out", str(out), *overrides]) == 0
    return out / "center_pixel.h5"


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("center_pixel"))


@pytest.fixture(scope="session")
def full_model_path(tmp_path_factory) -> Path:
    """The one 227 x 227 twin of the suite."""
    return build(tmp_path_factory.mktemp("center_pixel_227"), size=227)


@pytest.fixture(scope="session")
def linear_model_path(tmp_path_factory) -> Path:
    """The center-pixel construction without the ReLU: logits are affine in the input."""
    return build(tmp_path_factory.mktemp("center_pixel_linear"), "center_pixel.relu=False")


@pytest.fixture(scope="session")
def small_model(small_model_path):
    from heatkit.model import Model

    return Model(small_model_path)


@pytest.fixture(scope="session")
def linear_model(linear_model_path):
    from heatkit.model import Model

    return Model(linear_model_path)


@pytest.fixture(scope="session")
def mlp_path(tmp_path_factory) -> Path:
    """A Keras-only 15 x 15 float64 MLP whose hidden ReLUs clip: Flatten, Dense + ReLU, Dense, softmax."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    with frameworks.keras_floatx("float64"):
        inputs = tf.keras.Input((SMALL, SMALL, 1))
        hidden = layers.Dense(24, activation="relu", kernel_initializer=init.GlorotNormal(seed=5),
                              bias_initializer=init.RandomNormal(stddev=0.3, seed=6))(layers.Flatten()(inputs))
        logits = layers.Dense(7, kernel_initializer=init.GlorotNormal(seed=7))(hidden)
        model = tf.keras.Model(inputs, layers.Activation("softmax")(logits))
    path = tmp_path_factory.mktemp("mlp") / "mlp.h5"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def clipping_twin_path(tmp_path_factory) -> Path:
    """The MLP's architecture with a PyTorch twin, its biases drawn so that some hidden ReLUs clip."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    with frameworks.keras_floatx("float64"):
        inputs = tf.keras.Input((SMALL, SMALL, 1))
        hidden = layers.Dense(24, activation="relu", name="hidden", kernel_initializer=init.GlorotNormal(seed=5),
                              bias_initializer=init.RandomNormal(stddev=1.0, seed=6))(layers.Flatten()(inputs))
        logits = layers.Dense(7, name="logits", kernel_initializer=init.GlorotNormal(seed=7))(hidden)
        model = tf.keras.Model(inputs, layers.Activation("softmax")(logits))
    return save_with_twin(model, tmp_path_factory.mktemp("clipping"))


def save_with_twin(keras_model, folder):
    """A Keras model saved with its PyTorch twin and card, as create_model.py saves its models."""
    torch = frameworks.torch()
    twin, arguments = twin_of(keras_model)
    path = folder / "model.h5"
    keras_model.save(path, save_format="h5")
    torch.save(twin.state_dict(), folder / "model.pt")
    card = {"twin": arguments,
            "input_shape": list(keras_model.input_shape[1:]), "num_classes": int(keras_model.output_shape[-1])}
    (folder / "model.json").write_text(json.dumps(card))
    return path


@pytest.fixture(scope="session")
def gap_model_path(tmp_path_factory) -> Path:
    """An untrained 12 x 12 RGB float64 CNN with a GAP + Dense head: conv, max pool, conv, GAP, Dense."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    with frameworks.keras_floatx("float64"):
        inputs = tf.keras.Input((12, 12, 3))
        hidden = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1", kernel_initializer=init.GlorotNormal(
            seed=1), bias_initializer=init.RandomNormal(seed=2))(inputs)
        hidden = layers.MaxPooling2D(2, name="pool")(hidden)
        hidden = layers.Conv2D(5, 3, padding="valid", activation="relu", name="conv2", kernel_initializer=init.GlorotNormal(
            seed=3), bias_initializer=init.RandomNormal(seed=4))(hidden)
        logits = layers.Dense(3, name="logits", kernel_initializer=init.GlorotNormal(seed=5))(
            layers.GlobalAveragePooling2D(name="gap")(hidden))
        model = tf.keras.Model(inputs, layers.Activation("softmax")(logits))
    return save_with_twin(model, tmp_path_factory.mktemp("gap"))


@contextlib.contextmanager
def engine_options(**options):
    """The perturbation engine's options for a method called directly, as a run sets them."""
    from heatkit.base.run_state import EngineOptions, RunState, running

    with running(RunState(EngineOptions(progress=False, **options))) as state:
        yield state


def run_cli(*argv) -> int:
    """heatmap_script.py's exit code for these arguments, run in this process."""
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's own exit
        return exit.code


def image_maps(folder) -> dict[str, np.ndarray]:
    """heatmaps.npz of a one-image run folder, its keys without the image's `<stem>/`."""
    with np.load(Path(folder) / "heatmaps.npz") as stored:
        return {name.partition("/")[2]: stored[name] for name in stored.files}


def image_scores(folder) -> dict:
    """scores.json of a one-image run folder: the run's header and its image's scores in one dict."""
    written = json.loads((Path(folder) / "scores.json").read_text())
    [image] = written.pop("images")
    return {**written, **image}


def record_batches(monkeypatch) -> list[int]:
    """The sizes of the batches the perturbation engine evaluates from now on, in order."""
    from heatkit.base.engine import Engine

    sizes, chunks = [], Engine.chunks

    def recorded(self, *args, **kwargs):
        for start, stop in chunks(self, *args, **kwargs):
            sizes.append(stop - start)
            yield start, stop
    monkeypatch.setattr(Engine, "chunks", recorded)
    return sizes


def replace_method(monkeypatch, key: str, function) -> None:
    """The registered method `key` computes with `function` for the test, on every framework."""
    from heatkit.methods.registry import REGISTRY

    impl = REGISTRY[key].impl
    for backend in impl:
        monkeypatch.setitem(impl, backend, function)


def break_occlusion(monkeypatch, on_call: int, instead) -> None:
    """Occlusion as usual, except that its on_call-th map calls instead() in its place."""
    from heatkit.methods import occlusion

    calls = itertools.count(1)

    def attribute(model, image, target, params):
        return instead() if next(calls) == on_call else occlusion.attribute(model, image, target, params)

    replace_method(monkeypatch, "occlusion", attribute)


CHEAP_DEFAULTS = {"ig": {"steps": 8}, "sg": {"augment_by_n": 4}}  # cheaper than the defaults, where it matters


def default_params(method) -> dict:
    """A method's default settings, cheapened where CHEAP_DEFAULTS says."""
    if method.settings is None:
        return {}
    return {**method.settings.defaults(), **CHEAP_DEFAULTS.get(method.settings.name, {})}


USERS_DEFAULTS = {"on": False}  # set for a test marked users_defaults


@pytest.fixture(scope="session", autouse=True)
def no_curves_unless_asked():
    """Faithfulness curves cost two walks per map: the tests of other things run without them. A
    test that wants them sets faithfulness.curves itself, or is marked users_defaults, which gives
    it the settings users get. Session-wide, so that the module-scoped fixtures' runs have it too."""
    from heatkit.pipeline import config

    load = config.load

    def without_curves(overrides=()):
        cfg = load(overrides)
        if USERS_DEFAULTS["on"]:
            return cfg
        given = {}
        for item in [overrides] if isinstance(overrides, dict) else overrides:
            given.update(config.flatten(item) if isinstance(item, dict) else {config.parse_override(item)[0]: None})
        if "faithfulness.curves" not in given:
            cfg["faithfulness"]["curves"] = False
        return cfg
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config, "load", without_curves)
        yield


@pytest.fixture(autouse=True)
def users_defaults(request):
    USERS_DEFAULTS["on"] = request.node.get_closest_marker("users_defaults") is not None
    yield
    USERS_DEFAULTS["on"] = False


def random_image(side: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A side x side image of uniform noise in [0, 1), float64, seeded."""
    return np.random.default_rng(seed).random((side, side, channels))


def softmax(logits: np.ndarray) -> np.ndarray:
    """The softmax over the last axis, written out here as the tests' own reference."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def nchw(images: np.ndarray, dtype=np.float32):
    """An (H, W, C) image, as a batch of one, or an (N, H, W, C) batch as PyTorch's NCHW tensor."""
    batch = images[None] if images.ndim == 3 else images
    return frameworks.torch().from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=dtype))


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


def he_scaled(net, generator) -> None:
    """Every convolution's and linear layer's weights drawn at He et al.'s scale, from `generator`:
    an untrained network whose logits vary with its input."""
    torch = frameworks.torch()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2 / fan_in) ** 0.5)


def trained_looking(module):
    """A torchvision or timm module in eval mode with weights as if trained: BatchNorm statistics not
    the identity, no classifier of zeros (timm's ViTs start so)."""
    torch = frameworks.torch()
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.normal_(0, 0.1)
                layer.running_var.uniform_(0.5, 1.5)
            if isinstance(layer, torch.nn.Linear) and not layer.weight.any():
                layer.weight.normal_(0, 0.1)
    return module.eval()


def dense_weights(model) -> tuple[np.ndarray, np.ndarray]:
    """The center-pixel model's Dense kernel (pixels, classes) and bias, as stored in the file."""
    return model.keras.weights("dense")
