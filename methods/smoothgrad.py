"""SmoothGrad (Smilkov et al. 2017): the mean gradient over copies of the input with Gaussian noise.

The noise is drawn here, seeded, with std = noise_scale * (max - min of the input) as in the
paper, and the same noisy copies go to either backend. innvestigate 2.1.2's own SmoothGrad
cannot do this: it draws unseeded noise and never passes noise_scale on (GaussianSmoother
builds AddGaussianNoise() with its default std 1); captum's NoiseTunnel draws with torch's
generator and takes an absolute std.
"""
import numpy as np

from methods import _captum, _innvestigate, channel_sum

POSTPROCESS = {None: lambda g: g, "abs": np.abs, "square": np.square}


def keras(model, image, target, params):
    return _smoothgrad(lambda batch: _innvestigate.analyze(model, "gradient", batch, target), image, params)


def torch(model, image, target, params):
    return _smoothgrad(lambda batch: _captum.attribute(model, "Saliency", batch, target, abs=False), image, params)


def _smoothgrad(gradients, image, params):
    rng = np.random.default_rng(params["seed"])
    std = params["noise_scale"] * (image.max() - image.min())
    noisy = image[None] + rng.normal(0.0, std, (params["augment_by_n"], *image.shape))
    return channel_sum(POSTPROCESS[params["postprocess"]](gradients(noisy)).mean(axis=0))
