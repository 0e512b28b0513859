"""Occlusion (Zeiler & Fergus 2014): the probability drop when a patch over the pixel is filled,
averaged over the patches that cover it; pixels no patch covers get 0. With a feature `mask`, each
region instead (a square of a grid, a superpixel), its drop given to each of its pixels."""
import numpy as np

from heatkit.base.errors import UsageError
from heatkit.base.rules import Int, Mask, Optional, PixelValue
from heatkit.methods import _regions, _sliding, per_channel
from heatkit.methods._entry import ANY, Method, Needs, Paper, Setting, Settings


def attribute(model, image, target, params):
    engine = model.engine(image, target)
    if params["mask"] is not None:
        labels = _regions.labels(image, params["mask"])
        return (engine.probability() - engine.regions(labels, params["fill"], "occlusion"))[labels].astype(np.float32)
    height, width, _ = image.shape
    patch, stride = window(model, params)
    rows, cols = _sliding.starts(height, patch, stride), _sliding.starts(width, patch, stride)
    inputs = _sliding.inputs(rows, cols, patch, image.shape)
    occluded = engine.edits(inputs, per_channel(params["fill"], image)[inputs % image.shape[-1]], "occlusion")
    drops = (engine.probability() - occluded).reshape(rows.size, cols.size)
    return _sliding.spread(drops, rows, cols, patch, (height, width)).astype(np.float32)


SIDE_SHARE = 16 / 224  # the patch's side as a share of the input's: 16 x 16 at 224 x 224, as occlusion is run


def window(model, params) -> tuple[int, int]:
    """The patch's side and stride: as set; by default, on a model whose first layer is affine,
    every pixel alone (its exact fast path costs a pass of the rest of the network each), and on
    any other a side SIDE_SHARE of the input's, half of it the stride (pixel by pixel, a ResNet-50
    at 224 x 224 took 4 hours)."""
    height, width, _ = model.input_shape
    patch = params["patch"] or (1 if model.affine_split() is not None else max(1, round(min(height, width) * SIDE_SHARE)))
    if patch > min(height, width):
        raise UsageError(f"occlusion.patch {patch} is larger than the {height}x{width} input; give at most "
                         f"{min(height, width)}")
    return patch, params["stride"] or max(1, patch // 2)


def passes(model, params) -> int | None:
    if params["mask"] is not None:
        return _regions.count(model.input_shape, params["mask"])
    height, width, _ = model.input_shape
    patch, stride = window(model, params)
    return _sliding.starts(height, patch, stride).size * _sliding.starts(width, patch, stride).size


SETTINGS = Settings("occlusion", "occlusion: Zeiler & Fergus 2014. A pixel's relevance is the drop of the explained "
                                 "class's probability when a patch covering it is set to `fill`, averaged over the "
                                 "patches covering it; or, with a mask, when its region is.", {
    "patch": Setting(None, Optional(Int(min=1)), "side of the square patch, in pixels (1: every pixel alone); None: "
                                                 "every pixel alone on a model whose first layer is affine, else 16 "
                                                 "at 224 x 224, the same share of other sizes"),
    "stride": Setting(None, Optional(Int(min=1)), "step between patch positions (the last row and column of patches "
                                                  "are always included); None: half the patch"),
    "fill": Setting(0.0, PixelValue(), 'the pixels a patch is set to: 0 black, 1 white, "mean"'),
    "mask": Setting(None, Optional(Mask()), 'None: the sliding patches above; or regions filled one at a time, '
                                            '"pixels", "patch:N" (a grid of N x N squares) or "superpixels" (SLIC)'),
})
METHOD = Method("occlusion", "Occlusion", Paper(
    "Zeiler & Fergus 2014", "Visualizing and Understanding Convolutional Networks", "https://arxiv.org/abs/1311.2901"),
    Needs.PROBABILITIES, {ANY: attribute}, SETTINGS, passes=passes,
    cheaper="raise occlusion.stride (and occlusion.patch)")
