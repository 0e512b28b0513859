"""DeConvNet (Zeiler & Fergus 2014): backward signals through each rectifier rectified, whatever
the forward pass did there (a ReLU passes max(signal, 0); so does every other piecewise-linear
rectifier). As for Guided Backprop, a smooth activation or a softmax inside the model has no
such rule, and the method is not applicable to it."""
from heatkit.methods._entry import Paper
from heatkit.methods.guided_backprop import SLOPES, rectifier_method


def _rectified(tf, op, signal):
    return tf.nn.relu(signal)


METHOD = rectifier_method("deconvnet", "DeConvNet", Paper(
    "Zeiler & Fergus 2014", "Visualizing and Understanding Convolutional Networks", "https://arxiv.org/abs/1311.2901"),
    dict.fromkeys(SLOPES, _rectified), guided=False)
