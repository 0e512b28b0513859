"""Occlusion (Zeiler & Fergus 2014): the probability drop when a patch over the pixel is filled,
averaged over the patches that cover it; pixels no patch covers get 0. With a feature `mask`, each
region instead (a square of a grid, a superpixel), its drop given to each of its pixels."""
import numpy as np

from heatkit.base.errors import UsageError
from heatkit.base.rules import Int, Mask, Optional, PixelValue
from heatkit.methods import _regions, _windows, per_channel
from heatkit.methods._entry import ANY, Method, Needs, Paper, Setting, Settings


def attribute(model, image, target, params):
    engine = model.engine(image, target)
    if params["mask"] is not None:
        labels = _regions.labels(image, params["mask"])
        return (engine.probability() - engine.regions(labels, params["fill"], "occlusion"))[labels].astype(np.float32)
    height, width, _ = image.shape
    patch, stride = params["patch"], params["stride"]
    if patch > min(height, width):
        raise UsageError(f"occlusion.patch {patch} is larger than the {height}x{width} input; give at most "
                         f"{min(height, width)}")
    rows, cols = _windows.starts(height, patch, stride), _windows.starts(width, patch, stride)
    inputs = _windows.inputs(rows, cols, patch, image.shape)
    occluded = engine.edits(inputs, per_channel(params["fill"], image)[inputs % image.shape[-1]], "occlusion")
    drops = (engine.probability() - occluded).reshape(rows.size, cols.size)
    return _windows.spread(drops, rows, cols, patch, (height, width)).astype(np.float32)


SETTINGS = Settings("occlusion", "occlusion: Zeiler & Fergus 2014. A pixel's relevance is the drop of the explained "
                                 "class's probability when a patch covering it is set to `fill`, averaged over the "
                                 "patches covering it; or, with a mask, when its region is.", {
    "patch": Setting(1, Int(min=1), "side of the square patch, in pixels (1: every pixel alone)"),
    "stride": Setting(1, Int(min=1), "step between patch positions; the last row and column of patches are always "
                                     "included"),
    "fill": Setting(0.0, PixelValue(), 'the pixels a patch is set to: 0 black, 1 white, "mean"'),
    "mask": Setting(None, Optional(Mask()), 'None: the sliding patches above; or regions filled one at a time, '
                                            '"pixels", "patch:N" (a grid of N x N squares) or "superpixels" (SLIC)'),
})
METHOD = Method("occlusion", "Occlusion", Paper(
    "Zeiler & Fergus 2014", "Visualizing and Understanding Convolutional Networks", "https://arxiv.org/abs/1311.2901"),
    Needs.PROBABILITIES, {ANY: attribute}, SETTINGS,
    cheaper="raise occlusion.stride (and occlusion.patch)")
