"""Keras builders of the test models (imports TensorFlow: load it only on the Keras path).

Every layer is float64, whatever Keras' default: the center-pixel construction needs it."""
from __future__ import annotations

from heatkit.base import frameworks
from heatkit.testmodels.center_cnn import CenterCnnWeights
from heatkit.testmodels.center_pixel import CenterPixelWeights
from heatkit.testmodels.two_pixels import TwoPixelWeights

tf = frameworks.tensorflow()
F64 = {"dtype": "float64"}


def center_pixel(weights: CenterPixelWeights) -> "tf.keras.Model":
    """Input (H, W, 1) -> Flatten -> Dense (+ ReLU) -> softmax, float64."""
    size = weights.image_size
    inputs = tf.keras.Input((size, size, 1), name="image", **F64)
    flat = tf.keras.layers.Flatten(name="flatten", **F64)(inputs)
    dense = tf.keras.layers.Dense(weights.bias.size, activation="relu" if weights.relu else None,
                                  name="dense", **F64)(flat)
    outputs = tf.keras.layers.Activation("softmax", name="softmax", **F64)(dense)
    model = tf.keras.Model(inputs, outputs, name="center_pixel")
    model.get_layer("dense").set_weights([weights.kernel, weights.bias])
    return model


def center_cnn(weights: CenterCnnWeights) -> "tf.keras.Model":
    """Input (H, W, 1) -> conv1 -> box1..boxN (dilated 3x3) -> Flatten -> Dense -> softmax, float64."""
    size, layers = weights.image_size, tf.keras.layers
    inputs = tf.keras.Input((size, size, 1), name="image", **F64)
    hidden = layers.Conv2D(2, 3, padding="same", activation="relu", name="conv1", **F64)(inputs)
    for index, (dilation, _) in enumerate(weights.boxes, start=1):
        hidden = layers.Conv2D(2, 3, padding="same", dilation_rate=dilation, activation="relu", use_bias=False,
                               name=f"box{index}", **F64)(hidden)
    logits = layers.Dense(weights.dense[1].size, name="dense", **F64)(layers.Flatten(name="flatten", **F64)(hidden))
    model = tf.keras.Model(inputs, layers.Activation("softmax", name="softmax", **F64)(logits), name="center_cnn")
    model.get_layer("conv1").set_weights(list(weights.conv1))
    for index, (_, kernel) in enumerate(weights.boxes, start=1):
        model.get_layer(f"box{index}").set_weights([kernel])
    model.get_layer("dense").set_weights(list(weights.dense))
    return model


def two_pixels(weights: TwoPixelWeights, name: str) -> "tf.keras.Model":
    """Input (H, W, 1) -> Flatten -> Dense (4, ReLU) -> Dense (2) -> softmax, float64."""
    size, layers = weights.image_size, tf.keras.layers
    inputs = tf.keras.Input((size, size, 1), name="image", **F64)
    hidden = layers.Dense(4, activation="relu", name="hidden", **F64)(layers.Flatten(name="flatten", **F64)(inputs))
    logits = layers.Dense(2, name="logits", **F64)(hidden)
    model = tf.keras.Model(inputs, layers.Activation("softmax", name="softmax", **F64)(logits), name=name)
    model.get_layer("hidden").set_weights(list(weights.hidden))
    model.get_layer("logits").set_weights(list(weights.logits))
    return model
