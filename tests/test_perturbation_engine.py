"""The perturbation engine's fast path equals full forward passes on the same perturbations."""
import numpy as np
import pytest

from conftest import SMALL, engine_options, record_batches, softmax
from heatkit.base import engine as engine_module, frameworks
from heatkit.base.data import center_pixel_images
from heatkit.base.engine import Engine
from heatkit.base.run_state import EngineOptions
from heatkit.model import Model

EXACT = 1e-9
QUIET = EngineOptions(progress=False)
NAIVE = EngineOptions(fast=False, progress=False)


@pytest.fixture(params=["center_pixel", "linear", "mlp"])
def engines(request, small_model_path, linear_model_path, mlp_path):
    """(fast, naive) engines on one image, for a model with an affine first layer."""
    path = {"center_pixel": small_model_path, "linear": linear_model_path, "mlp": mlp_path}[request.param]
    image = center_pixel_images(1, SMALL, 256, seed=11)[0]
    model = Model(path)
    target = int(model.probabilities(image[None])[0].argmax())
    engine = Engine(model, image, target, QUIET)
    assert engine.fast
    return engine, Engine(model, image, target, NAIVE)


def test_edits(engines, rng):
    fast, naive = engines
    for width in (1, 9):
        pixels = np.stack([rng.choice(SMALL * SMALL, width, replace=False) for _ in range(40)])
        values = rng.random(pixels.shape)
        np.testing.assert_allclose(fast.edits(pixels, values, "t"), naive.edits(pixels, values, "t"), rtol=0, atol=EXACT)


def test_pixel_levels(engines):
    fast, naive = engines
    levels = np.linspace(0, 1, 9)
    np.testing.assert_allclose(fast.pixel_levels(levels, "t"), naive.pixel_levels(levels, "t"), rtol=0, atol=EXACT)


def test_walks(engines, rng):
    fast, naive = engines
    orders = np.stack([rng.permutation(SMALL * SMALL) for _ in range(2)])
    start = rng.random(SMALL * SMALL)
    np.testing.assert_allclose(fast.walks(start, orders, "t"), naive.walks(start, orders, "t"), rtol=0, atol=EXACT)


def test_segments(engines, rng):
    fast, naive = engines
    labels = rng.integers(0, 6, (SMALL, SMALL))
    masks = rng.integers(0, 2, (30, 6))
    for all_classes in (False, True):
        np.testing.assert_allclose(fast.segments(labels, masks, 0.25, "t", all_classes=all_classes),
                                   naive.segments(labels, masks, 0.25, "t", all_classes=all_classes),
                                   rtol=0, atol=EXACT)


def test_unperturbed_probability(engines):
    fast, naive = engines
    assert fast.probability() == pytest.approx(naive.probability(), abs=EXACT)


def test_masks_weight_each_mask_by_its_probability(small_model, rng):
    image = center_pixel_images(1, SMALL, 256, seed=2)[0]
    engine = Engine(small_model, image, 3, QUIET)
    masks = rng.random((10, SMALL, SMALL))
    probabilities, weighted = engine.masks(10, lambda a, b: masks[a:b], 0.5, "t", max_batch=3)
    blended = image[None] * masks[..., None] + 0.5 * (1 - masks[..., None])
    expected = small_model.probabilities(blended)[:, 3]
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=EXACT)
    np.testing.assert_allclose(weighted, np.tensordot(expected, masks, axes=1), rtol=1e-12)


def test_chunking_and_threads_change_nothing(small_model_path, rng, monkeypatch):
    """The fast path in chunks of about ten rows on two threads, finishing in any order, equals it
    in one chunk on one thread."""
    image = center_pixel_images(1, SMALL, 256, seed=3)[0]
    pixels = rng.integers(0, SMALL * SMALL, (200, 4))
    results = []
    for cache_bytes, workers in ((engine_module.CACHE_BYTES, 1), (8 * 256 * 7 * 10, 2)):
        monkeypatch.setattr(engine_module, "CACHE_BYTES", cache_bytes)
        engine = Engine(Model(small_model_path), image, 5, EngineOptions(progress=False, workers=workers))
        results.append((engine.edits(pixels, 0.0, "t"), engine.pixel_levels(np.linspace(0, 1, 5), "t")))
    for first, second in zip(*results):
        assert np.array_equal(first, second)


