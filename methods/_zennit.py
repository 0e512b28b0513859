"""LRP on PyTorch through zennit 0.5.1 (Anders et al., "Software for dataset-wide XAI"; zennit 1.0
needs Python 3.11.11 or newer): its rules as hooks on every layer, applied to a copy of the
model's graph where residual additions and BatchNorms have the form LRP needs.

Why zennit: captum's LRP has rules for a fixed list of layer types and passes a residual
addition's relevance to both of its inputs whole, which doubles it; zennit's rules are hooks any
module can take, its Sum layer with the Norm rule shares an addition's relevance by the inputs'
contributions, and its MergeBatchNorm folds a BatchNorm into the layer before it. zennit finds
those only in torchvision's ResNets (and in Sequentials): for any model, the graph comes from
torch.fx, every addition of two tensors becomes a Sum, and every BatchNorm that follows a
convolution or linear layer is merged into it (a BatchNorm elsewhere takes the layer rule itself).
TorchScript modules have no Python graph to rewrite.
"""
from __future__ import annotations

import functools
import operator

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.methods._activations import kinds, name_of
from heatkit.methods._epsilon_rule import one_pass_epsilon
from heatkit.model.torch_head import binary_logits, logits_graph, tracer
from heatkit.model.graph_patterns import is_spatial_mean

NO_GRAPH = "LRP needs the model's graph to find its residual additions and BatchNorms"


def SAFE(values):
    """innvestigate's safe division: a zero denominator becomes 1e-7, the others stay as they are."""
    return values + 1e-7 * (values == 0)


def zennit():
    """The zennit package with the modules used here, imported when LRP first runs (it imports
    torchvision, which `-h` should not wait for)."""
    import zennit
    import zennit.canonizers, zennit.composites, zennit.core, zennit.layer, zennit.rules, zennit.types  # noqa: E401

    return zennit


def relevance(model, images, targets, rule, dense=None, first=None):
    """The relevance of every input element of each image, (N, H, W, C), starting from its
    target's logit: `rule` at each convolution, `dense` (or `rule`) at each linear layer, and where
    `first` is given, (layer types, rule), that rule at the first layer of those types (a composite's)."""
    torch = frameworks.torch()
    net = model.torch
    if net.scripted:
        raise NotApplicable(f"{NO_GRAPH}, which a TorchScript module does not give; give it as Python code")
    found = prepared(model)
    if isinstance(found, NotApplicable):
        raise found
    graph, merges = found
    z = zennit()
    types_, share = z.types, z.rules.Norm(stabilizer=SAFE)  # a sum's or an average's relevance, by contribution
    # A BatchNorm is elementwise (merged ones are identities): one contribution per output, which
    # the z-rule passes on whole and an alpha-beta rule would scale by alpha (measured: a 24-fold
    # excess of relevance on a residual network with alpha 2, beta 1).
    layer_map = [(binary_logits(), z.rules.Epsilon(epsilon=SAFE)),  # passes each class's relevance on whole
                 (types_.Activation, z.rules.Pass()), ((z.layer.Sum, spatial_mean()), share), (types_.AvgPool, share),
                 (types_.Convolution, rule), (types_.Linear, dense or rule),
                 (types_.BatchNorm, z.rules.Epsilon(epsilon=SAFE))]
    canonizers = [_merge_canonizer(z, merges)]
    composite = z.composites.LayerMapComposite(layer_map, canonizers=canonizers) if first is None else \
        z.composites.SpecialFirstLayerMapComposite(layer_map, [first], canonizers=canonizers)
    # A merged BatchNorm is the identity while the rules hold, and its gradient passes relevance on
    # whole: no rule (its rule's extra pass, division and product took a tenth of a ResNet-18's call)
    merged, rule_of = {batch_norm for _, batch_norm in merges}, composite.module_map
    composite.module_map = lambda ctx, name, module: None if module in merged else rule_of(ctx, name, module)
    inputs = net.tensor(images).requires_grad_()
    rows, targets = torch.arange(len(images)), torch.as_tensor(targets)
    with composite.context(graph) as modified:
        output = modified(inputs)
        seed = torch.zeros_like(output)
        seed[rows, targets] = output[rows, targets]  # the relevance starts as the logit, as innvestigate's does
        (attribution,) = torch.autograd.grad(output, inputs, grad_outputs=seed)
    return net.array(attribution).transpose(0, 2, 3, 1)


