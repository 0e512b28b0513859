"""Layer-wise Relevance Propagation (Bach et al. 2015), four rules, starting from the target logit.

innvestigate 2.1.2's alpha-beta rule adds each layer's whole bias to both the positive and
the negative denominator (tests/test_gradient_methods.py pins the formula).
"""
from methods._innvestigate import analyze, channel_sum


def _lrp(model, image, target, analyzer, **kwargs):
    return channel_sum(analyze(model, analyzer, image[None], target, **kwargs)[0])


def z(model, image, target, params):
    return _lrp(model, image, target, "lrp.z")


def epsilon(model, image, target, params):
    return _lrp(model, image, target, "lrp.epsilon", epsilon=params["epsilon"])


def alpha1beta0(model, image, target, params):
    return _lrp(model, image, target, "lrp.alpha_1_beta_0")


def alpha2beta1(model, image, target, params):
    return _lrp(model, image, target, "lrp.alpha_2_beta_1")
