"""A PyTorch network as a torch.fx graph, and what its nodes are: the graph traced once (or None
where it cannot be, or has nothing to window), each node's kind for the windowed path
(heatkit/model/windows.py), and a global average written as a function (the CAM family's and
LRP's patterns)."""
from __future__ import annotations

import operator

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.base.progress import say
from heatkit.model.torch_head import logits_graph, tracer

ELEMENTWISE_MODULES = ("ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid", "Tanh",
                       "Hardswish", "Hardsigmoid", "Hardtanh", "Softplus", "PReLU", "Identity", "Dropout",
                       "Dropout2d", "BatchNorm2d")
ELEMENTWISE_NAMES = {"relu", "relu_", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid",
                     "tanh", "hardswish", "hardsigmoid", "hardtanh", "softplus", "clamp", "clamp_min", "clamp_max",
                     "contiguous", "dropout"}
BINARY = {operator.add: "add", operator.iadd: "add", operator.mul: "mul", operator.imul: "mul", operator.sub: "sub",
          operator.isub: "sub"}
BINARY_NAMES = {"add", "add_", "mul", "mul_", "sub", "sub_"}


def traced(net):
    """The torch.fx graph of a TorchNet's logits (heatkit/model/torch_head.py), or None where
    torch.fx cannot trace its module (TorchScript, data-dependent control flow, submodules kept
    whole because they could not be traced, whose values may depend on the batch's shape) or it
    has no convolution or pooling to window."""
    torch = frameworks.torch()
    if isinstance(net.module, torch.jit.ScriptModule):
        return None
    tracing = tracer()
    try:
        graph = logits_graph(net.module, net.head, net.cut, tracing)
    except NotApplicable as reason:  # full passes then: slower, and said with -v
        if frameworks.is_verbose():
            say(f"windowed path off for this model: {reason}")
        return None
    if tracing.kept_whole:
        return None
    spatial = (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)
    return graph if any(isinstance(module, spatial) for module in graph.modules()) else None


def kind_of(node, modules: dict) -> str | None:
    """What the windowed path does with a node of a traced network: "elementwise" (the window goes
    through as it is), "spatial" (a Conv2d or pooling, which grows it), "flatten", "linear",
    "mean" (a global average), "binary" (an add, mul or sub of two maps), "cat", or None (the node
    runs on whole inputs). `modules` are the graph's modules by name."""
    torch = frameworks.torch()
    functional = torch.nn.functional
    if node.op == "call_module":
        module = modules[node.target]
        name = type(module).__name__
        if name in ELEMENTWISE_MODULES:
            return "elementwise" if not module.training else None
        if name in ("Conv2d", "MaxPool2d", "AvgPool2d"):
            return "spatial"
        if name == "Flatten" and module.start_dim == 1 and module.end_dim == -1:
            return "flatten"
        if name == "Linear":
            return "linear"
        if name == "AdaptiveAvgPool2d" and module.output_size in (1, (1, 1)):
            return "mean"
        return None
    if node.op == "call_function" and node.target is torch.flatten or \
            node.op == "call_method" and node.target == "flatten":
        return "flatten" if node.args[1:] == (1,) and not node.kwargs else None
    if is_spatial_mean(node):
        return "mean"
    name = getattr(node.target, "__name__", node.target) if node.op == "call_function" else node.target
    if node.op == "call_function" and node.target in BINARY or node.op == "call_method" and name in BINARY_NAMES:
        return "binary"
    if node.op == "call_function" and node.target in (torch.add, torch.mul, torch.sub):
        return "binary"
    if node.op == "call_function" and node.target in (functional.linear, torch._C._nn.linear):
        return "linear"
    if node.op == "call_function" and node.target is torch.cat:
        return "cat"
    if name in ELEMENTWISE_NAMES:
        return "elementwise"
    return None


def is_spatial_mean(node) -> bool:
    """x.mean((2, 3)) or torch.mean(x, (2, 3)), keepdim or not: a global average pooling written
    as a function."""
    torch = frameworks.torch()
    is_mean = (node.op == "call_method" and node.target == "mean") or (node.op == "call_function"
                                                                     and node.target is torch.mean)
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return is_mean and isinstance(dims, (tuple, list)) and sorted(d % 4 for d in dims) == [2, 3] and \
        set(node.kwargs) <= {"dim", "keepdim"}
