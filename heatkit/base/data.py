"""Data with known answers that the toolkit makes or ships: the rule that gives an image's true
class on the center-pixel and region models, seeded images whose true classes are chosen, and scikit-learn's
bundled digits (no download)."""
from __future__ import annotations

import numpy as np

CENTER_PIXEL = "center_pixel"  # the ground truth a center-pixel model's card declares
REGION = "region:"  # a region model's: "region:TOP,LEFT,SIDE", the square whose mean sets the class


def true_label(ground_truth: str | None, image: np.ndarray, num_classes: int) -> int | None:
    """An image's true class under the model's declared ground truth; None where it declares none.
    On the center-pixel and region models: the mean gray level of the pixels that decide,
    (K-1) * mean, rounded."""
    mask = ground_truth_mask(ground_truth, image.shape[:2])
    if mask is None:
        return None
    return int(np.rint(image[..., 0][mask].mean() * (num_classes - 1)))


def region_ground_truth(top: int, left: int, side: int) -> str:
    """The ground truth a region model's card declares: its square, by its top-left pixel and side."""
    return f"{REGION}{top},{left},{side}"


def ground_truth_mask(ground_truth: str | None, shape: tuple[int, int]) -> np.ndarray | None:
    """(H, W) bool: the pixels the probabilities depend on under the declared ground truth; None
    where the model declares none."""
    if ground_truth is None or ground_truth != CENTER_PIXEL and not ground_truth.startswith(REGION):
        return None
    mask = np.zeros(shape, bool)
    if ground_truth == CENTER_PIXEL:
        mask[shape[0] // 2, shape[1] // 2] = True
    else:
        top, left, side = (int(number) for number in ground_truth.removeprefix(REGION).split(","))
        mask[top:top + side, left:left + side] = True
    return mask


def center_pixel_images(count: int, image_size: int, num_classes: int, seed: int,
                        centers: np.ndarray | None = None, ground_truth: str = CENTER_PIXEL) -> np.ndarray:
    """Seeded 8-bit gray images (count, H, W, 1) in [0, 1]; `centers` sets their true classes, by
    setting the pixels that decide under `ground_truth` (the center, or a region) to their level."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, image_size, image_size, 1)) / 255.0
    if centers is not None:
        mask = ground_truth_mask(ground_truth, (image_size, image_size))
        images[:, mask, 0] = (centers / (num_classes - 1))[:, None]
    return images


def digits(image_size: int, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8 x 8 digits upsampled (bilinear) to `image_size`, quantized to 8 bits as a PNG
    of them would be, and split at random (seeded): (train images, train labels, held-out images,
    held-out labels), images (N, S, S, 1) in [0, 1]."""
    from skimage.transform import resize
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.stack([resize(image / 16.0, (image_size, image_size), order=1, anti_aliasing=False)
                       for image in data.images])
    images = np.rint(images * 255)[..., None] / 255.0
    order = np.random.default_rng(seed).permutation(len(images))
    count = int(round(len(images) * held_out))
    test, train = order[:count], order[count:]
    return images[train], data.target[train], images[test], data.target[test]
