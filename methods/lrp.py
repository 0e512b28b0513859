"""Layer-wise Relevance Propagation (Bach et al. 2015), four rules, starting from the target logit.

Keras: innvestigate 2.1.2. PyTorch: captum's LRP for LRP-Z and LRP-epsilon, and our own
alpha-beta rule for both alpha-beta variants. captum has no alpha2beta1, and its
Alpha1_Beta0_Rule clamps the weights only, which is the alpha-beta rule only for non-negative
inputs. Ours is innvestigate 2.1.2's: products x_i w_ij split by sign, and each layer's whole
bias added to both the positive and the negative denominator (tests pin the formula).
"""
from core import frameworks
from core.errors import NotApplicable
from methods import _innvestigate, channel_sum

CAPTUM_Z_STABILIZER = 1e-9  # captum's default; innvestigate's Z rule only replaces z = 0 by 1e-7


def z_keras(model, image, target, params):
    return _keras(model, image, target, "lrp.z")


def epsilon_keras(model, image, target, params):
    return _keras(model, image, target, "lrp.epsilon", epsilon=params["epsilon"])


def alpha1beta0_keras(model, image, target, params):
    return _keras(model, image, target, "lrp.alpha_1_beta_0")


def alpha2beta1_keras(model, image, target, params):
    return _keras(model, image, target, "lrp.alpha_2_beta_1")


def z_torch(model, image, target, params):
    return _captum_epsilon(model, image, target, CAPTUM_Z_STABILIZER)


def epsilon_torch(model, image, target, params):
    return _captum_epsilon(model, image, target, params["epsilon"])


def alpha1beta0_torch(model, image, target, params):
    return _alpha_beta(model, image, target, 1.0, 0.0)


def alpha2beta1_torch(model, image, target, params):
    return _alpha_beta(model, image, target, 2.0, 1.0)


def _keras(model, image, target, analyzer, **kwargs):
    return channel_sum(_innvestigate.analyze(model, analyzer, image[None], target, **kwargs)[0])


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


def _alpha_beta(model, image, target, alpha, beta):
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
            relevance = (alpha * _share(module, inputs, relevance, positive=True)
                         - beta * _share(module, inputs, relevance, positive=False))
        elif isinstance(module, (torch.nn.Flatten, torch.nn.ReLU)):
            relevance = relevance.reshape(inputs.shape)
        else:  # pooling: the z-rule, as innvestigate applies to it
            relevance = _share(module, inputs, relevance, positive=None)
    return channel_sum(net.array(relevance).transpose(0, 2, 3, 1)[0])


def _share(module, inputs, relevance, positive):
    """The relevance of `inputs`: the part of `relevance` each input's contributions x_i w_ij carry,
    over the contributions of one sign (positive True or False), or all of them (None)."""
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
    z = first + second + (0 if module.bias is None else module.bias.detach().reshape(1, -1, *[1] * (first.dim() - 2)))
    share = relevance / _safe(z)
    grad_pos, grad_neg = torch.autograd.grad((first, second), (x_pos, x_neg), (share, share))
    return (x_pos * grad_pos + x_neg * grad_neg).detach()


def _safe(z):
    """innvestigate's safe_divide denominator: zeros become 1e-7."""
    return z + 1e-7 * (z == 0)