def test_full_passes_do_not_depend_on_the_batch_size(small_model_path, rng, monkeypatch):
    image = center_pixel_images(1, SMALL, 256, seed=3)[0]
    pixels = rng.integers(0, SMALL * SMALL, (50, 2))
    sizes = record_batches(monkeypatch)
    large = Engine(Model(small_model_path), image, 5, EngineOptions(fast=False, progress=False)).edits(pixels, 1.0, "t")
    at_once, sizes[:] = list(sizes), []
    monkeypatch.setattr(Engine, "_full_pass_size", lambda self, count, max_batch: 3)
    small = Engine(Model(small_model_path), image, 5, EngineOptions(fast=False, progress=False)).edits(pixels, 1.0, "t")
    assert max(sizes) == 3 < max(at_once)
    np.testing.assert_allclose(small, large, rtol=0, atol=1e-15)


def test_edits_of_most_pixels_take_full_passes(small_model_path, monkeypatch):
    model = Model(small_model_path)
    engine = model.engine(center_pixel_images(1, SMALL, 256, seed=3)[0], 5)
    calls = []
    original = model.probabilities
    monkeypatch.setattr(model, "probabilities", lambda batch: calls.append(len(batch)) or original(batch))
    engine.edits(np.arange(SMALL * SMALL)[None, :200], 0.0, "t")  # 200 of 225 inputs
    assert calls == [1]
    engine.edits(np.arange(SMALL * SMALL)[None, :20], 0.0, "t")
    assert calls == [1]


def test_a_model_without_an_affine_first_layer_takes_full_passes(tmp_path):
    tf = frameworks.tensorflow()
    inputs = tf.keras.Input((SMALL, SMALL, 1))
    features = tf.keras.layers.Conv2D(2, 3, kernel_initializer=tf.keras.initializers.GlorotNormal(seed=1))(inputs)
    logits = tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(features))
    tf.keras.Model(inputs, tf.keras.layers.Activation("softmax")(logits)).save(tmp_path / "conv.h5")
    model = Model(tmp_path / "conv.h5")
    assert model.affine_split() is None and not model.engine(np.zeros((SMALL, SMALL, 1)), 0).fast


SIDE = 10


