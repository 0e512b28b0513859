"""RISE (Petsiuk et al. 2018): saliency = sum over masks of p(c | x * M) M / (N * keep_probability).

Each mask is a random cell_size x cell_size binary grid (each cell kept with keep_probability),
upsampled bilinearly to (cell_size + 1) cells of ceil(H / cell_size) pixels and cropped at a
random shift, as in the paper's code. Grids and shifts are drawn up front, so the masks do not
depend on the batch size.
"""
import numpy as np

from heatkit.base.rules import Float, Int
from heatkit.methods._entry import ANY, SEED, Method, Needs, Paper, Setting, Settings


def attribute(model, image, target, params):
    height, width = image.shape[:2]
    cells, count, keep = params["cell_size"], params["num_masks"], params["keep_probability"]
    rng = np.random.default_rng(params["seed"])
    grids = (rng.random((count, cells, cells)) < keep).astype(np.float64)
    cell_height, cell_width = -(-height // cells), -(-width // cells)
    shifts = np.stack([rng.integers(0, cell_height, count), rng.integers(0, cell_width, count)], axis=1)
    rows, cols = _upsampling(cells, (cells + 1) * cell_height), _upsampling(cells, (cells + 1) * cell_width)

    def masks(start, stop):
        """Upsampled and cropped at once: rows[dy:dy + H] @ grid @ cols[dx:dx + W].T per mask."""
        dy, dx = shifts[start:stop, :1], shifts[start:stop, 1:]
        upsampled_rows = rows[dy + np.arange(height)] @ grids[start:stop]
        return upsampled_rows @ cols[dx + np.arange(width)].transpose(0, 2, 1)

    engine = model.engine(image, target)
    _, weighted = engine.masks(count, masks, 0.0, "rise", max_batch=params["batch_size"])
    return (weighted / (count * keep)).astype(np.float32)


def _upsampling(cells: int, size: int) -> np.ndarray:
    """(size, cells) matrix of scikit-image's bilinear resize (order 1, mode 'reflect') along one axis."""
    from skimage.transform import resize

    return np.stack([resize(np.eye(cells)[:, k:k + 1], (size, 1), order=1, mode="reflect", anti_aliasing=False)[:, 0]
                     for k in range(cells)], axis=1)


SETTINGS = Settings("rise", "rise: RISE (Petsiuk et al. 2018): the mean of random smooth masks weighted by the class "
                            "probability of the input multiplied by each mask.", {
    "num_masks": Setting(4000, Int(min=1)),
    "cell_size": Setting(7, Int(min=1), "grid cells per side of the low-resolution mask (s in the paper)"),
    "keep_probability": Setting(0.5, Float(min=0.0, max=1.0, exclusive_min=True)),
    "batch_size": Setting(256, Int(min=1), "masked images per forward pass at most (the memory budget may lower it)"),
    "seed": Setting(0, SEED),
})
METHOD = Method("rise", "RISE", Paper(
    "Petsiuk et al. 2018", "RISE: Randomized Input Sampling for Explanation of Black-box Models",
    "https://arxiv.org/abs/1806.07421"), Needs.PROBABILITIES, {ANY: attribute}, SETTINGS,
    cheaper="lower rise.num_masks", passes=lambda model, params: params["num_masks"])
