"""Data with known answers that the toolkit makes or ships: the rule that gives an image's true
class on the center-pixel and region models, seeded images whose true classes are chosen, and scikit-learn's
bundled digits (no download)."""
from __future__ import annotations

import numpy as np

CENTER_PIXEL = "center_pixel"  # the ground truth a center-pixel model's card declares
REGION = "region:"  # a region model's: "region:TOP,LEFT,SIDE", the square whose mean sets the class
# a two-pixel model's: "two_pixels_and:ROW_A,COL_A,ROW_B,COL_B" (or _xor), the pixels whose interaction sets the class
TWO_PIXELS = ("two_pixels_and:", "two_pixels_xor:")


def true_label(ground_truth: str | None, image: np.ndarray, num_classes: int) -> int | None:
    """An image's true class under the model's declared ground truth; None where it declares none.
    On the center-pixel and region models: the mean gray level of the pixels that decide,
    (K-1) * mean, rounded; on the two-pixel models, their rule."""
    mask = ground_truth_mask(ground_truth, image.shape[:2])
    if mask is None:
        return None
    if ground_truth.startswith(TWO_PIXELS):  # both rules are symmetric in the two pixels
        a, b = image[..., 0][mask]
        return int(min(a, b) > 0.5 if ground_truth.startswith(TWO_PIXELS[0]) else abs(a - b) > 0.5)
    return int(np.rint(image[..., 0][mask].mean() * (num_classes - 1)))


def region_ground_truth(top: int, left: int, side: int) -> str:
    """The ground truth a region model's card declares: its square, by its top-left pixel and side."""
    return f"{REGION}{top},{left},{side}"


def two_pixels_ground_truth(kind: str, a: tuple[int, int], b: tuple[int, int]) -> str:
    """The ground truth a two-pixel model's card declares: its rule ("and" or "xor") and its pixels."""
    return f"two_pixels_{kind}:{a[0]},{a[1]},{b[0]},{b[1]}"


def ground_truth_mask(ground_truth: str | None, shape: tuple[int, int]) -> np.ndarray | None:
    """(H, W) bool: the pixels the probabilities depend on under the declared ground truth; None
    where the model declares none."""
    if ground_truth is None or ground_truth != CENTER_PIXEL and not ground_truth.startswith((REGION, *TWO_PIXELS)):
        return None
    mask = np.zeros(shape, bool)
    if ground_truth == CENTER_PIXEL:
        mask[shape[0] // 2, shape[1] // 2] = True
    elif ground_truth.startswith(REGION):
        top, left, side = _numbers(ground_truth)
        mask[top:top + side, left:left + side] = True
    else:
        row_a, col_a, row_b, col_b = _numbers(ground_truth)
        mask[row_a, col_a] = mask[row_b, col_b] = True
    return mask


def _numbers(ground_truth: str) -> list[int]:
    return [int(number) for number in ground_truth.partition(":")[2].split(",")]


def center_pixel_images(count: int, image_size: int, num_classes: int, seed: int,
                        centers: np.ndarray | None = None, ground_truth: str = CENTER_PIXEL) -> np.ndarray:
    """Seeded 8-bit gray images (count, H, W, 1) in [0, 1]; `centers` sets their true classes, by
    setting the pixels that decide under `ground_truth` (the center, or a region) to their level,
    or on a two-pixel model, the two pixels to levels its rule gives that class, at least 0.1 from
    its boundary."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, image_size, image_size, 1)) / 255.0
    if centers is None:
        return images
    mask = ground_truth_mask(ground_truth, (image_size, image_size))
    if ground_truth.startswith(TWO_PIXELS):
        images[:, mask, 0] = _two_pixel_levels(ground_truth.startswith(TWO_PIXELS[0]), centers, rng)
    else:
        images[:, mask, 0] = (centers / (num_classes - 1))[:, None]
    return images


def _two_pixel_levels(rule_and: bool, classes: np.ndarray, rng) -> np.ndarray:
    """(count, 2) levels of the two pixels whose rule gives each class, 0.1 or more from its boundary."""
    levels = np.empty((len(classes), 2))
    for row, cls in enumerate(classes):
        while True:
            a, b = rng.integers(0, 256, 2) / 255.0
            gap = min(a, b) if rule_and else abs(a - b)
            if abs(gap - 0.5) >= 0.1 and int(gap > 0.5) == cls:
                levels[row] = a, b
                break
    return levels


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
