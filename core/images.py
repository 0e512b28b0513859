"""Model inputs: image files read, converted and resized to the model's input, or seeded noise.

Inputs are float64 (H, W, C) arrays of 8-bit levels scaled to [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import UsageError

MODES = {1: "L", 3: "RGB"}


def load_image(path: str | Path, shape: tuple[int, int, int]) -> np.ndarray:
    """The image at `path` as the model's input: upright, gray or RGB, resized to (H, W)."""
    path = Path(path)
    height, width, channels = shape
    check_image_path(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image).convert(MODES[channels])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UsageError(f"cannot read {path} as an image ({error}); give a PNG, JPEG, BMP or TIFF file") from None
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    return pixels.reshape(height, width, channels)


def check_image_path(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"image file {path} not found; check the path given to -ip")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give an image file to -ip")


def random_image(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Seeded uniform 8-bit noise in the model's input shape."""
    return np.random.default_rng(seed).integers(0, 256, shape) / 255.0


def set_center(image: np.ndarray, level: int) -> np.ndarray:
    """A copy of `image` whose center pixel is the 8-bit gray `level` in every channel."""
    edited = image.copy()
    edited[image.shape[0] // 2, image.shape[1] // 2, :] = level / 255.0
    return edited
