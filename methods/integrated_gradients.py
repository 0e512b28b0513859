"""Integrated Gradients (Sundararajan et al. 2017): (x - reference) times the path integral of the
gradient from the reference to the input.

Both backends use the same quadrature, captum's rules by their captum names: gradients at the
rule's points alpha_k on the path, weighted by its step sizes. captum's riemann_trapezoid
weights, copied here so that the backends agree, are 1/steps with both ends halved: they sum to
1 - 1/steps, not 1, so that rule's total falls short of logit(x) - logit(reference) by 1/steps.
On Keras the gradients at those points come from one tf.gradients of the logits
(innvestigate's own IntegratedGradients has one fixed rule, the mean over evenly spaced points,
both ends included, which no captum rule equals).
"""
import numpy as np

from heatkit.base.engine import gradient_batch
from heatkit.base.rules import Choice, Int, PixelValue
from heatkit.methods import _captum, _keras_rules, channel_sum
from heatkit.methods._entry import GRADIENT_PASSES, Method, Needs, Paper, Setting, Settings


def on_keras(model, image, target, params):
    reference = np.full_like(image, params["reference"])
    alphas, weights = path_rule(params["rule"], params["steps"])
    points = reference[None] + alphas[:, None, None, None] * (image - reference)[None]
    gradients = _keras_rules.plain_gradient(model.keras)(points, target)
    return channel_sum((image - reference) * np.tensordot(weights, gradients, axes=1))


def on_torch(model, image, target, params):
    reference = model.torch.tensor(np.full_like(image, params["reference"])[None])
    attribution = _captum.attribute(model, "IntegratedGradients", image[None], target, baselines=reference,
                                    n_steps=params["steps"], method=params["rule"],
                                    internal_batch_size=gradient_batch(model))
    return channel_sum(attribution[0])


def path_rule(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in [0, 1] and their weights of `rule` with `steps` points, as captum 0.9 defines them."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    weights = np.full(steps, 1 / steps)
    if rule == "riemann_trapezoid":
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    first, last = {"riemann_left": (0, 1 - 1 / steps), "riemann_right": (1 / steps, 1),
                   "riemann_middle": (1 / (2 * steps), 1 - 1 / (2 * steps))}[rule]
    return np.linspace(first, last, steps), weights


RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
SETTINGS = Settings("ig", "ig: Integrated Gradients (Sundararajan et al. 2017): (x - reference) times the path integral "
                          "of the gradient, by a quadrature rule that both backends apply alike (captum's names).", {
    "reference": Setting(0.0, PixelValue(), 'the reference image\'s pixels: 0 black, 1 white, "mean" the '
                                            'preprocessing\'s mean color (converted to the model\'s input)'),
    "steps": Setting(64, Int(min=2), "points on the path"),
    "rule": Setting("gausslegendre", Choice(RULES),
                    "gausslegendre (captum's default) or riemann_left/right/middle/trapezoid; captum's riemann_trapezoid "
                    "weights sum to 1 - 1/steps, which breaks completeness by 1/steps"),
})
METHOD = Method("ig", "Integrated Gradients", Paper(
    "Sundararajan et al. 2017", "Axiomatic Attribution for Deep Networks", "https://arxiv.org/abs/1703.01365"),
    Needs.GRADIENTS, {"keras": on_keras, "torch": on_torch}, SETTINGS, reference="reference",
    cheaper="lower ig.steps", passes=lambda model, params: GRADIENT_PASSES * params["steps"])
