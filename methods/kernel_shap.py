"""KernelSHAP (Lundberg & Lee 2017) from the shap package, over SLIC superpixels or square patches
(`mask`).

It explains the explained class's probability; a superpixel left out of a coalition takes the
background value. shap samples coalitions with numpy's global generator, so the call runs
with that generator seeded and restores its state afterwards.
"""
from contextlib import contextmanager

import numpy as np

from heatkit.base.rules import Float, Int, Mask, PixelValue
from heatkit.methods import _regions
from heatkit.methods._entry import ANY, SEED, Method, Needs, Paper, Setting, Settings


def attribute(model, image, target, params):
    import shap

    segments = _regions.labels(image, params["mask"], {key: params[key] for key in _regions.SLIC})
    count = segments.max() + 1
    engine = model.engine(image, target)
    explainer = shap.KernelExplainer(lambda masks: engine.segments(segments, masks, params["background"], "shap"),
                                     np.zeros((1, count)))
    with _seeded_global_numpy(params["seed"]):
        values = explainer.shap_values(np.ones((1, count)), nsamples=params["nsamples"], l1_reg=params["l1_reg"],
                                       silent=True)
    return np.asarray(values).reshape(count)[segments].astype(np.float32)


@contextmanager
def _seeded_global_numpy(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


SETTINGS = Settings("shap", "shap: KernelSHAP (Lundberg & Lee 2017) from the shap package over SLIC superpixels "
                            "or square patches, explaining the explained class's probability.", {
    "mask": Setting("superpixels", Mask(("patch", "superpixels")),
                    'the features: "superpixels" (SLIC, the three settings below) or "patch:N" (N x N squares)'),
    "n_segments": Setting(50, Int(min=1), "SLIC"),
    "compactness": Setting(0.1, Float(min=0.0, exclusive_min=True), "SLIC (gray values in [0, 1])"),
    "sigma": Setting(1.0, Float(min=0.0), "SLIC pre-smoothing"),
    "nsamples": Setting(1000, Int(min=2), "coalitions evaluated"),
    "background": Setting(0.0, PixelValue(), 'the pixels of a superpixel left out: 0 black, 1 white, "mean"'),
    "l1_reg": Setting(0, Float(min=0.0), "shap's feature selection; 0 estimates every superpixel"),
    "seed": Setting(0, SEED, "shap samples with numpy's global generator: seeded for the call, then restored"),
})
METHOD = Method("shap", "KernelSHAP", Paper(
    "Lundberg & Lee 2017", "A Unified Approach to Interpreting Model Predictions", "https://arxiv.org/abs/1705.07874"),
    Needs.PROBABILITIES, {ANY: attribute}, SETTINGS,
    cheaper="lower shap.nsamples", passes=lambda model, params: params["nsamples"])
