"""Shared fixtures: small center-pixel twins built once per session, and a seeded rng."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import create_model
from core import frameworks

SMALL = 15  # side of the small test twins

frameworks.verbose(False)


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
    from core.model import Model

    return Model(small_model_path)


@pytest.fixture(scope="session")
def linear_model(linear_model_path):
    from core.model import Model

    return Model(linear_model_path)


@pytest.fixture(scope="session")
def mlp_path(tmp_path_factory) -> Path:
    """A Keras-only 15 x 15 MLP whose hidden ReLUs clip: Flatten, Dense + ReLU, Dense, softmax."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((SMALL, SMALL, 1))
    hidden = layers.Dense(24, activation="relu", kernel_initializer=init.GlorotNormal(seed=5),
                          bias_initializer=init.RandomNormal(stddev=0.3, seed=6))(layers.Flatten()(inputs))
    logits = layers.Dense(7, kernel_initializer=init.GlorotNormal(seed=7))(hidden)
    path = tmp_path_factory.mktemp("mlp") / "mlp.h5"
    tf.keras.Model(inputs, layers.Activation("softmax")(logits)).save(path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


def dense_weights(model) -> tuple[np.ndarray, np.ndarray]:
    """The center-pixel model's Dense kernel (pixels, classes) and bias, as stored in the file."""
    return model.keras.model.get_layer("dense").get_weights()
