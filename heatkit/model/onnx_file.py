"""ONNX files: what Keras 3, TensorFlow, JAX and deployment pipelines export. A file is converted
to a torch.fx GraphModule by onnx2torch, so that every PyTorch method, LRP through zennit and
the windowed path apply to it, and its probabilities are checked against onnxruntime's before
any method runs.

Reading an ONNX file parses a protobuf: no code of the file runs. onnx2torch has converters for
the operations of ONNX opsets up to about 17; a newer version of an operation whose converter
is missing takes the converter of its newest older version, and the check against onnxruntime
says whether that was right. An image model's input may be NCHW (PyTorch's exports) or NHWC
(tf2onnx's, from Keras): the second gets a transpose in front.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.base.images import MAX_PIXELS
from heatkit.model.files import first_line

AGREEMENT = 1e-5  # the largest difference of probabilities from onnxruntime's that a conversion may have


def load(path: Path, size: list[int] | None):
    """The converted module (taking NCHW input), its input shape (H, W, C), the file's layout
    ("NCHW" or "NHWC"), and notes on how it runs."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's and onnx's own errors
        raise UsageError(f"cannot read {path} as an ONNX model ({first_line(error)})") from error
    _load_external_data(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # onnx's own errors
        raise UsageError(f"cannot read {path} as an ONNX model ({first_line(error)})") from error
    weights = {value.name for value in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    if len(inputs) != 1:
        raise UsageError(f"{path}: the model takes {len(inputs)} inputs; give an image classifier, which takes one")
    [graph_input] = inputs
    dims = [dim.dim_value or None for dim in graph_input.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise UsageError(f"{path}: the model's input has shape {dims}; give an image classifier, whose input is a "
                         "batch of images (N, C, H, W) or (N, H, W, C)")
    layout = "NHWC" if dims[3] in (1, 3) and dims[1] not in (1, 3) else "NCHW"
    channels, height, width = (dims[3], dims[1], dims[2]) if layout == "NHWC" else dims[1:]
    if size is not None:
        height, width = size
    if height is None or width is None:
        raise UsageError(f"{path} does not fix its input size; give it with --input-size HxW")
    if height * width > MAX_PIXELS:
        raise UsageError(f"{path} declares an input of {height}x{width} pixels, more than {MAX_PIXELS:,}; give the "
                         "model's real input size with --input-size HxW")
    module = _convert(model, path)
    _plain_softmaxes(module, (channels, height, width))
    if layout == "NHWC":  # PyTorch's NCHW input, given to the NHWC graph
        module = _wrapped(module, lambda model, x: model(x.permute(0, 2, 3, 1)))
    notes = []
    if dims[0] == 1 and not _takes_batches(module, (channels, height, width)):
        cat = frameworks.torch().cat
        module = _wrapped(module, lambda model, x: cat([model(x[i:i + 1]) for i in range(len(x))]))
        notes.append(f"{path} fixes its batch at 1 and its graph fails on more images: it runs one image at a time, "
                     "with neither the windowed path nor LRP; export it with a dynamic batch (torch.onnx.export(..., "
                     "dynamic_axes={'input': {0: 'batch'}})) to batch it")
    return module, (height, width, channels), layout, notes


def check(path: Path, net, layout: str) -> str:
    """The converted module's probabilities against onnxruntime's on probe inputs: a UsageError past
    AGREEMENT, else the note that says how close they are."""
    import onnxruntime

    from heatkit.model.heads import probabilities_of_output

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probes = np.stack([np.zeros(net.input_shape), np.full(net.input_shape, 0.5),
                       np.random.default_rng(0).random(net.input_shape)])
    batch = (probes if layout == "NHWC" else probes.transpose(0, 3, 1, 2)).astype(np.float32)
    graph_input = session.get_inputs()[0]
    rows = [batch[i:i + 1] for i in range(len(batch))] if graph_input.shape[0] == 1 else [batch]  # a fixed batch of 1
    element = net.cut.key if isinstance(net.cut.key, int) else 0
    raw = np.concatenate([session.run(None, {graph_input.name: row})[element] for row in rows])
    difference = float(np.abs(net.probabilities(probes) - probabilities_of_output(net.head, raw)).max())
    if not difference <= AGREEMENT:
        raise UsageError(f"{path}: onnx2torch's conversion gives probabilities {difference:.2g} away from "
                         f"onnxruntime's (the limit is {AGREEMENT:g}); export the model again, at opset 17")
    return (f"{path} is converted to PyTorch by onnx2torch; its probabilities equal onnxruntime's to {difference:.1e} "
            "on 3 probe inputs")


def _load_external_data(model, path: Path) -> None:
    """The weights an ONNX file keeps in other files, read only from regular files inside its own
    folder, every location resolved first (symlinks included: a link in the folder to a secret file
    outside it was read into a bias before onnxruntime refused the model, in 50 lines)."""
    from onnx import external_data_helper

    folder = path.resolve().parent
    for tensor in tensors(model.graph):
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = dict((entry.key, entry.value) for entry in tensor.external_data).get("location", "")
        target = (folder / location).resolve()
        if not target.is_relative_to(folder) or not target.is_file():
            raise UsageError(f"{path} keeps weights in {location!r}, which is "
                             f"{'outside its folder' if not target.is_relative_to(folder) else 'not a regular file'}; "
                             "give a model whose external data lies in its own folder")
    try:
        external_data_helper.load_external_data_for_model(model, str(folder))
    except Exception as error:  # onnx's own errors on what it cannot read
        raise UsageError(f"cannot read the external data of {path} ({first_line(error)})") from error


def tensors(graph):
    """Every tensor a graph holds: its initializers and its nodes' tensor attributes, subgraphs
    (an If's, a Loop's) included."""
    import onnx

    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                yield attribute.t
            yield from attribute.tensors
            for inner in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                yield from tensors(inner)


def _convert(model, path: Path):
    """onnx2torch's GraphModule, converters of older versions standing in for missing ones."""
    onnx2torch = frameworks.onnx2torch()
    from onnx2torch.node_converters import registry

    _fold_constants(model)
    _drop_identities(model)

    for _ in range(64):  # at most one stand-in per operation
        try:
            return onnx2torch.convert(model)
        except NotImplementedError as error:
            missing = _missing(error)
            older = sorted(version for domain, kind, version in registry._CONVERTER_REGISTRY
                           if missing and (domain, kind) == missing[:2] and version < missing[2])
            if not older:
                raise UsageError(f"{path}: onnx2torch cannot convert the model ({first_line(error)}); export it "
                                 "without that operation, or at an older opset") from error
            registry.add_converter(missing[1], missing[2], missing[0])(
                registry._CONVERTER_REGISTRY[registry.OperationDescription(missing[0], missing[1], older[-1])])
        except Exception as error:  # onnx2torch's own errors on what it cannot read
            raise UsageError(f"{path}: onnx2torch cannot convert the model ({type(error).__name__}: "
                             f"{first_line(error)})") from error
    raise UsageError(f"{path}: onnx2torch cannot convert the model")


def _fold_constants(model) -> None:
    """Constant operations turned into initializers: PaddlePaddle's exporter writes every weight as
    a Constant node (and no initializer), where onnx2torch looks for the weights of a Conv or Gemm
    among the initializers."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    constants = [node for node in graph.node if node.op_type == "Constant" and len(node.attribute) == 1]
    for node in constants:
        value = onnx.helper.get_attribute_value(node.attribute[0])
        array = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.array(value)
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
    kept = [node for node in graph.node if node not in constants]
    del graph.node[:]
    graph.node.extend(kept)


def _drop_identities(model) -> None:
    """Identity operations removed from the graph: their readers given the Identity's input (PyTorch's
    exporter at opset 19 and later puts them between weights and the layers reading them, where
    onnx2torch looks for the weights themselves), and an Identity that gives a graph output
    replaced by its input's operation writing that output (a model's final softmax is then the
    last operation of its graph, where the head is found)."""
    graph = model.graph
    outputs = {value.name for value in graph.output}
    producers = {output: node for node in graph.node for output in node.output}
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Identity" and node.output[0] in outputs else None
        if source is not None and node.input[0] not in outputs and \
                sum(node.input[0] in other.input for other in graph.node) == 1:
            source.output[list(source.output).index(node.input[0])] = node.output[0]
            node.input[0] = node.output[0]  # now an Identity of itself: dropped below
    renamed = {node.output[0]: node.input[0] for node in graph.node
               if node.op_type == "Identity" and node.output[0] not in outputs}
    for _ in range(len(renamed)):  # chains of Identities resolve to their first input
        renamed = {key: renamed.get(value, value) for key, value in renamed.items()}
    kept = [node for node in graph.node if not (node.op_type == "Identity" and
                                                (node.output[0] in renamed or node.input[0] == node.output[0]))]
    for node in kept:
        for index, name in enumerate(node.input):
            node.input[index] = renamed.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)


def _plain_softmaxes(module, chw: tuple[int, int, int]) -> None:
    """onnx2torch's Softmax and LogSoftmax of opsets up to 12, which flatten their input from the
    axis on, compute and reshape back, replaced by torch's own where their input has no dimension
    past the axis (a classifier's (batch, classes) scores): the same numbers, written as the
    softmax whose input the head takes as the logits (heatkit/model/torch_head.py)."""
    torch = frameworks.torch()
    from onnx2torch.node_converters.activations import OnnxSoftmaxV1V11

    found = {name: child for name, child in module.named_modules() if isinstance(child, OnnxSoftmaxV1V11)}
    ranks = {}
    hooks = [child.register_forward_hook(lambda child, inputs, output, name=name: ranks.setdefault(name, inputs[0].dim()))
             for name, child in found.items()]
    try:
        with torch.no_grad():
            module(torch.zeros(1, *chw))
    except RuntimeError:  # the module's own failure is reported where it runs
        return
    finally:
        for hook in hooks:
            hook.remove()
    for name, child in found.items():
        axis = child.axis % ranks[name] if name in ranks else None
        if axis == ranks.get(name, 0) - 1:
            parent, _, attribute = name.rpartition(".")
            plain = torch.nn.LogSoftmax(dim=axis) if child.is_log else torch.nn.Softmax(dim=axis)
            setattr(module.get_submodule(parent) if parent else module, attribute, plain)


def _missing(error: NotImplementedError) -> tuple[str, str, int] | None:
    """(domain, operation, version) of onnx2torch's 'Converter is not implemented' error."""
    import re

    found = re.search(r"domain='([^']*)', operation_type='([^']*)', version=(\d+)", str(error))
    return (found.group(1), found.group(2), int(found.group(3))) if found else None


def _takes_batches(module, chw: tuple[int, int, int]) -> bool:
    """Whether the converted module runs on two images at once: a graph exported with a batch of 1
    may hold that 1 in its shapes (a ViT's class token, a Reshape to (1, -1))."""
    torch = frameworks.torch()
    try:
        with torch.no_grad():
            return module(torch.zeros(2, *chw)).shape[0] == 2
    except RuntimeError:  # torch's shape errors: the graph holds its batch of 1
        return False


def _wrapped(model, forward):
    """`model` inside a module whose forward(x) is forward(model, x): torch.fx traces through it."""
    torch = frameworks.torch()

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return forward(self.model, x)

    return Wrapped()
