"""A Keras image classifier, in a TensorFlow graph and session of its own."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from heatkit.base import frameworks
from heatkit.base.engine import AffineSplit
from heatkit.base.errors import UsageError
from heatkit.model.files import first_line, refuse_code_layers


class KerasNet:
    """A Keras image classifier. `logits_model` ends before the softmax: at a softmax Activation
    layer's input, at a copy of a softmax Dense layer without its activation, or, for a model
    without a softmax, at its output (the softmax is then applied here).

    Each model lives in a TensorFlow graph and session of its own: a session copies its whole
    graph whenever operations are added, so in one shared graph every analyzer built got slower
    with every model loaded before it. Use `model` and `logits_model` inside `scope()`: outside it,
    Keras would read their variables through a session that never loaded them.
    """

    def __init__(self, model, graph, session, trusted: bool):
        """A Keras model already in `graph`, whose variables `session` holds: see load() and wrap()."""
        tf = frameworks.tensorflow()
        self.model, self.graph, self.session = model, graph, session
        self.trusted = trusted  # Lambda layers allowed: their code runs on loading and in every analysis
        self.dtype = model.inputs[0].dtype.name
        if len(model.inputs) != 1 or len(model.input_shape) != 4 or len(model.output_shape) != 2:
            raise UsageError(f"{model.name}: the model must take one (H, W, C) image and give one vector of classes, "
                             f"not {model.input_shape} -> {model.output_shape}")
        with self.scope():
            _reserve_layer_names(model)
            self.is_chain = _is_chain(model)  # before the logits layer below adds a branch
            logits = _logits_tensor(tf, model)
            self.outputs_logits = logits is model.output  # no softmax in the model: probabilities apply one
            self.logits_model = tf.keras.Model(model.inputs, logits, name=f"{model.name}_logits")
            self._run = session.make_callable([logits, tf.nn.softmax(logits)], feed_list=model.inputs)
        self.input_shape = tuple(model.input_shape[1:])
        self.num_classes = int(model.output_shape[-1])
        self._built: dict = {}

    @classmethod
    def load(cls, path: Path, trust: bool = False) -> "KerasNet":
        """A Keras file, loaded into a graph and session of its own."""
        tf = frameworks.tensorflow()
        if not trust:
            refuse_code_layers(path)
        graph = tf.Graph()
        session = frameworks.session(graph)
        with frameworks.keras_graph(graph, session, tf.keras.backend.floatx()):
            try:
                model = _load_keras(tf, path, trust)
            except (OSError, ValueError, TypeError, KeyError) as error:
                raise UsageError(f"cannot load {path} as a Keras model ({first_line(error)}); "
                                 "give a Keras .h5 or .keras classifier") from None
        return cls(model, graph, session, trust)

    @classmethod
    def wrap(cls, model) -> "KerasNet":
        """A Keras model the caller built in this process, where it is: in its graph, with Keras'
        session of that graph. Its code is the caller's own, so Lambda layers are trusted."""
        import tensorflow as tf

        if tf.executing_eagerly():
            raise UsageError("this Keras model was built with eager execution, which innvestigate cannot analyze; "
                             "build it after heatkit.tensorflow() (graph mode), or save it and give the file")
        graph = model.inputs[0].graph
        with graph.as_default():
            session = tf.compat.v1.keras.backend.get_session()
        return cls(model, graph, session, trusted=True)

    def scope(self):
        """This model's graph, session and float type as the defaults for the block (innvestigate
        casts its masks and constants to Keras' float type, which must be the model's)."""
        return frameworks.keras_graph(self.graph, self.session, self.dtype)

    def once(self, key, build: Callable):
        """What build() makes on this model's graph, built once per key and then reused: a graph
        never shrinks, so an analyzer built per map would grow it with every map."""
        if key not in self._built:
            with self.scope():
                self._built[key] = build()
        return self._built[key]

    def weights(self, layer: str) -> list[np.ndarray]:
        """The named layer's weights (outer/inner in a nested model)."""
        with self.scope():
            return layer_named(self.model, layer).get_weights()

    @cached_property
    def input_scale(self) -> float | None:
        """The factor of a Rescaling layer the input goes through first, if any."""
        tf = frameworks.tensorflow()
        consumers = _consumers(self.model, self.model.inputs[0])
        if len(consumers) == 1 and isinstance(consumers[0], tf.keras.layers.Rescaling):
            return float(consumers[0].scale)
        return None

    @cached_property
    def activation_bytes(self) -> int:
        """Bytes of one image's layer outputs: what bounds a batch's size."""
        tf = frameworks.tensorflow()
        itemsize = np.dtype(self.dtype).itemsize

        def outputs(model) -> int:
            total = 0
            for layer in model.layers:
                if isinstance(layer, tf.keras.Model):
                    total += outputs(layer)
                    continue
                shapes = layer.output_shape if isinstance(layer.output_shape, list) else [layer.output_shape]
                total += sum(int(np.prod(shape[1:])) * itemsize for shape in shapes)
            return total
        return outputs(self.model)

    def analysis_model(self, lrp: bool):
        """The logits model as innvestigate 2.1.2 can analyze it, and a function that prepares a
        batch for it (or None). Plain ReLU layers become Activation("relu") layers: innvestigate's
        DeConvNet cannot copy a ReLU layer. For LRP, elementwise preprocessing layers at the input
        (Rescaling, Normalization) are cut off and applied to the batch first: an elementwise layer
        passes relevance on unchanged, so the relevance of its output is that of the image's pixels."""
        return self.once(("analysis model", lrp), lambda: _analysis_model(frameworks.tensorflow(), self, lrp))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch)[0]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch)[1]

    @cached_property
    def affine_split(self) -> AffineSplit | None:
        """For a chain of layers: Input, Flatten, Dense, then anything. The head re-uses the layers."""
        tf = frameworks.tensorflow()
        layers = [layer for layer in self.model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
        if (len(layers) < 2 or not isinstance(layers[0], tf.keras.layers.Flatten)
                or not isinstance(layers[1], tf.keras.layers.Dense) or not self.is_chain):
            return None
        dense = layers[1]
        with self.scope():
            kernel, *bias = dense.get_weights()
            head_input = tf.keras.Input((dense.units,), dtype=dense.dtype)
            hidden = tf.keras.layers.Activation(dense.activation, dtype=dense.dtype)(head_input)
            for layer in layers[2:]:
                hidden = layer(hidden)
            if self.outputs_logits:  # as probabilities() does
                hidden = tf.nn.softmax(hidden)
            head = self.session.make_callable(hidden, feed_list=[head_input])
        return AffineSplit(kernel, bias[0] if bias else np.zeros(dense.units), head)


def named_layers(model, prefix: str = "") -> list[tuple[str, object]]:
    """(name, layer) for every layer of a Keras model, input to output, a nested model's own layers
    after it as outer/inner."""
    tf = frameworks.tensorflow()
    found = []
    for layer in model.layers:
        found.append((prefix + layer.name, layer))
        if isinstance(layer, tf.keras.Model):
            found += named_layers(layer, f"{prefix}{layer.name}/")
    return found


def layer_named(model, name: str):
    """The layer named `name`, or outer/inner for a layer of a nested model."""
    for part in name.split("/"):
        model = model.get_layer(part)
    return model


def _load_keras(tf, path: Path, trust: bool):
    """The Keras model in the file. Keras 2.14 loads a .keras file's weights with
    `variable.assign`, which in graph mode only builds assignment ops: we run them (the
    variables' initializers first), or the model would keep its initial weights."""
    if path.suffix != ".keras":
        return tf.keras.models.load_model(path, compile=False)
    graph = tf.compat.v1.get_default_graph()
    before = set(graph.get_operations())
    model = tf.keras.models.load_model(path, compile=False, safe_mode=not trust)
    initializers = {variable.initializer for variable in model.variables}
    loads = [op for op in graph.get_operations()
             if op not in before and op.type in ("AssignVariableOp", "Assign") and op not in initializers]
    tf.compat.v1.keras.backend.get_session().run(loads)  # get_session initializes the variables first
    return model


def _reserve_layer_names(model) -> None:
    """Keras names a new layer after its class, numbered per graph (add, add_1, ...), without looking
    at the layers loaded into that graph: the layers innvestigate builds would take the names of a
    loaded model's (a residual model's "add", a "lambda") and fail. Counting the model's names in
    the graph first makes new names skip them."""
    from keras.src import backend  # keras 2.14's per-graph name counters, which Keras keeps no public handle on

    counters = backend.get_default_graph_uid_map()
    for name in [model.name, *(layer.name for layer in model.submodules)]:
        base, _, number = name.rpartition("_")
        base, number = (base, int(number)) if number.isdigit() and base else (name, 0)
        counters[("", base)] = max(counters[("", base)], number + 1)


def _logits_tensor(tf, model):
    """The pre-softmax output of a Keras classifier (see KerasNet)."""
    last = model.layers[-1]
    softmax = tf.keras.activations.softmax
    if isinstance(last, tf.keras.layers.Activation) and last.activation is softmax:
        return last.input
    if isinstance(last, tf.keras.layers.Dense) and last.activation is softmax:
        linear = tf.keras.layers.Dense.from_config({**last.get_config(), "activation": "linear",
                                                    "name": f"{last.name}_logits"})
        logits = linear(last.input)
        linear.set_weights(last.get_weights())
        return logits
    return model.output


def _analysis_model(tf, net: KerasNet, lrp: bool):
    layers = tf.keras.layers
    start, prepare = net.logits_model.inputs[0], None
    if lrp:
        while len(consumers := _consumers(net.logits_model, start)) == 1 and \
                isinstance(consumers[0], (layers.Rescaling, layers.Normalization)):
            start = consumers[0].output
        if start is not net.logits_model.inputs[0]:
            prepare = net.session.make_callable(start, feed_list=net.logits_model.inputs)
    model = net.logits_model if prepare is None else tf.keras.Model(start, net.logits_model.output)
    relus = [layer for layer in model.layers if type(layer) is layers.ReLU and layer.max_value is None
             and not float(layer.negative_slope) and not float(layer.threshold)]
    if relus:
        copy = tf.keras.models.clone_model(model, clone_function=lambda layer: layers.Activation(
            "relu", name=layer.name, dtype=layer.dtype) if layer in relus else layer.__class__.from_config(
            layer.get_config()))
        copy.set_weights(model.get_weights())
        model = copy
    return model, prepare


def _consumers(model, tensor) -> list:
    """The layers of `model` that take `tensor` as their input."""
    return [layer for layer in model.layers if any(
        node.input_tensors is tensor or tensor in (node.input_tensors if isinstance(node.input_tensors, list) else [])
        for node in layer._inbound_nodes)]


def _is_chain(model) -> bool:
    """Whether every layer feeds only the next one, so that the layers can be re-applied in order."""
    return all(len(layer._inbound_nodes) <= 1 and len(layer._outbound_nodes) <= 1 for layer in model.layers)
