"""Occlusion (Zeiler & Fergus 2014): the probability drop when a patch over the pixel is filled,
averaged over the patches that cover it. Pixels no patch covers get 0."""
import numpy as np

from core.errors import UsageError
from methods import _windows


def attribute(model, image, target, params):
    height, width, _ = image.shape
    patch, stride = params["patch"], params["stride"]
    if patch > min(height, width):
        raise UsageError(f"occlusion.patch {patch} is larger than the {height}x{width} input; give at most "
                         f"{min(height, width)}")
    rows, cols = _windows.starts(height, patch, stride), _windows.starts(width, patch, stride)
    engine = model.engine(image, target)
    occluded = engine.edits(_windows.inputs(rows, cols, patch, image.shape), params["fill"], "occlusion")
    drops = (engine.probability() - occluded).reshape(rows.size, cols.size)
    return _windows.spread(drops, rows, cols, patch, (height, width)).astype(np.float32)
