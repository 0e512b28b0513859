"""The one place TensorFlow and PyTorch are imported, lazily, so that `-h` stays instant.

TensorFlow comes up in graph mode (innvestigate 2.1.2 needs eager execution off before a
Keras model is built or loaded), without Grappler's graph rewrites, and quiet unless
`verbose(True)` was called first. Each Keras model keeps its own precision: code that builds
graphs on a model of another float type than Keras' default runs inside `keras_floatx(dtype)`.
"""
from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager

_verbose = False


def verbose(on: bool) -> None:
    """Show (on) or hide (the default) TensorFlow's and absl's log noise, and the libraries'
    warnings (PIL's about a damaged file among them: the file is then refused in one line); call
    before the first import."""
    global _verbose
    _verbose = on
    _quiet()


def _quiet() -> None:
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore", module=r"(keras|tensorflow|innvestigate|shap|lime|captum|zennit|torch|PIL)(\.|$)")


def tensorflow():
    """TensorFlow, set up once for the Keras path."""
    _quiet()
    import tensorflow as tf

    if tf.executing_eagerly():
        if not _verbose:
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
            tf.get_logger().setLevel(logging.ERROR)
        tf.compat.v1.disable_eager_execution()
        tf.compat.v1.keras.backend.set_session(session(tf.compat.v1.get_default_graph()))
    return tf


def session(graph):
    """A TensorFlow session on `graph`. Grappler's graph rewrites took 15 of the 24 s the gradient
    family spent on the 227 x 227 model (rewriting graphs that hold 100 MB of weights) and change
    no result: they are off."""
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return tf.compat.v1.Session(graph=graph, config=config)


@contextmanager
def keras_graph(graph, session, dtype: str):
    """`graph` and `session` as TensorFlow's and Keras' defaults, and `dtype` as Keras' float type,
    for the block: where a Keras model of that graph is built, loaded, read or analyzed."""
    with graph.as_default(), session.as_default(), keras_floatx(dtype):
        yield


@contextmanager
def keras_floatx(dtype: str):
    """Keras' default float type set to `dtype` for the block, and its dtype policy left to follow
    it: innvestigate casts its masks and constants to that type and builds layers of the default
    policy, which must compute in the model's own type. A policy set by the caller (a notebook's
    set_global_policy, even to "float32") would otherwise fix every new layer's type, and a
    float64 model's analyzer mixed float32 layers into it (a TypeError)."""
    tf = tensorflow()
    from keras.src.mixed_precision import policy  # the policy the caller set, if any (Keras keeps no public handle)

    previous, previous_policy = tf.keras.backend.floatx(), policy._global_policy
    tf.keras.backend.set_floatx(dtype)
    tf.keras.mixed_precision.set_global_policy(None)
    try:
        yield
    finally:
        tf.keras.backend.set_floatx(previous)
        tf.keras.mixed_precision.set_global_policy(previous_policy)


def torch():
    """PyTorch. Its CPU kernels that the toolkit uses are deterministic as they are (the tests rerun
    every method and compare bits); use_deterministic_algorithms would add 2 s to start-up."""
    import torch

    return torch


def allocated_bytes(run) -> int:
    """Bytes of every tensor that run() makes, counted at the operator level (so inside TorchScript
    too); views and in-place results are no new memory."""
    torch_ = torch()
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Counting(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, operator, types, args=(), kwargs=None):
            output = operator(*args, **(kwargs or {}))
            given = {leaf.untyped_storage().data_ptr() for leaf in tree_leaves((args, kwargs))
                     if isinstance(leaf, torch_.Tensor)}
            self.total += sum(leaf.nbytes for leaf in tree_leaves(output) if isinstance(leaf, torch_.Tensor)
                              and leaf.untyped_storage().data_ptr() not in given)  # not a view, not in place
            return output
    with torch_.no_grad(), Counting() as counting:
        run()
    return counting.total
