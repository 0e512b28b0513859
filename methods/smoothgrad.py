"""SmoothGrad (Smilkov et al. 2017): the mean gradient over copies of the input with Gaussian noise;
with `type`, captum's NoiseTunnel variants: SmoothGrad-Squared (the mean squared gradient) and
VarGrad (Adebayo et al. 2018: the gradients' variance), and the mean absolute gradient.

The noise is drawn here, seeded, with std = noise_scale * (max - min of the input) as in the
paper, and the same noisy copies go to either backend. innvestigate 2.1.2's own SmoothGrad
cannot do this: it draws unseeded noise and never passes noise_scale on (GaussianSmoother
builds AddGaussianNoise() with its default std 1); captum's NoiseTunnel draws with torch's
generator and takes an absolute std.
"""
import numpy as np

from heatkit.base.rules import Choice, Float, Int
from heatkit.methods import _captum, _keras_rules, channel_sum
from heatkit.methods._entry import GRADIENT_PASSES, SEED, Method, Needs, Paper, Setting, Settings

# type -> the map of the noisy copies' gradients (copies first), element by element
AGGREGATE = {
    "smoothgrad": lambda gradients: gradients.mean(axis=0),
    "smoothgrad_abs": lambda gradients: np.abs(gradients).mean(axis=0),
    "smoothgrad_sq": lambda gradients: np.square(gradients).mean(axis=0),
    "vargrad": lambda gradients: gradients.var(axis=0),
}


def on_keras(model, image, target, params):
    return _smoothgrad(lambda batch: _keras_rules.plain_gradient(model.keras)(batch, target), image, params)


def on_torch(model, image, target, params):
    return _smoothgrad(lambda batch: _captum.attribute(model, "Saliency", batch, target, abs=False), image, params)


def noise(image: np.ndarray, params: dict) -> np.ndarray:
    """The seeded noise of each copy, (augment_by_n, H, W, C), drawn in float32 (64 copies of a
    224 x 224 image took 0.2 to 0.3 s here in float64, 0.1 s in float32); the copies keep the
    image's precision."""
    std = np.float32(params["noise_scale"] * (image.max() - image.min()))
    shape = (params["augment_by_n"], *image.shape)
    return np.random.default_rng(params["seed"]).standard_normal(shape, dtype=np.float32) * std


def _smoothgrad(gradients, image, params):
    return channel_sum(AGGREGATE[params["type"]](gradients(image[None] + noise(image, params))))


SETTINGS = Settings("sg", "sg: SmoothGrad (Smilkov et al. 2017): the mean gradient over noisy copies of the input, or "
                          "captum's NoiseTunnel variants of it.", {
    "augment_by_n": Setting(64, Int(min=1), "number of noisy copies"),
    "noise_scale": Setting(0.1, Float(min=0.0), "noise std as a fraction of the input's range (max - min), as in the paper"),
    "type": Setting("smoothgrad", Choice(tuple(AGGREGATE)),
                    'the copies\' gradients\' mean ("smoothgrad"), mean absolute value ("smoothgrad_abs"), mean square '
                    '("smoothgrad_sq", SmoothGrad-Squared) or variance ("vargrad", Adebayo et al. 2018), channels then '
                    "summed"),
    "seed": Setting(0, SEED, "seed of the noise"),
})
METHOD = Method("sg", "SmoothGrad", Paper("Smilkov et al. 2017", "SmoothGrad: removing noise by adding noise",
                                          "https://arxiv.org/abs/1706.03825"),
                Needs.GRADIENTS, {"keras": on_keras, "torch": on_torch}, SETTINGS,
                cheaper="lower sg.augment_by_n", passes=lambda model, params: GRADIENT_PASSES * params["augment_by_n"])
