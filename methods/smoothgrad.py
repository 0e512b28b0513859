"""SmoothGrad (Smilkov et al. 2017): the mean gradient over copies of the input with Gaussian noise.

The noise is drawn here, seeded, with std = noise_scale * (max - min of the input) as in the
paper. innvestigate 2.1.2's own SmoothGrad cannot do this: it draws unseeded noise and never
passes noise_scale on (GaussianSmoother builds AddGaussianNoise() with its default std 1).
"""
import numpy as np

from methods._innvestigate import analyze, channel_sum


def attribute(model, image, target, params):
    rng = np.random.default_rng(params["seed"])
    std = params["noise_scale"] * (image.max() - image.min())
    noisy = image[None] + rng.normal(0.0, std, (params["augment_by_n"], *image.shape))
    gradients = analyze(model, "gradient", noisy, target, postprocess=params["postprocess"])
    return channel_sum(gradients.mean(axis=0))