def prepared(model):
    """The model's graph made ready for zennit's rules with its merges, or why it cannot be (a
    NotApplicable): once per model."""
    def prepare():
        try:
            return _lrp_graph(model.torch)
        except NotApplicable as reason:
            return reason
    return model.torch.once("lrp graph", prepare)


def rules(epsilon: float, alpha_beta_bias: str) -> dict:
    """The four LRP rules as zennit rules, by key. LRP-Z divides by z, with a zero z replaced by
    1e-7 (as innvestigate does); alpha-beta puts a layer's bias as alpha_beta_bias says (see lrp.py)."""
    z = zennit()
    return {
        "z": one_pass_epsilon(z, SAFE),
        "epsilon": one_pass_epsilon(z, epsilon),
        "alpha1beta0": _alpha_beta(z, 1.0, 0.0, alpha_beta_bias),
        "alpha2beta1": _alpha_beta(z, 2.0, 1.0, alpha_beta_bias),
    }


def _alpha_beta(z, alpha: float, beta: float, bias: str):
    """zennit's AlphaBeta is Bach et al.'s, the bias split by sign; "whole" puts all of it in
    both denominators, as innvestigate 2.1.2 does. Zero denominators are replaced by 1e-7."""
    safe = z.core.Stabilizer.ensure(SAFE)
    if bias == "split":
        return z.rules.AlphaBeta(alpha=alpha, beta=beta, stabilizer=SAFE)
    clamp = z.core.ParamMod

    def part(sign, with_bias):
        """The weights of one sign, with the whole bias or none."""
        def modify(param, name):
            if name == "bias":
                return param if with_bias else param * 0
            return param.clamp(min=0) if sign > 0 else param.clamp(max=0)
        return clamp(modify, require_params=False)

    return z.core.BasicHook(
        input_modifiers=[lambda x: x.clamp(min=0), lambda x: x.clamp(max=0)] * 2,
        param_modifiers=[part(+1, True), part(-1, False), part(-1, True), part(+1, False)],
        output_modifiers=[lambda output: output] * 4,
        gradient_mapper=lambda out_grad, outputs: [out_grad / safe(denominator) for denominator in
                                                   [sum(outputs[:2])] * 2 + [sum(outputs[2:])] * 2],
        reducer=lambda inputs, gradients: (alpha * (inputs[0] * gradients[0] + inputs[1] * gradients[1])
                                           - beta * (inputs[2] * gradients[2] + inputs[3] * gradients[3])))


@functools.cache
def spatial_mean():
    """The class of a module computing the mean over an NCHW tensor's height and width, which a
    model may write as a function, so that LRP can give it a rule."""
    torch = frameworks.torch()

    class SpatialMean(torch.nn.Module):
        def __init__(self, keepdim: bool):
            super().__init__()
            self.keepdim = keepdim

        def forward(self, x):
            return x.mean((2, 3), keepdim=self.keepdim)

    return SpatialMean


