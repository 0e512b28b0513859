"""SmoothGrad (Smilkov et al. 2017): the mean gradient over copies of the input with Gaussian noise.

The noise is drawn here, seeded, with std = noise_scale * (max - min of the input) as in the
paper, and the same noisy copies go to either backend. innvestigate 2.1.2's own SmoothGrad
cannot do this: it draws unseeded noise and never passes noise_scale on (GaussianSmoother
builds AddGaussianNoise() with its default std 1); captum's NoiseTunnel draws with torch's
generator and takes an absolute std.
"""
import numpy as np

from heatkit.base.rules import Choice, Float, Int
from heatkit.methods import _captum, _keras_rules, channel_sum
from heatkit.methods._entry import SEED, Method, Needs, Paper, Setting, Settings

POSTPROCESS = {None: lambda g: g, "abs": np.abs, "square": np.square}


def keras(model, image, target, params):
    return _smoothgrad(lambda batch: _keras_rules.plain_gradient(model.keras)(batch, target), image, params)


def torch(model, image, target, params):
    return _smoothgrad(lambda batch: _captum.attribute(model, "Saliency", batch, target, abs=False), image, params)


def _smoothgrad(gradients, image, params):
    rng = np.random.default_rng(params["seed"])
    std = params["noise_scale"] * (image.max() - image.min())
    noisy = image[None] + rng.normal(0.0, std, (params["augment_by_n"], *image.shape))
    return channel_sum(POSTPROCESS[params["postprocess"]](gradients(noisy)).mean(axis=0))


SETTINGS = Settings("sg", "sg: SmoothGrad (Smilkov et al. 2017): the mean gradient over noisy copies of the input.", {
    "augment_by_n": Setting(64, Int(min=1), "number of noisy copies"),
    "noise_scale": Setting(0.1, Float(min=0.0), "noise std as a fraction of the input's range (max - min), as in the paper"),
    "postprocess": Setting(None, Choice((None, "abs", "square")),
                           'None, "abs" or "square" (SmoothGrad-Squared), applied to each gradient'),
    "seed": Setting(0, SEED, "seed of the noise"),
})
METHOD = Method("sg", "SmoothGrad", Paper("Smilkov et al. 2017", "SmoothGrad: removing noise by adding noise",
                                          "https://arxiv.org/abs/1706.03825"),
                Needs.GRADIENTS, {"keras": keras, "torch": torch}, SETTINGS)
