"""Model inputs: image files read, converted and resized to the model's input, or seeded noise.

Images are float64 (H, W, C) arrays of 8-bit levels scaled to [0, 1]; `Preprocess` maps them
to the model's input scale.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from heatkit.base.errors import UsageError

MODES = {1: "L", 3: "RGB"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# Named preprocessings (--preprocess NAME, or settings={"preprocess": NAME}): the preprocess dict's
# values each stands for. "torch", "tf" and "caffe" are keras.applications' modes:
# x / 255 normalised by ImageNet's mean and std; x / 127.5 - 1; BGR bytes less ImageNet's mean.
PRESETS = {
    "unit": {"range": "unit", "mean": None, "std": None, "channel_order": "rgb"},
    "byte": {"range": "byte", "mean": None, "std": None, "channel_order": "rgb"},
    "imagenet": {"range": "unit", **IMAGENET, "channel_order": "rgb"},
    "torch": {"range": "unit", **IMAGENET, "channel_order": "rgb"},
    "tf": {"range": "unit", "mean": [0.5], "std": [0.5], "channel_order": "rgb"},
    "caffe": {"range": "byte", "mean": [103.939, 116.779, 123.68], "std": None, "channel_order": "bgr"},
}


@dataclass(frozen=True)
class Preprocess:
    """Pixels in [0, 1] (RGB) to the model's input: the channels reversed for channel_order "bgr",
    times 255 for range "byte", then (x - mean) / std per channel (in the model's channel order)
    where mean and std are given. `resize` says how an image file of another aspect than the
    model's input is fitted to it (load_image)."""

    range: str = "unit"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str = "squash"
    max_stretch: float = 4.0  # a resize changing aspect ratio or scale by more says so
    channel_order: str = "rgb"

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.channel_order == "bgr":
            pixels = pixels[..., ::-1]
        scaled = pixels * (255.0 if self.range == "byte" else 1.0)
        if self.mean is not None:
            scaled = scaled - np.asarray(self.mean)
        if self.std is not None:
            scaled = scaled / np.asarray(self.std)
        return scaled

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """The pixels in [0, 1] (RGB) that the model's input `values` came from: for drawing what a
        method made in the model's input space."""
        if self.std is not None:
            values = values * np.asarray(self.std)
        if self.mean is not None:
            values = values + np.asarray(self.mean)
        values = values / (255.0 if self.range == "byte" else 1.0)
        return values[..., ::-1] if self.channel_order == "bgr" else values

    def check(self, channels: int) -> None:
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, channels):
                wanted = "one value (--preprocess imagenet is for RGB models)" if channels == 1 else \
                    f"one value, or {channels}, one per channel"
                raise UsageError(f"preprocess.{name} has {len(values)} values and the model {channels} "
                                 f"channel{'s' if channels > 1 else ''}; give {wanted}")


