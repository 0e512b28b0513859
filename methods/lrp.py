"""Layer-wise Relevance Propagation (Bach et al. 2015), four rules, starting from the target logit.

Keras: innvestigate 2.1.2. PyTorch: captum's LRP for LRP-Z and LRP-epsilon, and our own
alpha-beta rule for both alpha-beta variants (captum has no alpha2beta1, and its
Alpha1_Beta0_Rule clamps the weights only, which is the alpha-beta rule only for non-negative
inputs).

The alpha-beta rule splits the products z_ij = x_i w_ij by sign, R_i = sum_j (alpha z_ij+ / z_j+ -
beta z_ij- / z_j-) R_j, and `lrp.alpha_beta_bias` says where the bias goes: "split", as Bach et
al. 2015 define it, z_j+ = sum_i z_ij+ + b_j+ and z_j- = sum_i z_ij- + b_j-; or "whole", as
innvestigate 2.1.2 computes it, z_j+- = sum_i z_ij+- + b_j, the whole bias in both (tests pin both).
"""
from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.base.rules import Choice, Float
from heatkit.methods import _innvestigate, channel_sum
from heatkit.methods._entry import Method, Needs, Paper, Setting, Settings

CAPTUM_Z_STABILIZER = 1e-9  # captum's default; innvestigate's Z rule only replaces z = 0 by 1e-7


def z_keras(model, image, target, params):
    return _keras(model, image, target, "lrp.z")


def epsilon_keras(model, image, target, params):
    return _keras(model, image, target, "lrp.epsilon", epsilon=params["epsilon"])


def alpha1beta0_keras(model, image, target, params):
    return _keras_alpha_beta(model, image, target, 1.0, 0.0, params["alpha_beta_bias"])


def alpha2beta1_keras(model, image, target, params):
    return _keras_alpha_beta(model, image, target, 2.0, 1.0, params["alpha_beta_bias"])


def z_torch(model, image, target, params):
    return _captum_epsilon(model, image, target, CAPTUM_Z_STABILIZER)


def epsilon_torch(model, image, target, params):
    return _captum_epsilon(model, image, target, params["epsilon"])


def alpha1beta0_torch(model, image, target, params):
    return _alpha_beta(model, image, target, 1.0, 0.0, params["alpha_beta_bias"] == "split")


def alpha2beta1_torch(model, image, target, params):
    return _alpha_beta(model, image, target, 2.0, 1.0, params["alpha_beta_bias"] == "split")


def _keras(model, image, target, analyzer, **kwargs):
    return channel_sum(_innvestigate.analyze(model, analyzer, image[None], target, **kwargs)[0])


def _keras_alpha_beta(model, image, target, alpha, beta, bias):
    if bias == "whole":
        return _keras(model, image, target, "lrp.alpha_1_beta_0" if beta == 0 else "lrp.alpha_2_beta_1")
    return _keras(model, image, target, "lrp", rule=_split_bias_rule(alpha, beta),
                  bn_layer_rule=_split_bias_rule(alpha, beta))


def _split_bias_rule(alpha: float, beta: float):
    """innvestigate's reverse mapping of a layer with a kernel under the alpha-beta rule of Bach et
    al. 2015: the positive part of the bias joins z+, the negative part z-. Cached per (alpha,
    beta), so that the analyzer's cache key stays the same from call to call."""
    return _SPLIT_BIAS_RULES.get((alpha, beta)) or _SPLIT_BIAS_RULES.setdefault((alpha, beta),
                                                                              _make_split_bias_rule(alpha, beta))


_SPLIT_BIAS_RULES: dict = {}


