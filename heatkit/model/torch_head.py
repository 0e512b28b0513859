"""The head of a PyTorch classifier (heatkit/model/heads.py): found from what its forward computes,
and cut off, so that its logits can be explained.

The final activation is the softmax, log-softmax or sigmoid call whose result is the model's
output, however it is written (nn.Softmax, F.softmax, torch.softmax, Tensor.softmax, ...): a probe
forward records every such call under a TorchFunctionMode. Its logits are then taken at that
call: the model's last child is left out where the model is a Sequential ending in the
activation's module; otherwise a mode returns the activation's input in place of its output at
that call (the activation runs nowhere, so no rule of another mode sees it). A TorchScript
module runs its forward in C++: its graph names the final operation, and its logits are the
activation's output inverted, but for a scripted Sequential, whose modules run one by one.
torch.fx graphs (the windowed path, LRP) are cut at the activation's node instead.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable, UsageError
from heatkit.model.heads import Head, activation_of_values, check_classes

MODULES = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid"}
SCRIPT_OPS = {"aten::softmax": "softmax", "aten::log_softmax": "log_softmax", "aten::sigmoid": "sigmoid"}
METHODS = {"softmax": "softmax", "log_softmax": "log_softmax", "sigmoid": "sigmoid"}


@functools.cache
def activation_functions() -> dict:
    """The final-activation functions Python code calls, by the activation they compute."""
    torch = frameworks.torch()
    F, T = torch.nn.functional, torch.Tensor
    return {F.softmax: "softmax", torch.softmax: "softmax", T.softmax: "softmax", torch.special.softmax: "softmax",
            F.log_softmax: "log_softmax", torch.log_softmax: "log_softmax", T.log_softmax: "log_softmax",
            torch.special.log_softmax: "log_softmax", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
            T.sigmoid: "sigmoid", torch.special.expit: "sigmoid"}


@dataclass(frozen=True)
class Cut:
    """How the logits are taken from a module: "none" (its output is them, or is inverted),
    "last child" (a Sequential without its final activation module), or "call" (at the
    activation's call, the `index`-th call of an activation function in the forward). `key`
    names the classifier's element of a tuple or dict output."""

    kind: str = "none"
    index: int = -1
    key: int | str | None = None


def select(output, key=None):
    """The classifier's tensor and its name in the record: the output itself, or the element of a
    tuple or list (by index) or dict (by key) that `key` names, by default the first tensor of a
    tuple and a dict's "logits" (HuggingFace outputs) or first tensor."""
    torch = frameworks.torch()
    if isinstance(output, torch.Tensor):
        if key is not None:
            raise UsageError(f"output={key!r}: the model returns one tensor; set output to None")
        return output, None
    if isinstance(output, dict):
        keys = [name for name, value in output.items() if isinstance(value, torch.Tensor)]
        chosen = key if key is not None else "logits" if "logits" in keys else keys[0] if keys else None
    elif isinstance(output, (tuple, list)):
        keys = [i for i, value in enumerate(output) if isinstance(value, torch.Tensor)]
        chosen = key if key is not None else keys[0] if keys else None
    else:
        raise UsageError(f"the model returns a {type(output).__name__}; a classifier returns a tensor of class "
                         "scores, or a tuple or dict holding one")
    if chosen not in keys:
        raise UsageError(f"output={chosen!r} is not one of the model's tensor outputs ({', '.join(map(repr, keys))}); "
                         "set the output setting to one of them")
    return output[chosen], chosen


def find(module, inputs, key=None, name: str = "the model") -> tuple[Head, Cut]:
    """The head of `module`, and how to cut it, from a probe forward on `inputs` (NCHW, several
    rows), checked against the values: a cut whose logits do not give the model's output back is
    dropped for the activation inverted."""
    torch = frameworks.torch()
    scripted = isinstance(module, torch.jit.ScriptModule)
    with torch.no_grad():
        with (contextlib.nullcontext() if scripted else _Recording()) as recording:
            raw = module(inputs)
        output, chosen = select(raw, key)
        if output.dim() != 2:
            raise UsageError(f"{name} gives an output of shape {tuple(output.shape)}; a classifier gives one vector of "
                             "class scores per image, (batch, classes)")
        if scripted:
            activation = _scripted(module, chosen)
            kind, index = ("last child" if activation != "none" and _last_child_is(module, activation) else "none"), -1
        else:
            matches = [i for i, (_, result) in enumerate(recording.calls) if result is output]
            activation = recording.calls[matches[-1]][0] if matches else "none"
            kind = "none" if not matches else "last child" if _last_child_is(module, activation) else "call"
            index = matches[-1] if matches else -1
        found = "graph"
        if activation == "none":
            activation = activation_of_values(_floats(output))
            found = "values" if activation != "none" else "graph"
        cut = Cut(kind, index, chosen)
        head = Head(activation, int(output.shape[1]), below=kind != "none", output="" if chosen is None else
                    f"[{chosen!r}]", found=found)
        check_classes(head, name)
        if head.below and head.activation != "none" and not _gives_back(head, run(module, inputs, cut), output):
            head, cut = Head(activation, head.units, below=False, output=head.output), Cut(key=chosen)
    return head, cut


def run(module, inputs, cut: Cut):
    """The module's classifier tensor, below its final activation where `cut` says so."""
    if cut.kind == "last child":
        hidden = inputs
        for child in list(module.children())[:-1]:
            hidden = child(hidden)
        return hidden
    if cut.kind == "call":
        with _Cutting(cut.index):
            return select(module(inputs), cut.key)[0]
    return select(module(inputs), cut.key)[0]


def logits(head: Head, tensor):
    """The (batch, classes) logits of the classifier's tensor (see heads.py)."""
    torch = frameworks.torch()
    if not head.below and head.activation != "none":
        z = tensor.to(torch.promote_types(tensor.dtype, torch.float32))
        z = torch.log(z) if head.activation == "softmax" else z if head.activation == "log_softmax" else \
            torch.log(z) - torch.log1p(-z)
        tensor = z.to(tensor.dtype)
    return torch.cat([-tensor, tensor], dim=-1) if head.binary else tensor


def probabilities(head: Head, logits_):
    """Probabilities of logits, in float32 at least."""
    torch = frameworks.torch()
    z = logits_.to(torch.promote_types(logits_.dtype, torch.float32))
    return torch.sigmoid(z) if head.sigmoid else torch.softmax(z, dim=-1)


def logits_graph(module, head: Head, cut: Cut, tracer):
    """A torch.fx GraphModule of `module` (traced by `tracer`) that returns its logits: the output
    element chosen, cut below its final activation, the binary head's two logits appended.
    NotApplicable where the graph cannot be had or cut."""
    torch = frameworks.torch()
    try:
        graph = torch.fx.GraphModule(module, tracer.trace(module))
    except Exception as error:  # torch.fx cannot trace data-dependent control flow, among others
        raise NotApplicable(f"torch.fx cannot trace the model ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:120]})") from error
    [output] = [node for node in graph.graph.nodes if node.op == "output"]
    value = output.args[0]
    if cut.key is not None:
        if not isinstance(value, (tuple, list, dict)):
            raise NotApplicable("the model's outputs are not a tuple or dict in its graph")
        value = value[cut.key]
    if head.activation != "none" and head.below:
        if _activation_of_node(node := value, graph) != head.activation:
            raise NotApplicable(f"the model's final {head.activation} is not the last operation of its graph")
        value = node.args[0] if node.args else node.kwargs["input"]
    if head.binary:
        graph.add_submodule("heatkit_binary_logits", binary_logits()(next(module.parameters()).dtype))
        with graph.graph.inserting_before(output):
            value = graph.graph.call_module("heatkit_binary_logits", (value,))
    output.args = (value,)
    graph.graph.eliminate_dead_code()
    graph.recompile()
    return graph


def tracer(leaves: tuple = ()):
    """A torch.fx tracer that keeps modules of the `leaves` types whole, subclasses included (a
    twin's Dense, a subclass of nn.Linear, is otherwise traced into its function calls), and
    keeps whole any submodule whose forward cannot be traced (Python control flow on a traced
    value, or numpy numbers in its calls: onnx2torch's Gather and Slice of a dynamic reshape),
    instead of failing the whole graph; what the failed trace added to the graph is dead code,
    which logits_graph() removes. A module kept whole is one node of the graph: the windowed path runs it whole,
    and LRP passes relevance through it by its gradient, which is right for the shape
    operations that take this path."""
    torch = frameworks.torch()

    class Tracer(torch.fx.Tracer):
        kept_whole: list[str] = []  # the submodules kept whole because they could not be traced

        def is_leaf_module(self, submodule, qualified_name):
            return isinstance(submodule, leaves) or super().is_leaf_module(submodule, qualified_name)

        def call_module(self, submodule, forward, args, kwargs):
            path = self.path_of_module(submodule)
            stack = dict(self.module_stack)
            try:
                return super().call_module(submodule, forward, args, kwargs)
            except (torch.fx.proxy.TraceError, NotImplementedError, TypeError):  # fx's errors on untraceable code
                if not path:  # the model itself
                    raise
                self.module_stack.clear()
                self.module_stack.update(stack)
                self.kept_whole = [*self.kept_whole, path]
                return self.create_proxy("call_module", path, args, kwargs)

    return Tracer()


@functools.cache
def binary_logits():
    """The class of the layer that turns a binary classifier's logit s into the two classes'
    logits (-s, s): a Linear layer, so that LRP's rules see it (they give it the z-rule, which
    passes each class's relevance on whole)."""
    torch = frameworks.torch()

    class BinaryLogits(torch.nn.Linear):
        def __init__(self, dtype):
            super().__init__(1, 2, bias=False, dtype=dtype)
            with torch.no_grad():
                self.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.weight.requires_grad_(False)

    return BinaryLogits


class _Recording:
    """A TorchFunctionMode recording (activation, result) of every final-activation function called."""

    def __enter__(self):
        from torch.overrides import TorchFunctionMode

        functions = activation_functions()
        calls = self.calls = []

        class Recording(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                result = func(*args, **(kwargs or {}))
                if func in functions:
                    calls.append((functions[func], result))
                return result

        self.mode = Recording()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


class _Cutting:
    """A TorchFunctionMode returning the input of the `index`-th final-activation call unchanged,
    in place of its output (the model's output is that call's, by find())."""

    def __init__(self, index: int):
        from torch.overrides import TorchFunctionMode

        functions = activation_functions()
        seen = [0]

        class Cutting(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func in functions:
                    seen[0] += 1
                    if seen[0] - 1 == index:
                        return args[0] if args else kwargs["input"]
                return func(*args, **(kwargs or {}))

        self.mode = Cutting()

    def __enter__(self):
        self.mode.__enter__()

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def _scripted(module, key) -> str:
    """The final activation a TorchScript graph ends in, for a tensor or tuple output."""
    graph = module.inlined_graph  # kept alive while its nodes are read
    node = graph.return_node().inputsAt(0).node()
    if node.kind() == "prim::TupleConstruct":
        node = node.inputsAt(key if isinstance(key, int) else 0).node()
    return SCRIPT_OPS.get(node.kind(), "none")


def _last_child_is(module, activation: str) -> bool:
    """Whether the module is a Sequential whose last child is the activation's module."""
    if getattr(module, "original_name", type(module).__name__) != "Sequential":
        return False
    children = list(module.children())
    last = getattr(children[-1], "original_name", type(children[-1]).__name__) if children else None
    return MODULES.get(last) == activation


def _activation_of_node(node, graph) -> str | None:
    torch = frameworks.torch()
    if not isinstance(node, torch.fx.Node):
        return None
    if node.op == "call_function":
        return activation_functions().get(node.target)
    if node.op == "call_method":
        return METHODS.get(node.target)
    if node.op == "call_module":
        return MODULES.get(type(graph.get_submodule(node.target)).__name__)
    return None


def _gives_back(head: Head, below, output) -> bool:
    """Whether the activation of the logits taken below it is the model's output, to its precision."""
    torch = frameworks.torch()
    z = below.to(torch.promote_types(below.dtype, torch.float32))
    again = {"softmax": lambda: torch.softmax(z, -1), "log_softmax": lambda: torch.log_softmax(z, -1),
             "sigmoid": lambda: torch.sigmoid(z)}[head.activation]()
    tolerance = 1e-2 if output.dtype in (torch.float16, torch.bfloat16) else 1e-5
    return bool(torch.allclose(again, output.to(again.dtype), rtol=tolerance, atol=tolerance))


def _floats(tensor):
    torch = frameworks.torch()
    return tensor.detach().to(torch.promote_types(tensor.dtype, torch.float32)).cpu().numpy()

