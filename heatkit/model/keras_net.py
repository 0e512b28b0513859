"""A Keras image classifier, in a TensorFlow graph and session of its own."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from heatkit.base import frameworks
from heatkit.base.evaluated import AffineSplit
from heatkit.base.errors import UsageError
from heatkit.model.code import run_file
from heatkit.model.files import first_line, keras_config, layer_classes, refuse_code_layers, refuse_keras_3
from heatkit.model.keras_head import find_head, inverted


class KerasNet:
    """A Keras image classifier. Its head (heatkit/model/heads.py) is found from the operation its
    output comes from, however the model writes it (a Softmax layer, an activation string or
    function, tf.nn.softmax called on a tensor), and `logits_model` ends at its logits: the final
    activation layer's input, or a copy of the last layer without its activation; a binary
    classifier's one logit s becomes the two classes' (-s, s). Probabilities are computed from
    the logits here, in float32 at least.

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
        self.input_shape = tuple(model.input_shape[1:])
        with self.scope():
            _reserve_layer_names(model)
            self.is_chain = _is_chain(model)  # before the logits layer below adds a branch
            self.head, below, self._last = find_head(tf, self.session, model, self.input_shape)
            logits = self._two_logits(below)
            self.logits_model = tf.keras.Model(model.inputs, logits, name=f"{model.name}_logits")
            self._run = session.make_callable([self._compute(logits), self._probabilities(logits)],
                                              feed_list=model.inputs)
        self.num_classes = self.head.classes
        self._built: dict = {}

    @property
    def precision(self) -> str:
        """The model's float type, or its mixed-precision policy (float16 layers on float32 inputs)."""
        tf = frameworks.tensorflow()
        policies = sorted({layer.dtype_policy.name for layer in self.model.layers
                           if not isinstance(layer, tf.keras.layers.InputLayer) and hasattr(layer, "dtype_policy")})
        mixed = [policy for policy in policies if policy.startswith("mixed_")]
        return mixed[0] if mixed else policies[0] if len(policies) == 1 else \
            f"mixed ({', '.join(policies)})" if policies else self.dtype

    def _compute(self, tensor):
        """A tensor in the float type probabilities are computed in: float32 at least."""
        tf = frameworks.tensorflow()
        return tf.cast(tensor, tf.float64 if tensor.dtype == tf.float64 else tf.float32)

    def _probabilities(self, logits):
        tf = frameworks.tensorflow()
        logits = self._compute(logits)
        return tf.sigmoid(logits) if self.head.sigmoid else tf.nn.softmax(logits)

    def _two_logits(self, below):
        """The logits of the classes from the tensor below the final activation: a binary head's
        one logit s becomes (-s, s), through a Dense layer that LRP can pass relevance through."""
        tf = frameworks.tensorflow()
        if not self.head.binary:
            return below
        pair = tf.keras.layers.Dense(2, use_bias=False, trainable=False, dtype=below.dtype.name,
                                     name=f"{self.model.name}_binary_logits")
        logits = pair(below)
        pair.set_weights([np.array([[-1.0, 1.0]], dtype=below.dtype.name)])
        return logits

    @classmethod
    def load(cls, path: Path, trust: bool = False, custom_objects: Path | None = None) -> "KerasNet":
        """A Keras file or SavedModel folder, loaded into a graph and session of its own. Custom
        layer classes come from the Python file `custom_objects` (its code runs: with trust only)."""
        tf = frameworks.tensorflow()
        refuse_keras_3(path)
        if not trust:
            refuse_code_layers(path)
        objects = {**keras_own_layers(), **(_custom_objects(custom_objects) if custom_objects is not None else {})}
        graph, session = frameworks.inference_graph()
        with frameworks.keras_graph(graph, session, tf.keras.backend.floatx()):
            try:
                model = _load_keras(tf, path, trust, objects)
            except (OSError, ValueError, TypeError, KeyError) as error:
                unknown = _unknown_layers(tf, path, objects or {})
                if unknown:
                    raise UsageError(f"{path} holds layers Keras does not know, {', '.join(unknown)}: give the Python "
                                     "file that defines them with --custom-objects FILE.py --trust-model") from error
                raise UsageError(f"cannot load {path} as a Keras model ({first_line(error)}); give a Keras .h5 "
                                 "or .keras classifier, or a Keras SavedModel folder") from error
        return cls(model, graph, session, trust)

    @classmethod
    def wrap(cls, model) -> "KerasNet":
        """A Keras model the caller built in this process: rebuilt from its config and weights in a
        graph and session of its own, so that the caller's eager session goes on as it was. Its
        code is the caller's own, so Lambda layers are trusted."""
        tf = frameworks.tensorflow()
        if not hasattr(model, "get_config") or type(model).__name__ not in ("Functional", "Sequential", "Model"):
            raise UsageError(f"a subclassed Keras model ({type(model).__name__}) has no config to rebuild it from; "
                             "save it (model.save('model.keras')) and give the file, or build it with the functional "
                             "API")
        weights = model.get_weights()
        graph, session = frameworks.inference_graph()
        with frameworks.keras_graph(graph, session, model.inputs[0].dtype.name):
            try:
                copy = tf.keras.models.clone_model(model)
            except (ValueError, TypeError, NotImplementedError) as error:
                raise UsageError(f"cannot rebuild the Keras model given ({first_line(error)}); save it and give the "
                                 "file") from error
            copy.set_weights(weights)
        return cls(copy, graph, session, trusted=True)

    def scope(self, dtype: str | None = None):
        """This model's graph, session and float type (or `dtype`) as the defaults for the block
        (innvestigate casts its masks and constants to Keras' float type, which must be the model's)."""
        return frameworks.keras_graph(self.graph, self.session, dtype or self.dtype)

    @property
    def half(self) -> bool:
        """Whether the model computes in float16 or bfloat16 (a mixed-precision policy included)."""
        return any(half in self.precision for half in ("float16", "bfloat16"))

    @property
    def analyzed_in_float32(self) -> bool:
        """Whether LRP analyzes a float32 copy: innvestigate builds its rules in one float type, and
        a 16-bit model, or a 16-bit input before float32 layers, has two (see analysis_model)."""
        return self.half or self.dtype in ("float16", "bfloat16")

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
        consumers = _readers(self.model, self.model.inputs[0])
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

    def analysis_model(self):
        """The logits model as innvestigate 2.1.2's LRP can analyze it, and a function that prepares
        a batch for it (or None). Every elementwise activation layer (ReLU with any parameters,
        LeakyReLU, PReLU, ELU, ThresholdedReLU) becomes an Activation layer computing the same,
        which innvestigate passes relevance through whole, as zennit does on PyTorch: as their own
        classes, innvestigate reversed them by their gradient, which scales a PReLU's negative side
        by its slope once more. Elementwise preprocessing layers at the input (Rescaling,
        Normalization) are cut off and applied to the batch first: an elementwise layer passes
        relevance on unchanged, so the relevance of its output is that of the image's pixels.
        innvestigate builds its LRP rules in one float type: a float16 or mixed-precision model's
        LRP analyzes a float32 copy of it (the same weights)."""
        return self.once(("analysis model",), lambda: _analysis_model(frameworks.tensorflow(), self))

    def logits_model_with(self, replace: Callable):
        """A copy of the logits model (sharing its variables) in which each layer that replace(layer)
        gives a function for computes that function instead; the logits model itself where it gives
        none. The gradient rules use it for layers that compute one activation through several
        operations (a PReLU: relu(x) - alpha relu(-x))."""
        tf = frameworks.tensorflow()
        functions = {layer.name: function for layer in self.logits_model.layers
                     if (function := replace(layer)) is not None}
        if not functions:
            return self.logits_model

        def clone(layer):
            if layer.name in functions:
                return tf.keras.layers.Activation(functions[layer.name], name=layer.name, dtype=layer.dtype)
            return layer  # shared: its variables are the model's
        return tf.keras.models.clone_model(self.logits_model, clone_function=clone)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch)[0]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch)[1]

    def logits_and_probabilities(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, probabilities = self._run(batch)
        return logits, probabilities

    @cached_property
    def affine_split(self) -> AffineSplit | None:
        """For a chain of layers: Input, Flatten, Dense, then anything. The head re-uses the layers,
        the last as the logits model does."""
        tf = frameworks.tensorflow()
        layers = [layer for layer in self.model.layers if not isinstance(layer, tf.keras.layers.InputLayer)]
        if (len(layers) < 2 or not isinstance(layers[0], tf.keras.layers.Flatten)
                or not isinstance(layers[1], tf.keras.layers.Dense) or not self.is_chain):
            return None
        dense = layers[1]
        with self.scope():
            kernel, *bias = dense.get_weights()
            rest_input = tf.keras.Input((dense.units,), dtype=dense.dtype)
            hidden = tf.keras.layers.Activation(dense.activation, dtype=dense.dtype)(rest_input)
            if len(layers) > 2:
                for layer in layers[2:-1]:
                    hidden = layer(hidden)
                hidden = self._last(hidden)
            elif self.head.activation != "none":  # the Dense layer's activation is the final one
                hidden = rest_input if self.head.below else inverted(tf, self.head.activation, hidden)
            logits = self._two_logits(hidden)
            rest = self.session.make_callable(self._probabilities(logits), feed_list=[rest_input])
            rest_logits = self.session.make_callable(self._compute(logits), feed_list=[rest_input])
        return AffineSplit(kernel, bias[0] if bias else np.zeros(dense.units), rest, logits=rest_logits)


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


def _load_keras(tf, path: Path, trust: bool, objects: dict | None):
    """The Keras model in the file. Keras 2.14 loads a .keras file's weights with
    `variable.assign`, which in graph mode only builds assignment ops: we run them (the
    variables' initializers first), or the model would keep its initial weights."""
    if path.suffix != ".keras":
        return tf.keras.models.load_model(path, compile=False, custom_objects=objects)
    graph = tf.compat.v1.get_default_graph()
    before = set(graph.get_operations())
    model = tf.keras.models.load_model(path, compile=False, safe_mode=not trust, custom_objects=objects)
    initializers = {variable.initializer for variable in model.variables}
    loads = [op for op in graph.get_operations()
             if op not in before and op.type in ("AssignVariableOp", "Assign") and op not in initializers]
    tf.compat.v1.keras.backend.get_session().run(loads)  # get_session initializes the variables first
    return model


def keras_own_layers() -> dict:
    """Layers of keras.applications that Keras does not register, so that a model it built loads
    without --custom-objects: ConvNeXt's LayerScale and StochasticDepth are Keras' own code."""
    from keras.src.applications import convnext  # keras 2.14 keeps them there, with no public name

    return {"LayerScale": convnext.LayerScale, "StochasticDepth": convnext.StochasticDepth}


def _unknown_layers(tf, path: Path, objects: dict) -> list[str]:
    """The layer classes of a Keras file that neither Keras (its public layers and the ones it
    registers for deserialization, as TFOpLambda) nor `objects` defines."""
    from keras.src.layers import serialization

    if path.is_dir():
        return []
    serialization.populate_deserializable_objects()
    known = {"Functional", "Sequential", "Model", *objects, *serialization.LOCAL.ALL_OBJECTS}
    return sorted(name for name in layer_classes(keras_config(path)) if name not in known and
                  not hasattr(tf.keras.layers, name))


def _custom_objects(path: Path) -> dict:
    """The classes and functions a Python file defines or imports, by name: a Keras model's custom
    layers (a file may import them from the package that defines them)."""
    import inspect

    if not path.is_file():
        raise UsageError(f"--custom-objects {path} not found; give the Python file that defines the model's layers")
    module = run_file(path, "--custom-objects")
    return {name: value for name, value in vars(module).items() if not name.startswith("_") and
            (inspect.isclass(value) or inspect.isfunction(value))}  # defined there or imported into it


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


ACTIVATION_LAYERS = ("ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU")  # Keras' elementwise activation layers


def is_activation_layer(layer) -> bool:
    return type(layer).__name__ in ACTIVATION_LAYERS and type(layer).__module__.startswith("keras")


def _analysis_model(tf, net: KerasNet):
    layers = tf.keras.layers
    model, start, prepare, cut = net.logits_model, net.logits_model.inputs[0], None, []
    while len(readers := _readers(model, start)) == 1 and isinstance(readers[0], (layers.Rescaling,
                                                                                      layers.Normalization)):
        cut.append(readers[0])  # the elementwise preprocessing at the input: the batch goes through it first
        start = readers[0].output
    if cut:
        prepare = net.session.make_callable(start, feed_list=model.inputs)
    activations = [layer for layer in model.layers if is_activation_layer(layer)]
    wide = net.analyzed_in_float32

    def clone(layer):
        config = {**layer.get_config(), **({"dtype": "float32"} if wide else {})}
        dtype = config.get("dtype", layer.dtype)
        if layer in cut:  # passes its input on: the batch was prepared by it
            return layers.Activation("linear", name=layer.name, dtype=dtype)
        if layer in activations:  # its own computation, as a layer innvestigate passes relevance through
            return layers.Activation(layer.__class__.from_config(config), name=layer.name, dtype=dtype)
        return layer.__class__.from_config(config)
    if not (activations or wide or cut):
        return model, prepare
    inputs = tf.keras.Input(model.input_shape[1:], dtype="float32" if wide else net.dtype)
    copy = tf.keras.models.clone_model(model, input_tensors=inputs, clone_function=clone)
    for layer in copy.layers:
        if layer.weights:
            weights = model.get_layer(layer.name).get_weights()
            layer.set_weights([weight.astype(np.float32) if wide else weight for weight in weights])
    return copy, prepare


def _readers(model, tensor) -> list:
    """The layers of `model` that read `tensor`, found by the layer that made it (a loaded functional
    model's nodes do not hold the tensor objects its `inputs` are)."""
    tf = frameworks.tensorflow()
    maker = tensor._keras_history.layer
    return [layer for layer in model.layers if any(any(inbound is maker for inbound in tf.nest.flatten(
        node.inbound_layers)) for node in layer._inbound_nodes)]


def _is_chain(model) -> bool:
    """Whether every layer feeds only the next one, so that the layers can be re-applied in order."""
    return all(len(layer._inbound_nodes) <= 1 and len(layer._outbound_nodes) <= 1 for layer in model.layers)