def _make_split_bias_rule(alpha: float, beta: float):
    tf = frameworks.tensorflow()
    import innvestigate.backend as ibackend
    import innvestigate.backend.graph as igraph

    class SplitBiasAlphaBeta(igraph.ReverseMappingBase):
        def __init__(self, layer, _state):
            kernel, *bias = layer.weights
            positive, negative = tf.maximum(kernel, 0), tf.minimum(kernel, 0)

            def copy(name, weights, keep_bias):
                return igraph.copy_layer_wo_activation(layer, keep_bias=keep_bias, weights=weights,
                                                       name_template=f"{name}_%s")
            self.positive_with_bias = copy("positive_b", [positive, *[tf.maximum(b, 0) for b in bias]], True)
            self.negative_with_bias = copy("negative_b", [negative, *[tf.minimum(b, 0) for b in bias]], True)
            self.positive, self.negative = copy("positive", [positive], False), copy("negative", [negative], False)

        def apply(self, Xs, _Ys, Rs, _state):
            positive_inputs, negative_inputs = [tf.maximum(x, 0) for x in Xs], [tf.minimum(x, 0) for x in Xs]

            def relevance(on_positive, on_negative):
                """Relevance over z = on_positive(x+) + on_negative(x-), shared by the contributions."""
                first, second = ibackend.apply(on_positive, positive_inputs), ibackend.apply(on_negative, negative_inputs)
                ratios = [ibackend.safe_divide(r, a + b) for r, a, b in zip(Rs, first, second)]
                first_grads = ibackend.gradients(positive_inputs, first, ratios)
                second_grads = ibackend.gradients(negative_inputs, second, ratios)
                return [xp * gp + xn * gn for xp, gp, xn, gn in
                        zip(positive_inputs, first_grads, negative_inputs, second_grads)]

            activators = relevance(self.positive_with_bias, self.negative)  # x+ w+ + x- w- + b+
            inhibitors = relevance(self.negative_with_bias, self.positive)  # x+ w- + x- w+ + b-
            return [alpha * a - beta * b for a, b in zip(activators, inhibitors)]

    return SplitBiasAlphaBeta


def _layers(net) -> list:
    """The twin's modules in order, for a chain of single modules (what LRP walks backwards)."""
    torch = frameworks.torch()
    if not isinstance(net.module, torch.nn.Sequential):
        raise NotApplicable("LRP on PyTorch needs an nn.Sequential twin")
    leaves = [m for m in net.module.modules() if not list(m.children())]
    supported = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ReLU, torch.nn.Flatten, torch.nn.AdaptiveAvgPool2d,
                 torch.nn.AvgPool2d, torch.nn.MaxPool2d)
    for module in leaves:
        if not isinstance(module, supported):
            raise NotApplicable(f"LRP on PyTorch has no rule for {type(module).__name__}")
    return leaves


def _captum_epsilon(model, image, target, epsilon):
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import EpsilonRule, IdentityRule

    class PassReshaped(IdentityRule):
        """Relevance through a Flatten unchanged, in the input's shape."""

        def _create_backward_hook_input(self, inputs):
            return lambda grad: self.relevance_output[grad.device].reshape(grad.shape)

    torch = frameworks.torch()
    net = model.torch
    layers = _layers(net)
    for module in layers:
        if isinstance(module, torch.nn.Flatten):
            module.rule = PassReshaped()
        elif not isinstance(module, torch.nn.ReLU):
            module.rule = EpsilonRule(epsilon)
    try:
        relevance = LRP(net.module).attribute(net.tensor(image[None]).requires_grad_(), target=target)
    finally:
        for module in layers:
            vars(module).pop("rule", None)
            vars(module).pop("activations", None)
    return channel_sum(net.array(relevance).transpose(0, 2, 3, 1)[0])


