"""Keras builders of the test models (imports TensorFlow: load it only on the Keras path)."""
from __future__ import annotations

from core import frameworks
from core.center_pixel import CenterPixelWeights

tf = frameworks.tensorflow()


def center_pixel(weights: CenterPixelWeights) -> "tf.keras.Model":
    """Input (H, W, 1) -> Flatten -> Dense (+ ReLU) -> softmax, float64."""
    size = weights.image_size
    inputs = tf.keras.Input((size, size, 1), name="image")
    flat = tf.keras.layers.Flatten(name="flatten")(inputs)
    dense = tf.keras.layers.Dense(weights.bias.size, activation="relu" if weights.relu else None,
                                  name="dense")(flat)
    outputs = tf.keras.layers.Activation("softmax", name="softmax")(dense)
    model = tf.keras.Model(inputs, outputs, name="center_pixel")
    model.get_layer("dense").set_weights([weights.kernel, weights.bias])
    return model
