"""GradientSHAP (Lundberg & Lee 2017, as captum's GradientShap computes it): the expectation, over
baselines b drawn from a set, noisy copies x~ of the input and points alpha ~ U(0, 1), of
(x~ - b) * d logit / d input at b + alpha (x~ - b). With one baseline and no noise it is Integrated
Gradients' integral estimated by Monte Carlo.

Every draw is made here, seeded, in numpy, and the same points go to either backend:
`samples` of them, baselines picked from `num_baselines` images uniform over the input's range
(baselines "uniform") or the constant `reference` image (baselines "reference").
"""
import numpy as np

from heatkit.base.rules import Choice, Float, Int, PixelValue
from heatkit.methods import _captum, _keras_rules, channel_sum
from heatkit.methods._entry import GRADIENT_PASSES, SEED, Method, Needs, Paper, Setting, Settings


def on_keras(model, image, target, params):
    return _gradient_shap(lambda batch: _keras_rules.plain_gradient(model.keras)(batch, target), image, params)


def on_torch(model, image, target, params):
    return _gradient_shap(lambda batch: _captum.attribute(model, "Saliency", batch, target, abs=False), image, params)


def drawn(image: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The baselines' set, the index of each sample's baseline, each sample's noise and its alpha."""
    rng = np.random.default_rng(params["seed"])
    low, high = image.min(), image.max()
    baselines = rng.uniform(low, high, (params["num_baselines"], *image.shape)) if params["baselines"] == "uniform" \
        else np.full((1, *image.shape), params["reference"])
    chosen = rng.integers(0, len(baselines), params["samples"])
    noise = rng.standard_normal((params["samples"], *image.shape), dtype=np.float32) * \
        np.float32(params["noise_scale"] * (high - low))  # drawn in float32: half the time or less
    return baselines, chosen, noise, rng.uniform(0.0, 1.0, params["samples"])


def _gradient_shap(gradients, image, params):
    baselines, chosen, noise, alphas = drawn(image, params)
    differences = image[None] + noise - baselines[chosen]
    points = baselines[chosen] + alphas[:, None, None, None] * differences
    return channel_sum((differences * gradients(points)).mean(axis=0))


SETTINGS = Settings("gradshap", "gradshap: GradientSHAP (Lundberg & Lee 2017, captum's GradientShap): the mean of "
                                "(input - baseline) times the gradient at a random point between them, over random "
                                "baselines and noisy copies of the input.", {
    "samples": Setting(64, Int(min=1), "gradients averaged (captum's n_samples)"),
    "baselines": Setting("uniform", Choice(("uniform", "reference")),
                         '"uniform": images uniform over the input\'s range; "reference": the constant image `reference`'),
    "num_baselines": Setting(16, Int(min=1), 'images in the baselines\' set, for baselines "uniform"'),
    "reference": Setting(0.0, PixelValue(), 'the constant baseline\'s pixels, for baselines "reference": 0 '
                                            'black, 1 white, "mean" the preprocessing\'s mean color'),
    "noise_scale": Setting(0.0, Float(min=0.0), "std of the noise added to the input, as a fraction of its range "
                                                "(captum's stdevs, relative)"),
    "seed": Setting(0, SEED, "seed of every draw"),
})
METHOD = Method("gradshap", "GradientSHAP", Paper(
    "Lundberg & Lee 2017", "A Unified Approach to Interpreting Model Predictions", "https://arxiv.org/abs/1705.07874"),
    Needs.GRADIENTS, {"keras": on_keras, "torch": on_torch}, SETTINGS,
    cheaper="lower gradshap.samples", passes=lambda model, params: GRADIENT_PASSES * params["samples"])