def _alpha_beta(model, image, target, alpha, beta, split_bias: bool):
    torch = frameworks.torch()
    net = model.torch
    layers = _layers(net)
    with torch.no_grad():
        activations = [net.tensor(image[None])]
        for module in layers:
            activations.append(module(activations[-1]))
    relevance = torch.zeros_like(activations[-1])
    relevance[:, target] = activations[-1][:, target]
    for module, inputs in zip(reversed(layers), reversed(activations[:-1])):
        if hasattr(module, "weight"):
            relevance = (alpha * _share(module, inputs, relevance, True, split_bias)
                         - beta * _share(module, inputs, relevance, False, split_bias))
        elif isinstance(module, (torch.nn.Flatten, torch.nn.ReLU)):
            relevance = relevance.reshape(inputs.shape)
        else:  # pooling: the z-rule, as innvestigate applies to it
            relevance = _share(module, inputs, relevance, None)
    return channel_sum(net.array(relevance).transpose(0, 2, 3, 1)[0])


def _share(module, inputs, relevance, positive, split_bias: bool = False):
    """The relevance of `inputs`: the part of `relevance` each input's contributions x_i w_ij carry,
    over the contributions of one sign (positive True or False) plus the bias (its part of that
    sign where split_bias), or over all of them (None)."""
    torch = frameworks.torch()
    from torch.func import functional_call

    x_pos = inputs.clamp(min=0).requires_grad_()
    x_neg = inputs.clamp(max=0).requires_grad_()
    if positive is None:
        x = inputs.clone().requires_grad_()
        z = module(x)
        (grad,) = torch.autograd.grad(z, x, relevance / _safe(z))
        return (x * grad).detach()
    weight = module.weight.detach()
    w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
    no_bias = {} if module.bias is None else {"bias": torch.zeros_like(module.bias)}

    def apply(x, w):
        return functional_call(module, {"weight": w, **no_bias}, (x,))

    # positive contributions: x+ w+ and x- w-; negative ones: x+ w- and x- w+
    first, second = apply(x_pos, w_pos if positive else w_neg), apply(x_neg, w_neg if positive else w_pos)
    bias = 0 if module.bias is None else module.bias.detach().reshape(1, -1, *[1] * (first.dim() - 2))
    if split_bias and module.bias is not None:
        bias = bias.clamp(min=0) if positive else bias.clamp(max=0)
    z = first + second + bias
    share = relevance / _safe(z)
    grad_pos, grad_neg = torch.autograd.grad((first, second), (x_pos, x_neg), (share, share))
    return (x_pos * grad_pos + x_neg * grad_neg).detach()


def _safe(z):
    """innvestigate's safe_divide denominator: zeros become 1e-7."""
    return z + 1e-7 * (z == 0)


PAPER = Paper("Bach et al. 2015",
              "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation",
              "https://doi.org/10.1371/journal.pone.0130140")
SETTINGS = Settings("lrp", "lrp: Layer-wise Relevance Propagation (Bach et al. 2015). lrp.z has no setting.", {
    "epsilon": Setting(1e-7, Float(min=0.0, exclusive_min=True),
                       "stabilizer of lrp.epsilon: z + epsilon * sign(z) in each denominator"),
    "alpha_beta_bias": Setting("split", Choice(("split", "whole")),
                               'where the alpha-beta rules put a layer\'s bias b: "split", as Bach et al. 2015 define '
                               "them (b+ in the positive denominator z+, b- in z-), or \"whole\", as innvestigate 2.1.2 "
                               "computes them (all of b in both z+ and z-)"),
})
METHODS = [
    Method("lrp.z", "LRP-Z", PAPER, Needs.GRADIENTS, {"keras": z_keras, "torch": z_torch}),
    Method("lrp.epsilon", "LRP-Epsilon", PAPER, Needs.GRADIENTS, {"keras": epsilon_keras, "torch": epsilon_torch},
           SETTINGS),
    Method("lrp.alpha1beta0", "LRP-Alpha1Beta0", PAPER, Needs.GRADIENTS,
           {"keras": alpha1beta0_keras, "torch": alpha1beta0_torch}, SETTINGS),
    Method("lrp.alpha2beta1", "LRP-Alpha2Beta1", PAPER, Needs.GRADIENTS,
           {"keras": alpha2beta1_keras, "torch": alpha2beta1_torch}, SETTINGS),
]
