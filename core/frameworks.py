"""The one place TensorFlow and PyTorch are imported, lazily, so that `-h` stays instant.

TensorFlow comes up in graph mode (innvestigate 2.1.2 needs eager execution off before a
Keras model is built or loaded), with float64 as Keras' default float type and without
Grappler's graph rewrites, and quiet unless `verbose(True)` was called first.
"""
from __future__ import annotations

import logging
import os
import warnings

_verbose = False


def verbose(on: bool) -> None:
    """Show (on) or hide TensorFlow's and absl's log noise, and the libraries' warnings (PIL's about
    a damaged file among them: the file is then refused in one line); call before the first import."""
    global _verbose
    _verbose = on
    if not on:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore", module=r"(keras|tensorflow|innvestigate|shap|lime|captum|PIL)(\.|$)")


def tensorflow():
    """TensorFlow, set up once for the Keras path."""
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if tf.executing_eagerly():
        if not _verbose:
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
            tf.get_logger().setLevel(logging.ERROR)
        tf.compat.v1.disable_eager_execution()
        tf.keras.backend.set_floatx("float64")
        # Grappler's graph rewrites took 15 of the 24 s the gradient family spends on the
        # 227 x 227 model (rewriting graphs that hold 100 MB of weights) and change no result.
        session_config = tf.compat.v1.ConfigProto()
        session_config.graph_options.rewrite_options.disable_meta_optimizer = True
        tf.compat.v1.keras.backend.set_session(tf.compat.v1.Session(config=session_config))
    return tf


def torch():
    """PyTorch. Its CPU kernels that the toolkit uses are deterministic as they are (the tests rerun
    every method and compare bits); use_deterministic_algorithms would add 2 s to start-up."""
    import torch

    return torch