def _lrp_graph(net):
    """The fx graph of the net's logits made ready for LRP rules, and the (convolution or linear,
    BatchNorm) pairs to merge: every addition of two computed tensors becomes a zennit Sum of the
    two stacked, and every mean over height and width a SpatialMean module, so that each takes the
    Norm rule."""
    torch = frameworks.torch()
    z = zennit()
    F = torch.nn.functional
    linear_functions = (F.linear, F.conv1d, F.conv2d, F.conv3d, F.batch_norm, F.avg_pool2d, F.adaptive_avg_pool2d,
                        torch.matmul, torch.mm, torch.bmm, torch.einsum)
    layers = (z.types.Convolution, z.types.Linear, z.types.BatchNorm, z.types.AvgPool, z.types.Activation)
    try:  # the layers zennit has rules for kept whole
        graph = logits_graph(net.module, net.head, net.cut, tracer(layers))
    except NotApplicable as reason:
        raise NotApplicable(f"{NO_GRAPH}, and {reason}") from None
    _refuse_unsupported(graph, torch)
    _pass_input_transform(graph, torch)
    pools = {F.adaptive_avg_pool2d: torch.nn.AdaptiveAvgPool2d, F.avg_pool2d: torch.nn.AvgPool2d}
    for node in [node for node in graph.graph.nodes if node.op == "call_function" and node.target in pools
                 and not any(hasattr(arg, "op") for arg in [*node.args[1:], *node.kwargs.values()])]:
        _replace(graph, node, f"heatkit_pool_{node.name}", pools[node.target](*node.args[1:], **node.kwargs),
                 node.args[0])  # a pooling called as a function (MobileNetV2's), as the module that takes a rule
    for node in [node for node in graph.graph.nodes if _is_weight_product(node, graph, torch)]:
        weight = _attribute(graph, node.args[1].target).detach()
        linear = torch.nn.Linear(*weight.shape, bias=False, dtype=weight.dtype, device=weight.device)
        linear.weight = torch.nn.Parameter(weight.T.contiguous(), requires_grad=False)
        _replace(graph, node, f"heatkit_linear_{node.name}", linear, node.args[0])  # x @ W as the layer it is
    functional = [node for node in graph.graph.nodes if node.op == "call_function" and node.target in linear_functions]
    if functional:
        raise NotApplicable(f"LRP gives each layer's rule to its module, and this model calls "
                            f"{functional[0].target.__name__} as a function, where no rule can reach it")
    for node in [node for node in graph.graph.nodes if is_spatial_mean(node)]:
        _replace(graph, node, f"heatkit_mean_{node.name}", spatial_mean()(bool(node.kwargs.get("keepdim"))),
                 node.args[0])
    for node in [node for node in graph.graph.nodes if _is_addition(node, torch)]:
        with graph.graph.inserting_before(node):
            stacked = graph.graph.call_function(torch.stack, (list(node.args[:2]), -1))
        _replace(graph, node, f"heatkit_sum_{node.name}", z.layer.Sum(dim=-1), stacked)
    graph.recompile()
    modules = dict(graph.named_modules())
    merges = []
    for node in graph.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], z.types.BatchNorm):
            before = node.args[0]
            if (before.op == "call_module" and isinstance(modules[before.target], (z.types.Convolution, z.types.Linear))
                    and len(before.users) == 1):
                merges.append((modules[before.target], modules[node.target]))
    return graph, merges


NO_RULE_MODULES = ("LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "LocalResponseNorm", "RMSNorm",
                   "MultiheadAttention", "Softmax", "LogSoftmax", "Softmin")
NO_RULE_METHODS = ("softmax", "log_softmax", "sigmoid", "tanh", "layer_norm")
PRODUCTS = {operator.mul, operator.imul, operator.matmul, operator.truediv, operator.itruediv}
PRODUCT_METHODS = ("mul", "mul_", "matmul", "bmm", "div", "div_")


def _refuse_unsupported(graph, torch) -> None:
    """NotApplicable where the graph computes what LRP's rules give no conserving rule for here:
    attention and a softmax inside the model, a normalization by the input's own statistics
    (LayerNorm), a smooth activation called as a function (an activation module passes relevance
    on whole; its function's gradient would scale it), or a product of two activations."""
    found, modules = kinds(), dict(graph.named_modules())
    functions = found["attention"] | found["normalizations"] | found["smooth"]
    for node in graph.graph.nodes:
        what = None
        if node.op == "call_module" and type(modules[node.target]).__name__ in NO_RULE_MODULES:
            what = type(modules[node.target]).__name__
        elif node.op == "call_function" and node.target in functions:
            what = name_of(node.target)
        elif node.op == "call_method" and node.target in NO_RULE_METHODS:
            what = node.target
        elif ((node.op == "call_function" and node.target in PRODUCTS | found["products"]) or
              (node.op == "call_method" and node.target in PRODUCT_METHODS)) and _computed_nodes(node) > 1:
            what = "a product of two activations"
        if what:
            raise NotApplicable(f"zennit's rules conserve relevance through linear layers, additions, BatchNorm "
                                f"and activation modules, and this model computes {what} ({node.name}), as "
                                "transformers and gating do: there lrp.z and lrp.epsilon take AttnLRP's rules, and "
                                "this rule has none")


def _computed_nodes(node) -> int:
    """How many of a node's arguments are computed tensors (not parameters, constants or sizes)."""
    return sum(hasattr(arg, "op") and arg.op != "get_attr" and not _is_size(arg) for arg in node.args[:2])


def _is_size(node) -> bool:
    """A number computed from tensors' shapes (torchvision's ViT multiplies its patch grid's sides)."""
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] in ("shape", "ndim")
    inputs = node.all_input_nodes
    return node.op == "call_function" and bool(inputs) and all(_is_size(arg) for arg in inputs)


