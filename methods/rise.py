"""RISE (Petsiuk et al. 2018): saliency = sum over masks of p(c | x * M) M / (N * keep_probability).

Each mask is a random cell_size x cell_size binary grid (each cell kept with keep_probability),
upsampled bilinearly to (cell_size + 1) cells of ceil(H / cell_size) pixels and cropped at a
random shift, as in the paper's code. Grids and shifts are drawn up front, so the masks do not
depend on the batch size.
"""
import numpy as np
from skimage.transform import resize


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
    return np.stack([resize(np.eye(cells)[:, k:k + 1], (size, 1), order=1, mode="reflect", anti_aliasing=False)[:, 0]
                     for k in range(cells)], axis=1)
