"""The perturbation engine's fast path equals full forward passes on the same perturbations."""
import numpy as np
import pytest

from conftest import SMALL
from core import frameworks
from core.center_pixel import random_images
from core.model import Model
from core.perturb import Engine, EngineOptions

EXACT = 1e-9
QUIET = EngineOptions(progress=False)


@pytest.fixture(params=["center_pixel", "linear", "mlp"])
def engines(request, small_model_path, linear_model_path, mlp_path):
    """(fast, naive) engines on one image, for a model with an affine first layer."""
    path = {"center_pixel": small_model_path, "linear": linear_model_path, "mlp": mlp_path}[request.param]
    image = random_images(1, SMALL, 256, seed=11)[0]
    fast = Model(path, engine_options=QUIET)
    naive = Model(path, engine_options=EngineOptions(fast=False, progress=False))
    target = int(fast.probabilities(image[None])[0].argmax())
    engine = fast.engine(image, target)
    assert engine.fast
    return engine, naive.engine(image, target)


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
    image = random_images(1, SMALL, 256, seed=2)[0]
    engine = Engine(small_model, image, 3, QUIET)
    masks = rng.random((10, SMALL, SMALL))
    probabilities, weighted = engine.masks(10, lambda a, b: masks[a:b], 0.5, "t", max_batch=3)
    blended = image[None] * masks[..., None] + 0.5 * (1 - masks[..., None])
    expected = small_model.probabilities(blended)[:, 3]
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=EXACT)
    np.testing.assert_allclose(weighted, np.tensordot(expected, masks, axes=1), rtol=1e-12)


def test_chunking_and_threads_change_nothing(small_model_path, rng):
    image = random_images(1, SMALL, 256, seed=3)[0]
    pixels = rng.integers(0, SMALL * SMALL, (200, 4))
    results = []
    for options in (EngineOptions(progress=False, workers=1, memory_mb=16),
                    EngineOptions(progress=False, workers=2, memory_mb=4096)):
        engine = Model(small_model_path, engine_options=options).engine(image, 5)
        results.append((engine.edits(pixels, 0.0, "t"), engine.pixel_levels(np.linspace(0, 1, 5), "t")))
    for first, second in zip(*results):
        assert np.array_equal(first, second)


def test_full_passes_do_not_depend_on_the_batch_size(small_model_path, rng):
    image = random_images(1, SMALL, 256, seed=3)[0]
    pixels = rng.integers(0, SMALL * SMALL, (50, 2))
    small = Engine(Model(small_model_path), image, 5, EngineOptions(fast=False, progress=False, memory_mb=16))
    large = Engine(Model(small_model_path), image, 5, EngineOptions(fast=False, progress=False))
    np.testing.assert_allclose(small.edits(pixels, 1.0, "t"), large.edits(pixels, 1.0, "t"), rtol=0, atol=1e-15)


def test_edits_of_most_pixels_take_full_passes(small_model_path, monkeypatch):
    model = Model(small_model_path, engine_options=QUIET)
    engine = model.engine(random_images(1, SMALL, 256, seed=3)[0], 5)
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
    model = Model(tmp_path / "conv.h5", engine_options=QUIET)
    assert model.affine_split() is None and not model.engine(np.zeros((SMALL, SMALL, 1)), 0).fast
