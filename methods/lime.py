"""LIME (Ribeiro et al. 2016) from the lime package, on quickshift superpixels, seeded, their
kernel scaled to the input's side unless set (lime's own, 4, made 2 to 4 superpixels of a 32 x 32
input: a map of one or two values).

The map paints each superpixel with its signed weight for the explained class.
"""
import numpy as np

from heatkit.base.rules import Float, Int, Optional, PixelValue
from heatkit.methods._entry import ANY, SEED, Method, Needs, Paper, Setting, Settings

LIME_KERNEL, LIME_SIDE = 4.0, 224  # lime's quickshift kernel, for the ImageNet inputs it was made for


def attribute(model, image, target, params):
    from lime import lime_image
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    engine = model.engine(image, target)

    class EngineLime(lime_image.LimeImageExplainer):
        """lime's explainer, with the samples evaluated by the perturbation engine.

        lime 0.2.0.1 builds every sample image in a Python loop behind a progress bar that
        cannot be turned off; the sampling below is lime's own, unchanged.
        """

        def data_labels(self, rgb, fudged_image, segments, classifier_fn, num_samples, batch_size=10):
            data = self.random_state.randint(0, 2, num_samples * (segments.max() + 1)).reshape(num_samples, -1)
            data[0, :] = 1  # the first sample is the image itself
            fill = fudged_image[..., :image.shape[-1]]  # lime works in RGB; the model may be gray
            return data, engine.segments(segments, data, fill, "lime", all_classes=True)

    kernel_size = params["kernel_size"] or max(1.0, LIME_KERNEL * min(image.shape[:2]) / LIME_SIDE)
    segmenter = SegmentationAlgorithm("quickshift", kernel_size=kernel_size, max_dist=params["max_dist"],
                                      ratio=params["ratio"], random_seed=params["seed"])
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    explanation = EngineLime(random_state=params["seed"]).explain_instance(
        rgb, None, labels=(target,), top_labels=None, hide_color=params["hide_color"],
        num_features=params["num_features"], num_samples=params["num_samples"],
        segmentation_fn=segmenter, random_seed=params["seed"])  # data_labels above evaluates the samples
    weights = np.zeros(explanation.segments.max() + 1)
    for segment, weight in explanation.local_exp[target]:
        weights[segment] = weight
    return weights[explanation.segments].astype(np.float32)


SETTINGS = Settings("lime", "lime: LIME (Ribeiro et al. 2016) from the lime package on quickshift superpixels. The map "
                            "paints each superpixel with its signed weight for the explained class.", {
    "kernel_size": Setting(None, Optional(Float(min=0.0, exclusive_min=True)),
                           "quickshift's; None: scaled to the input, 4 (lime's own, for 224 x 224) times its side / "
                           "224, at least 1 (4 on a 32 x 32 digit made 2 superpixels; 1 makes 12)"),
    "max_dist": Setting(200, Float(min=0.0, exclusive_min=True), "quickshift"),
    "ratio": Setting(0.2, Float(min=0.0, max=1.0), "quickshift"),
    "num_samples": Setting(1000, Int(min=2), "perturbed samples"),
    "hide_color": Setting(0.0, Optional(PixelValue()), 'the pixels of a hidden superpixel: 0 black, 1 white, "mean"; '
                                                       "None hides it with its own mean color"),
    "num_features": Setting(1000, Int(min=1), "superpixels given a weight, strongest first; the rest are 0"),
    "seed": Setting(0, SEED, "seeds the segmentation and lime's sampler"),
})
METHOD = Method("lime", "LIME", Paper(
    "Ribeiro et al. 2016", '"Why Should I Trust You?": Explaining the Predictions of Any Classifier',
    "https://arxiv.org/abs/1602.04938"), Needs.PROBABILITIES, {ANY: attribute}, SETTINGS,
    cheaper="lower lime.num_samples", passes=lambda model, params: params["num_samples"])