def keras_kind(folder, kind: str, dtype: str = "float64"):
    """A 10 x 10 gray Keras classifier of 4 classes whose output is of `kind`."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    with frameworks.keras_floatx(dtype):
        inputs = tf.keras.Input((SIDE, SIDE, 1))
        hidden = layers.Flatten()(inputs)
        if kind == "hidden relu, no softmax":
            hidden = layers.Dense(6, activation="relu", kernel_initializer=init.GlorotNormal(seed=3),
                                  bias_initializer=init.RandomNormal(stddev=0.3, seed=4))(hidden)
        outputs = layers.Dense(4, activation="softmax" if kind == "softmax dense" else None,
                               kernel_initializer=init.GlorotNormal(seed=1),
                               bias_initializer=init.RandomNormal(seed=2))(hidden)
        if kind == "softmax activation":
            outputs = layers.Activation("softmax")(outputs)
        model = tf.keras.Model(inputs, outputs)
    path = folder / "model.h5"
    model.save(path)
    return path


def torchscript_kind(folder, kind: str, dtype: str = "float64"):
    """The same in TorchScript: logits out, or probabilities out (a final Softmax)."""
    torch = frameworks.torch()
    nn = torch.nn
    torch.manual_seed(0)
    layers = [nn.Flatten(), nn.Linear(SIDE * SIDE, 6), nn.ReLU(), nn.Linear(6, 4)]
    net = nn.Sequential(*layers, *[nn.Softmax(dim=-1)] * (kind == "probabilities out")).to(getattr(torch, dtype))
    path = folder / "model.pt"
    torch.jit.script(net).save(str(path))
    return path


OUTPUT_KINDS = {**{f"keras, {kind}": (keras_kind, kind, "float64") for kind in
                   ("softmax activation", "softmax dense", "no softmax", "hidden relu, no softmax")},
                "keras, no softmax, float32": (keras_kind, "no softmax", "float32"),
                **{f"torchscript, {kind}": (torchscript_kind, kind, "float64")
                   for kind in ("logits out", "probabilities out")},
                "torchscript, probabilities out, float32": (torchscript_kind, "probabilities out", "float32")}
# float64 models: fast and full paths agree to float64 rounding; float32 ones to float32 rounding
TOLERANCE = {"float64": 1e-9, "float32": 1e-6}


@pytest.fixture(scope="module", params=OUTPUT_KINDS)
def every_output_kind(request, tmp_path_factory):
    make, kind, dtype = OUTPUT_KINDS[request.param]
    path = make(tmp_path_factory.mktemp("kind"), kind, dtype)
    return Model(path, trust=True), TOLERANCE[dtype]  # TorchScript is code: trusted, built here


def test_probabilities_are_the_softmax_of_the_models_logits_for_every_output_kind(every_output_kind):
    """Against the framework's own forward pass, with the softmax applied here where the model has none."""
    model, tolerance = every_output_kind
    batch = np.random.default_rng(1).random((5, SIDE, SIDE, 1))
    net = model.evaluator
    if hasattr(net, "model"):  # Keras: its own predict
        with net.scope():
            raw = net.model.predict(batch, verbose=0)
        expected = raw if net.head.activation == "softmax" else softmax(raw)
    else:
        torch = frameworks.torch()
        with torch.no_grad():
            raw = net.module(net.tensor(batch)).numpy()
        expected = raw if net.head.activation == "softmax" else softmax(raw)
    np.testing.assert_allclose(model.probabilities(batch), expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("name", ["occlusion", "pda", "pda windows", "shapley", "lime", "shap", "rise"])
def test_every_perturbation_method_explains_the_same_quantity_fast_and_full(every_output_kind, name):
    from heatkit.methods import kernel_shap, lime, occlusion, pda, rise, shapley

    model, tolerance = every_output_kind
    function = {"occlusion": occlusion, "pda": pda, "pda windows": pda, "shapley": shapley, "lime": lime,
                "shap": kernel_shap, "rise": rise}[name].attribute
    params = {"occlusion": {"patch": 2, "stride": 1, "fill": 0.0, "mask": None},
              "pda": {"train_samples": 256_000, "levels": 8, "window": 1, "prior": "uniform", "samples": 4, "seed": 0},
              "pda windows": {"train_samples": 256_000, "levels": 8, "window": 3, "prior": "image", "samples": 4,
                              "seed": 0},
              "shapley": {"samples": 2, "baseline": 0.0, "mask": "pixels", "seed": 0},
              "lime": {"kernel_size": 1, "max_dist": 4, "ratio": 0.5, "num_samples": 60, "hide_color": 0.0,
                       "num_features": 1000, "seed": 0},
              "shap": {"mask": "superpixels", "n_segments": 6, "compactness": 0.1, "sigma": 0.5, "nsamples": 60,
                       "background": 0.0, "l1_reg": 0, "seed": 0},
              "rise": {"num_masks": 20, "cell_size": 3, "keep_probability": 0.5, "batch_size": 8, "seed": 0}}[name]
    image = np.random.default_rng(7).random((SIDE, SIDE, 1))
    target = int(model.probabilities(image[None])[0].argmax())
    assert Engine(model, image, target, QUIET).fast and not Engine(model, image, target, NAIVE).fast
    with engine_options(fast=False):
        full = function(model, image, target, params)
    np.testing.assert_allclose(function(model, image, target, params), full, rtol=0, atol=tolerance)


def test_occlusion_of_a_softmax_free_model_is_the_drop_of_its_softmax(tmp_path):
    """The reference computed apart: Keras' predict, a numpy softmax, one pixel at a time."""
    from heatkit.methods import occlusion

    path = keras_kind(tmp_path, "no softmax")
    model = Model(path)
    image = np.random.default_rng(8).random((SIDE, SIDE, 1))
    edited = np.repeat(image[None], SIDE * SIDE, axis=0).reshape(SIDE * SIDE, -1)
    edited[np.arange(SIDE * SIDE), np.arange(SIDE * SIDE)] = 0.0
    keras_model = model.keras.model
    with model.keras.scope():
        before = softmax(keras_model.predict(image[None], verbose=0))[0, 2]
        after = softmax(keras_model.predict(edited.reshape(-1, SIDE, SIDE, 1), verbose=0))[:, 2]
    np.testing.assert_allclose(occlusion.attribute(model, image, 2, {"patch": 1, "stride": 1, "fill": 0.0, "mask": None}),
                               (before - after).reshape(SIDE, SIDE), rtol=0, atol=1e-6)


def test_pytorch_results_hold_no_tensor_storage():
    """What the PyTorch path gives numpy owns its memory: a view kept a batch's tensor storage, and
    PDA's few bytes kept among each batch's freed megabytes kept glibc from returning them (a
    TorchScript ResNet's PDA at 224 grew to 24 GB)."""
    torch = frameworks.torch()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3)).eval()
    model = Model(net, input_size=[6, 6])
    batch = np.random.default_rng(0).random((4, 6, 6, 3))
    for values in (model.probabilities(batch), model.logits(batch)):
        assert values.base is None and values.flags.owndata
