"""Keras models as researchers have them: built eagerly in a notebook that goes on working after
heatkit explains them, SavedModel folders, custom layers given as code, and the clear refusal of
Keras 3 files and of SavedModels that Keras did not write."""
import json
import zipfile

import numpy as np
import pytest

import heatkit
from conftest import run_cli
from heatkit.base import frameworks
from heatkit.base.errors import UsageError

SETTINGS = {"faithfulness.curves": False}


def small_cnn(tf, seed: int = 0):
    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((10, 10, 1))
    hidden = layers.Conv2D(4, 3, activation="relu", kernel_initializer=init.GlorotNormal(seed=seed))(inputs)
    hidden = layers.BatchNormalization()(hidden)
    outputs = layers.Dense(3, kernel_initializer=init.GlorotNormal(seed=seed + 1))(layers.GlobalAveragePooling2D()(hidden))
    return tf.keras.Model(inputs, outputs)


def tape_gradient(tf, model, image, target: int) -> np.ndarray:
    inputs = tf.constant(image[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        logit = model(inputs, training=False)[:, target]
    return tape.gradient(logit, inputs).numpy()[0, ..., 0]


def test_a_notebook_trains_explains_and_goes_on_eagerly():
    """Eager code, then explain (innvestigate's graph mode inside), then eager code again."""
    tf = heatkit.tensorflow()
    rng = np.random.default_rng(0)
    images, labels = rng.random((32, 10, 10, 1)).astype(np.float32), rng.integers(0, 3, 32)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    model = small_cnn(tf)
    model.compile("sgd", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data, epochs=1, verbose=0)
    run = heatkit.explain(model, images[0].astype(np.float64), ["grad", "lrp.epsilon", "occlusion"], target=2,
                          settings=SETTINGS, progress=False)
    assert set(run.maps) == {"grad", "lrp.epsilon", "occlusion"} and not run.result.failures
    assert tf.executing_eagerly() and tf.constant([1.0, 2.0]).numpy().sum() == 3.0
    assert sum(int(batch[1].shape[0]) for batch in data) == 32  # tf.data still iterates
    np.testing.assert_allclose(run.maps["grad"], tape_gradient(tf, model, images[0], 2), rtol=1e-5, atol=1e-7)
    model.fit(data, epochs=1, verbose=0)  # and trains on
    another = small_cnn(tf, seed=5)
    assert another.predict(images[:2], verbose=0).shape == (2, 3)


def test_a_savedmodel_folder_gives_the_models_maps(tmp_path):
    tf = heatkit.tensorflow()
    model = small_cnn(tf, seed=2)
    model.save(tmp_path / "saved", save_format="tf")
    image = np.random.default_rng(1).random((10, 10, 1))
    run = heatkit.explain(str(tmp_path / "saved"), image, ["grad"], target=1, settings=SETTINGS, progress=False)
    np.testing.assert_allclose(run.maps["grad"], tape_gradient(tf, model, image, 1), rtol=1e-5, atol=1e-7)


def test_custom_layers_come_from_the_file_given(tmp_path, capsys):
    from test_settings import CUSTOM_LAYER

    (tmp_path / "double.py").write_text(CUSTOM_LAYER)
    tf = frameworks.tensorflow()
    namespace = {}
    exec(CUSTOM_LAYER, namespace)
    inputs = tf.keras.Input((15, 15, 1))
    outputs = tf.keras.layers.Dense(3)(namespace["Double"]()(tf.keras.layers.Flatten()(inputs)))
    tf.keras.Model(inputs, outputs).save(tmp_path / "custom.h5")
    args = ["-mp", tmp_path / "custom.h5", "-hm", "grad", "-op", tmp_path / "out", "-q"]
    assert run_cli(*args, "--custom-objects", tmp_path / "double.py") == 2
    assert "runs that file's code; give --trust-model" in capsys.readouterr().err
    assert run_cli(*args, "--custom-objects", tmp_path / "double.py", "--trust-model") == 0
    assert run_cli(*args, "--custom-objects", tmp_path / "nothing.py", "--trust-model") == 2
    assert "nothing.py not found" in capsys.readouterr().err
    (tmp_path / "imports.py").write_text("from double import Double\n")  # a file that imports its layers
    assert run_cli(*args, "--custom-objects", tmp_path / "imports.py", "--trust-model") == 0


def test_keras_applications_own_layers_load_without_custom_objects(tmp_path):
    """ConvNeXt's LayerScale (keras.applications' own class, unregistered) and a TFOpLambda (a TensorFlow
    function applied to a Keras tensor) were refused as layers Keras does not know."""
    tf = frameworks.tensorflow()
    from keras.src.applications.convnext import LayerScale

    inputs = tf.keras.Input((8, 8, 3))
    hidden = LayerScale(0.5, 3)(tf.keras.layers.Conv2D(3, 3, padding="same")(inputs))
    hidden = tf.math.multiply(hidden, 2.0)  # a TFOpLambda layer
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(tf.keras.layers.GlobalAveragePooling2D()(hidden)))
    model.save(tmp_path / "applications.h5")
    image = np.random.default_rng(0).random((8, 8, 3))
    run = heatkit.explain(tmp_path / "applications.h5", image, ["grad"], target=1, settings=SETTINGS, progress=False)
    inputs = tf.constant(image[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        logit = model(inputs)[:, 1]
    np.testing.assert_allclose(run.maps["grad"], tape.gradient(logit, inputs).numpy()[0].sum(-1), rtol=1e-5, atol=1e-7)


def test_keras_3_files_and_foreign_savedmodels_are_told_the_onnx_route(tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "new.keras", "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {"layers": []}}))
    assert run_cli("-mp", tmp_path / "new.keras", "-op", tmp_path / "out", "-q") == 2
    err = capsys.readouterr().err
    assert "saved by Keras 3.6.0" in err and "model.export('new.onnx', format='onnx')" in err
    tf = frameworks.tensorflow()
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.f = tf.function(lambda x: module.scale * x, input_signature=[tf.TensorSpec([None, 4, 4, 1])])
    tf.saved_model.save(module, str(tmp_path / "plain"))
    assert run_cli("-mp", tmp_path / "plain", "-op", tmp_path / "out", "-q") == 2
    err = capsys.readouterr().err
    assert "Keras did not write" in err and "tf2onnx.convert --saved-model" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_subclassed_keras_model_is_told_to_save_it():
    tf = heatkit.tensorflow()

    class Net(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(3)

        def call(self, x):
            return self.dense(tf.reshape(x, (-1, 100)))

    net = Net()
    net(np.zeros((1, 10, 10, 1), np.float32))
    with pytest.raises(UsageError, match="subclassed Keras model"):
        heatkit.explain(net, np.zeros((10, 10, 1)), ["grad"], settings=SETTINGS, progress=False)
