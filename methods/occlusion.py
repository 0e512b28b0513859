"""Occlusion (Zeiler & Fergus 2014): the probability drop when a patch over the pixel is filled,
averaged over the patches that cover it. Pixels no patch covers get 0."""
import numpy as np

from core.errors import UsageError


def attribute(model, image, target, params):
    height, width, channels = image.shape
    patch, stride = params["patch"], params["stride"]
    if patch > min(height, width):
        raise UsageError(f"occlusion.patch {patch} is larger than the {height}x{width} input; give at most "
                         f"{min(height, width)}")
    rows, cols = _starts(height, patch, stride), _starts(width, patch, stride)
    within = (np.arange(patch)[:, None] * width + np.arange(patch)[None, :]).reshape(-1)
    corners = (rows[:, None] * width + cols[None, :]).reshape(-1)
    pixels = corners[:, None] + within[None, :]  # (patches, patch * patch)
    inputs = (pixels[:, :, None] * channels + np.arange(channels)).reshape(len(pixels), -1)

    engine = model.engine(image, target)
    drops = (engine.probability() - engine.edits(inputs, params["fill"], "occlusion")).reshape(rows.size, cols.size)
    total, covered = np.zeros((height, width)), np.zeros((height, width))
    for dy in range(patch):
        for dx in range(patch):
            total[np.ix_(rows + dy, cols + dx)] += drops
            covered[np.ix_(rows + dy, cols + dx)] += 1
    return (total / np.maximum(covered, 1)).astype(np.float32)


def _starts(size: int, patch: int, stride: int) -> np.ndarray:
    """Patch positions along one side, the last flush with the edge so that every pixel is covered."""
    starts = np.arange(0, size - patch + 1, stride)
    return starts if starts[-1] == size - patch else np.append(starts, size - patch)
