"""The one place TensorFlow, PyTorch and onnx2torch are imported, lazily, so that `-h` stays
instant, and the one place the toolkit changes anything for the whole process:

- warnings: the libraries' warnings are ignored, and TensorFlow's and absl's logs quiet, unless
  `verbose(True)` was called first (-v);
- Keras' classes: Keras rebases its classes for graph mode as each is built; `keras_graph` gives
  them back to eager mode when its block ends, so the process and the notebook stay eager;
  innvestigate 2.1.2 needs graph mode, which each Keras model gets in a graph and session of its
  own, without Grappler's graph rewrites;
- Keras' float type and dtype policy: set for a block by `keras_floatx`, and restored;
- onnx2torch's converter registry: `onnx2torch()` adds a Gelu converter, and the conversion
  (heatkit/model/onnx_file.py) registers an operation's older converter under a missing newer
  version; both are additions that change no conversion onnx2torch could already make.
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from contextlib import contextmanager

_verbose = False


def is_verbose() -> bool:
    """Whether -v asked for the libraries' messages and the causes of one-line errors."""
    return _verbose


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
    """TensorFlow, quiet unless verbose. The process stays in eager mode, as a notebook expects:
    every Keras model the toolkit analyzes lives in a graph and session of its own
    (heatkit/model/keras_net.py), which innvestigate's graph mode needs."""
    _quiet()
    import tensorflow as tf

    if not _verbose:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel(logging.ERROR)
    return tf


def inference_graph():
    """A new TensorFlow graph and session for a Keras model at inference: the graph's learning
    phase is fixed at 0, so that BatchNorm and Dropout layers built in it make no tf.cond on it (a
    ResNet50's first gradient took 17 s through those conds, 6 s without; its forward pass half
    the time)."""
    tf = tensorflow()
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.keras.backend.set_learning_phase(0)
    return graph, session(graph)


def session(graph):
    """A TensorFlow session on `graph`. Grappler's graph rewrites took 15 of the 24 s the gradient
    family spent on the 227 x 227 model (rewriting graphs that hold 100 MB of weights) and change
    no result: they are off."""
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return tf.compat.v1.Session(graph=graph, config=config)


_graph_depth = 0  # keras_graph blocks entered and not left
_graph_classes: set = set()  # the Keras classes a graph-mode build rewrote, given back to eager mode since


@contextmanager
def keras_graph(graph, session, dtype: str):
    """`graph` and `session` as TensorFlow's and Keras' defaults, and `dtype` as Keras' float type,
    for the block: where a Keras model of that graph is built, loaded, read or analyzed.

    Keras chooses between its graph-mode (v1) and eager (v2) classes by rewriting their base
    classes as each object is made, and leaves them so: after a graph-mode build, a notebook's
    eager model (its Sequential, its Dense layers) failed to predict. Leaving the outermost block
    gives every class a graph-mode build rewrote back to eager mode; entering one gives them back
    to graph mode, for the models built there before."""
    global _graph_depth
    tf = tensorflow()
    if _graph_depth == 0 and _graph_classes:
        _rebase(_graph_classes, eager=False)
    _graph_depth += 1
    try:
        with graph.as_default(), session.as_default(), keras_floatx(dtype):
            yield
    finally:
        _graph_depth -= 1
        if _graph_depth == 0 and tf.executing_eagerly():
            _graph_classes.update(_graph_mode_classes())
            _rebase(_graph_classes, eager=True)


def _graph_mode_classes() -> list:
    """The Keras classes whose bases are graph-mode (v1) classes now."""
    from keras.src.engine import base_layer, base_layer_v1, training_v1

    graph_bases = (base_layer_v1.Layer, training_v1.Model)
    found, queue = [], [base_layer.Layer]
    while queue:
        for cls in queue.pop().__subclasses__():
            queue.append(cls)
            if cls not in graph_bases and any(base in graph_bases for base in cls.__bases__):
                found.append(cls)
    return found


def _rebase(classes, eager: bool) -> None:
    from keras.src.engine import base_layer, base_layer_v1, training, training_v1
    from keras.src.utils.version_utils import swap_class

    for cls in classes:
        swap_class(cls, training.Model, training_v1.Model, eager)
        swap_class(cls, base_layer.Layer, base_layer_v1.Layer, eager)


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


@functools.cache
def onnx2torch():
    """onnx2torch, with a converter it lacks for what PyTorch's exporter writes at its default
    opset (Gelu, opset 20, as nn.GELU), and quiet about its Slice, which indexes with a list and
    makes torch warn at every forward pass."""
    nn = torch().nn
    import onnx2torch
    from onnx2torch.node_converters.registry import add_converter
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    @add_converter(operation_type="Gelu", version=20)
    def gelu(node, graph):
        return OperationConverterResult(torch_module=nn.GELU(node.attributes.get("approximate", "none")),
                                        onnx_mapping=onnx_mapping_from_node(node))
    warnings.filterwarnings("ignore", "Using a non-tuple sequence for multidimensional indexing")
    return onnx2torch


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
