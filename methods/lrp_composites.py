"""LRP composites: a rule per kind of layer, as LRP is used on CNNs (Montavon et al. 2019): epsilon
at linear layers, a rule that keeps positive evidence at convolutions, and a rule for the input
at the first layer. zennit's composites of the same names:

- lrp.epsilon_plus_flat: epsilon, z+ (alpha 1, beta 0), flat;
- lrp.epsilon_alpha2beta1_flat: epsilon, alpha 2 beta 1, flat;
- lrp.epsilon_gamma_box: epsilon, gamma, z-box, with the box the input's range: the
  preprocessing of pixels 0 and 1.

The alpha-beta rules split a layer's bias by sign (Bach et al. 2015, zennit; see lrp.py). As in
zennit, flat takes the first convolution or linear layer, whichever comes first, and z-box the
first convolution (a network without one takes epsilon at every layer). On Keras the first
two are innvestigate's LRP with a rule per layer kind, as its LRPSequentialPresetAFlat and
BFlat but with the bias split by sign, as zennit splits it; innvestigate has no gamma rule, so
epsilon_gamma_box runs on PyTorch (a Keras twin on its PyTorch twin).
"""
import functools

import numpy as np

from heatkit.base import frameworks
from heatkit.methods import _zennit, channel_sum, lrp
from heatkit.methods._entry import Method, Needs, Paper, one_image
from heatkit.methods._epsilon_rule import one_pass_epsilon


def _torch_batch(convolution, first):
    """The composite's function of a batch of images and their targets, on PyTorch: its convolutions'
    rule made by `convolution(zennit, params)`, its first layer's (types, rule) by `first(zennit, model)`."""
    def function(model, images, targets, params):
        z = _zennit.zennit()
        dense = one_pass_epsilon(z, params["epsilon"])
        return channel_sum(_zennit.relevance(model, images, targets, convolution(z, params), dense, first(z, model)))
    return function


def _plus(z, params):
    """z+, as zennit's EpsilonPlusFlat takes it: alpha 1, beta 0 in two modified passes of each
    layer where AlphaBeta(1, 0) made four, its beta part zero (bench/peers.py: 0.64 of zennit's
    speed before)."""
    return z.rules.ZPlus(stabilizer=_zennit.SAFE)


def _alpha2beta1(z, params):
    return z.rules.AlphaBeta(alpha=2.0, beta=1.0, stabilizer=_zennit.SAFE)


def _gamma(z, params):
    return z.rules.Gamma(gamma=params["gamma"], stabilizer=_zennit.SAFE)


def _flat(z, model):
    return z.types.Linear, z.rules.Flat(stabilizer=_zennit.SAFE)


def _box(z, model):
    """z-box at the first convolution (as zennit's EpsilonGammaBox), its bounds the model's inputs
    for pixels 0 and 1, per channel."""
    torch, net = frameworks.torch(), model.torch
    channels = model.input_shape[-1]
    low, high = (torch.tensor(np.broadcast_to(model.preprocess(np.full(channels, pixel)), (channels,)),
                              dtype=net.dtype, device=net.device).reshape(1, -1, 1, 1) for pixel in (0.0, 1.0))
    return z.types.Convolution, z.rules.ZBox(low=low, high=high, stabilizer=_zennit.SAFE)


def _keras(alpha: float, beta: float):
    """The composite on Keras, its convolutions taking alpha-beta with the bias split by sign."""
    def function(model, image, target, params):
        import innvestigate.backend.checks as checks

        convolution = lrp.split_bias_rule(alpha, beta)
        rules = [(checks.is_dense_layer, _epsilon_rule(params["epsilon"])), (checks.is_conv_layer, convolution),
                 (_any_layer, _epsilon_rule(params["epsilon"]))]
        return lrp.keras_lrp(model, image, target, rule=rules, input_layer_rule="Flat", bn_layer_rule="Z")
    return function


def _any_layer(_layer) -> bool:
    """Any other layer with a kernel (innvestigate asks a rule of each): epsilon, as a dense layer."""
    return True


@functools.cache
def _epsilon_rule(epsilon: float):
    """innvestigate's epsilon rule with `epsilon`, one class per value (the analyzer's cache key)."""
    from innvestigate.analyzer.relevance_based.relevance_rule import EpsilonRule

    class Epsilon(EpsilonRule):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, epsilon=epsilon, **kwargs)

    return Epsilon


PAPER = Paper("Montavon et al. 2019", "Layer-Wise Relevance Propagation: An Overview",
              "https://doi.org/10.1007/978-3-030-28954-6_10")
METHODS = [
    Method(key, name, PAPER, Needs.GRADIENTS, {**keras, "torch": one_image(torch_batch)}, lrp.SETTINGS,
           batched={"torch": torch_batch}, families=lrp.ZENNIT_ONLY)
    for key, name, keras, torch_batch in (
        ("lrp.epsilon_plus_flat", "LRP-EpsilonPlusFlat", {"keras": _keras(1.0, 0.0)}, _torch_batch(_plus, _flat)),
        ("lrp.epsilon_alpha2beta1_flat", "LRP-EpsilonAlpha2Beta1Flat", {"keras": _keras(2.0, 1.0)},
         _torch_batch(_alpha2beta1, _flat)),
        ("lrp.epsilon_gamma_box", "LRP-EpsilonGammaBox", {}, _torch_batch(_gamma, _box)))
]