def _replace(graph, node, name: str, module, argument) -> None:
    """Puts a call of `module` on `argument` where `node` was."""
    graph.add_submodule(name, module)
    with graph.graph.inserting_before(node):
        call = graph.graph.call_module(name, (argument,))
    node.replace_all_uses_with(call)
    graph.graph.erase_node(node)


ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.truediv}
ARITHMETIC_METHODS = ("add", "sub", "mul", "div", "__add__", "__sub__", "__mul__", "__truediv__")


def _pass_input_transform(graph, torch) -> None:
    """An elementwise affine transform of the input inside the model's forward ((x - mean) / std,
    x / 255) passes relevance on whole, as part of the first layer: relevance is LRP's gradient,
    and through the transform autograd would scale it by 1 / std (a bias-free net's relevance
    summed to 4.4 times its logit). The transform's end is given to its readers through a module
    whose backward hands the signal to the input unchanged."""
    start = next(node for node in graph.graph.nodes if node.op == "placeholder")
    end = start
    while len(end.users) == 1 and _is_constant_arithmetic(next(iter(end.users)), end, torch):
        end = next(iter(end.users))
    if end is start:
        return
    graph.add_submodule("heatkit_input_transform", input_transform()())
    with graph.graph.inserting_after(end):
        passed = graph.graph.call_module("heatkit_input_transform", (start, end))
    end.replace_all_uses_with(passed, delete_user_cb=lambda user: user is not passed)


def _is_constant_arithmetic(node, operand, torch) -> bool:
    """`operand` plus, minus, times or over a constant (a number, or a buffer or parameter)."""
    functions = ARITHMETIC | {torch.add, torch.sub, torch.mul, torch.div}
    if not ((node.op == "call_function" and node.target in functions) or
            (node.op == "call_method" and node.target in ARITHMETIC_METHODS)) or node.kwargs:
        return False
    others = [arg for arg in node.args[:2] if arg is not operand]
    return len(others) == 1 and (isinstance(others[0], (int, float)) or
                                 hasattr(others[0], "op") and others[0].op == "get_attr")


@functools.cache
def input_transform():
    """The class of the module that gives the input's transform forward and passes the signal
    back to the input itself (see _pass_input_transform)."""
    torch = frameworks.torch()

    class PassBack(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inputs, transformed):
            return transformed.clone()

        @staticmethod
        def backward(ctx, signal):
            return signal, None

    class InputTransform(torch.nn.Module):
        def forward(self, inputs, transformed):
            return PassBack.apply(inputs, transformed)

    return InputTransform


def _is_weight_product(node, graph, torch) -> bool:
    """x @ W of a computed x and a constant 2-D W (a parameter or buffer): a linear layer without
    bias written as a product (onnx2torch's MatMul of a bias-free Linear's export)."""
    products = (operator.matmul, torch.matmul)
    if node.op != "call_function" or node.target not in products or len(node.args) != 2 or node.kwargs:
        return False
    x, weight = node.args
    return hasattr(x, "op") and x.op != "get_attr" and hasattr(weight, "op") and weight.op == "get_attr" \
        and _attribute(graph, weight.target).dim() == 2


def _attribute(graph, target: str):
    return functools.reduce(getattr, target.split("."), graph)


def _is_addition(node, torch) -> bool:
    """An addition of two computed tensors (not of a parameter, or of a constant)."""
    adds = (operator.add, operator.iadd, torch.add)
    tensors = [arg for arg in node.args[:2] if hasattr(arg, "op") and arg.op != "get_attr"]
    return ((node.op == "call_function" and node.target in adds) or
            (node.op == "call_method" and node.target in ("add", "add_", "__add__"))) and len(tensors) == 2 \
        and not node.kwargs


def _merge_canonizer(z, merges):
    """A zennit canonizer merging each BatchNorm of `merges` into the layer before it, for the
    duration of the attribution (zennit reverts it)."""
    class GraphMergeBatchNorm(z.canonizers.MergeBatchNorm):
        @staticmethod
        def merge_batch_norm(modules, batch_norm):
            """zennit's merge, then the BatchNorm made exactly the identity: zennit leaves a running
            variance of 1, which divides by sqrt(1 + eps) and loses eps / 2 of the relevance."""
            z.canonizers.MergeBatchNorm.merge_batch_norm(modules, batch_norm)
            batch_norm.running_var.data -= batch_norm.eps

        def apply(self, root_module):
            instances = []
            for linear, batch_norm in merges:
                instance = GraphMergeBatchNorm()
                instance.register((linear,), batch_norm)
                instances.append(instance)
            return instances

    return GraphMergeBatchNorm()