def image_files(paths: list[Path]) -> list[Path]:
    """The image files named on the command line: files as given, folders' images sorted by name."""
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise UsageError(f"folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        else:
            check_image_path(path)
            files.append(path)
    return files


MAX_PIXELS = 50_000_000  # settings.py's max_image_pixels by default


def load_image(path: str | Path, shape: tuple[int, int, int], max_pixels: int = MAX_PIXELS,
               resize: str = "squash", max_stretch: float | None = None, notes: list[str] | None = None,
               data: bytes | None = None) -> np.ndarray:
    """The image at `path` as the model's input: upright (EXIF), gray or RGB, in [0, 1], resized to
    (H, W): squashed to it, or ("center_crop") resized to cover it and cropped to its center.
    16-bit images keep their 16 bits; an alpha channel is dropped (the colors stay as stored);
    palette and CMYK images are converted. Images over `max_pixels` are refused unread, images
    whose levels are not finite values of 0 to 65535 (NaN, inf, 1e30) refused. A resize that changes the aspect ratio, or enlarges the
    image, by more than `max_stretch` adds a line to `notes`. With `data`, the file's bytes are
    those, read elsewhere (a dataset's worker is sent them), and `path` only names them."""
    path = Path(path)
    height, width, channels = shape
    if data is None:
        check_image_path(path)
    try:
        with _no_pil_limit(), Image.open(path if data is None else io.BytesIO(data)) as image:  # our limit, not PIL's
            if image.width * image.height > max_pixels:
                raise UsageError(f"{path} is {image.width}x{image.height} pixels, more than the limit of "
                                 f"{max_pixels:,} (max_image_pixels in settings); give a smaller image or raise it")
            image.load()
            image = ImageOps.exif_transpose(image)
            if max_stretch is not None and notes is not None:
                notes.extend(_stretched(path, image.size, (width, height), resize, max_stretch))
            pixels = _as_float(path, image, channels, (width, height), resize)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # PIL names what it read from, a BytesIO's address where the bytes came from elsewhere
        why = "no image format PIL knows" if isinstance(error, UnidentifiedImageError) else str(error)
        raise UsageError(f"cannot read {path} as an image ({why}); give an image file that PIL reads (PNG, JPEG, "
                         "BMP, TIFF, ...), whole") from None
    return pixels.reshape(height, width, channels)


@contextmanager
def _no_pil_limit():
    """PIL's own decompression-bomb limit lifted for the block: max_image_pixels is the one the user sets."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _stretched(path: Path, size: tuple[int, int], target: tuple[int, int], resize: str, limit: float) -> list[str]:
    """A note where resizing `size` (w, h) to `target` changes the aspect ratio, or enlarges the
    image, by more than `limit` (shrinking a photo to a model's input is what models expect)."""
    (width, height), (to_width, to_height) = size, target
    aspect = (to_width / width) / (to_height / height)
    enlarged = max(to_width / width, to_height / height) if resize == "center_crop" else \
        (to_width * to_height / (width * height)) ** 0.5
    changes = []
    if resize == "squash" and max(aspect, 1 / aspect) > limit:
        changes.append(f"its aspect ratio changes {max(aspect, 1 / aspect):.3g}-fold")
    if enlarged > limit:
        changes.append(f"it is enlarged {enlarged:.3g}-fold")
    if not changes:
        return []
    how = "squashed" if resize == "squash" else "resized and cropped"
    return [f"{path} is {width}x{height} pixels and is {how} to the model's {to_width}x{to_height}: "
            f"{' and '.join(changes)} (more than preprocess.max_stretch, {limit:g})"]


def _as_float(path: Path, image: Image.Image, channels: int, size: tuple[int, int], resize: str) -> np.ndarray:
    """The image's pixels in [0, 1], with `channels` channels, resized (bicubic) to `size`. A 16-bit
    or float image's values must be finite levels of 0 to 65535 (a float TIFF's inf and 1e30 were
    clipped to white, where NaN was refused)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit (or wider) gray: no 8-bit rounding
        values = np.asarray(image, dtype=np.float64)
        bad = int(np.count_nonzero(~np.isfinite(values) | (values < 0) | (values > 65535)))
        if bad:
            raise UsageError(f"{path} has {bad:,} pixels that are not finite levels of 0 to 65535 (NaN, infinite, "
                             "negative or larger); give an image of finite levels")
        scale = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = _resized(Image.fromarray((values / scale).astype(np.float32), "F"), size, resize)
        plane = np.clip(np.asarray(gray, dtype=np.float64), 0.0, 1.0)
        return np.repeat(plane[..., None], channels, axis=-1)
    if image.mode == "P":
        image = image.convert("RGBA")
    image = _resized(image.convert(MODES[channels]), size, resize)
    return np.asarray(image, dtype=np.float64) / 255.0


def _resized(image: Image.Image, size: tuple[int, int], resize: str) -> Image.Image:
    if image.size == size:
        return image
    if resize == "center_crop":
        return ImageOps.fit(image, size, Image.Resampling.BICUBIC)
    return image.resize(size, Image.Resampling.BICUBIC)


def check_image_path(path: Path) -> None:
    """A UsageError unless `path` is a regular file: a FIFO or a device would block the read."""
    if not path.exists():
        raise UsageError(f"image file {path} not found; check the path given to -ip")
    if not path.is_file():
        raise UsageError(f"{path} is not a regular file (a FIFO, a device or a socket); give an image file")


def random_image(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Seeded uniform 8-bit noise in the model's input shape."""
    return np.random.default_rng(seed).integers(0, 256, shape) / 255.0


def set_center(image: np.ndarray, level: int) -> np.ndarray:
    """A copy of `image` whose center pixel is the 8-bit gray `level` in every channel."""
    edited = image.copy()
    edited[image.shape[0] // 2, image.shape[1] // 2, :] = level / 255.0
    return edited


def unique_stems(stems: list[str]) -> list[str]:
    """The stems, with _2, _3, ... added where two images share one."""
    seen: dict[str, int] = {}
    unique = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return unique
