"""What a call explains, sorted out before the model loads: its images and the class each one
explains, in the forms researchers hold them.

    a file, a folder, or a list of them         read, resized and scaled as the model takes them
    a numpy array (H, W, C), (H, W) or (N, H, W, C)  pixels in [0, 1], as an image is shown
    a torch tensor (C, H, W), (N, C, H, W), or a list of (C, H, W)
                                                the model's input, already preprocessed, as
                                                captum and pytorch-grad-cam take it (on any device)
    None                                        a seeded random image

A target is one class for every image, or one per image (a list, an array or a tensor).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heatkit.base.errors import UsageError
from heatkit.base.images import image_files, load_image, random_image, set_center, unique_stems


@dataclass(frozen=True)
class Input:
    """One image: its name in files, where it came from, its pixels in [0, 1] (as drawn) and the
    model's input (as explained)."""

    stem: str
    source: str
    pixels: np.ndarray
    model_input: np.ndarray


@dataclass(frozen=True)
class Given:
    """The images of a call as given, checked before any model loads."""

    files: list[Path] = field(default_factory=list)
    arrays: list[np.ndarray] = field(default_factory=list)  # pixels (H, W, C) in [0, 1]
    tensors: list = field(default_factory=list)  # model inputs (C, H, W), torch tensors
    random: bool = False  # no image: a seeded random one

    @property
    def size(self) -> list[int] | None:
        """The [H, W] the arrays and tensors give, where they give one: a model that fixes no input
        size runs at it."""
        sides = {array.shape[:2] for array in self.arrays} | {tuple(tensor.shape[1:]) for tensor in self.tensors}
        return list(sides.pop()) if len(sides) == 1 else None

    @property
    def count(self) -> int:
        return 1 if self.random else len(self.files) + len(self.arrays) + len(self.tensors)


def sort_out(images, center_level: int | None = None) -> Given:
    """The images given, each form told apart and checked (folders opened); a UsageError that
    says the forms taken for anything else."""
    if center_level is not None and not 0 <= center_level <= 255:
        raise UsageError(f"-cp {center_level} is not an 8-bit gray level; give 0 to 255")
    if images is None:
        return Given(random=True)
    if _is_tensor(images):
        images = list(images) if images.dim() == 4 else [images]
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    given = images if isinstance(images, (list, tuple)) else [images]
    files, arrays, tensors = [], [], []
    for item in given:
        if isinstance(item, (str, Path)):
            files.append(Path(item))
        elif isinstance(item, np.ndarray):
            arrays.append(_pixels(item))
        elif _is_tensor(item):
            if item.dim() != 3:
                raise UsageError(f"a tensor of shape {tuple(item.shape)}: give the model's input as (C, H, W) or a "
                                 "batch (N, C, H, W)")
            tensors.append(item.detach())
        else:
            raise UsageError(f"cannot explain a {type(item).__name__}; give image files, numpy arrays of pixels in "
                             "[0, 1] (H, W, C), or torch tensors of the model's input (C, H, W) or (N, C, H, W)")
    found = Given(image_files(files), arrays, tensors)
    sides = {array.shape[:2] for array in arrays} | {tuple(tensor.shape[1:]) for tensor in tensors}
    if len(sides) > 1:
        raise UsageError(f"the arrays and tensors given have sides {', '.join(map(str, sorted(sides)))}; give images "
                         "of one size (files are resized to the model's input)")
    return found


def read(given: Given, model, cfg: dict, center_level: int | None) -> tuple[list[Input], list[str]]:
    """Every image as an Input, and the notes of reading them (an image stretched, or skipped with
    skip_bad_images)."""
    shape, notes = model.input_shape, []
    if given.random:
        pixels = random_image(shape, cfg["seed"])
        found = [(f"random_seed{cfg['seed']}", f"random_seed{cfg['seed']}", pixels, None)]
    else:
        found = [(path.stem, str(path), pixels, None) for path, pixels in _files(given.files, shape, cfg, notes)]
        if given.files and not found and not (given.arrays or given.tensors):
            raise UsageError("none of the images given could be read; see the notes above each")
        found += [(f"array{i}", f"array {i} given", _fits(array, shape, "an image array"), None)
                  for i, array in enumerate(given.arrays)]
        for i, tensor in enumerate(given.tensors):
            values = _fits(model.torch.array(tensor).transpose(1, 2, 0), shape, "a tensor")
            found.append((f"tensor{i}", f"tensor {i} given", np.clip(model.preprocess.inverse(values), 0, 1), values))
    stems = unique_stems([stem for stem, *_ in found])
    inputs = []
    for stem, (_, source, pixels, values) in zip(stems, found):
        if center_level is not None:
            pixels, values = set_center(pixels, center_level), None
        inputs.append(Input(stem, source, pixels, model.preprocess(pixels) if values is None else values))
    return inputs, notes


def targets(target, count: int, classes: int | None = None) -> list[int | None]:
    """The class each image explains: `target` for all (None: each its predicted class), or one
    per image; each checked against the model's classes where they are known (the count is checked
    before the model loads)."""
    if target is None:
        return [None] * count
    if _is_tensor(target):
        target = target.tolist()
    values = [int(value) for value in np.asarray(target).ravel()] if np.ndim(target) else [int(target)] * count
    if len(values) != count:
        raise UsageError(f"{len(values)} targets for {count} images; give one class, or one per image")
    for value in values if classes is not None else []:
        if not 0 <= value < classes:
            raise UsageError(f"-cl {value} is not a class of this model; give 0 to {classes - 1}")
    return values


def class_names(labels, model) -> list[str] | None:
    """The classes' names: `labels` (a file, one name a line, or a list), else the model's own (its
    card's, or ImageNet's for a 1000-class torchvision or timm classifier)."""
    if isinstance(labels, (str, Path)):
        if not Path(labels).is_file():  # a FIFO would block the read
            raise UsageError(f"labels file {labels} is {'not found' if not Path(labels).exists() else 'not a regular file'}"
                             "; give a text file, one class name per line")
        try:
            labels = [line.strip() for line in Path(labels).read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read labels file {labels} ({error}); give a text file, one class name per "
                             "line") from None
    names = labels or model.class_names
    if names is not None and len(names) != model.num_classes:
        raise UsageError(f"the labels have {len(names)} names and the model {model.num_classes} classes; "
                         "give one name per line, one line per class")
    return names


def _files(files: list[Path], shape, cfg: dict, notes: list[str]) -> list[tuple[Path, np.ndarray]]:
    read = []
    for path in files:
        try:
            read.append((path, load_image(path, shape, cfg["max_image_pixels"], cfg["preprocess"]["resize"],
                                          cfg["preprocess"]["max_stretch"], notes)))
        except UsageError as error:
            if not cfg["skip_bad_images"]:
                hint = "; or give --skip-bad-images to explain the others" if len(files) > 1 else ""
                raise UsageError(f"{error}{hint}") from None
            notes.append(f"skipped {path}: {error}")
    return read


def _pixels(array: np.ndarray) -> np.ndarray:
    """A numpy image as (H, W, C) pixels in [0, 1], checked, in its own float type (float64 for
    integers)."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise UsageError(f"an image array of shape {array.shape}: give pixels as (H, W, C), (H, W) or a batch "
                         "(N, H, W, C), or the model's input as a torch tensor (N, C, H, W)")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise UsageError(f"an image array in [{np.nanmin(array):g}, {np.nanmax(array):g}]: numpy images are pixels in "
                         "[0, 1] (the run preprocesses them); give a torch tensor for an input already preprocessed")
    return array


def _fits(values: np.ndarray, shape: tuple[int, int, int], what: str) -> np.ndarray:
    if values.shape != shape:
        raise UsageError(f"{what} of shape {values.shape} (H, W, C): the model takes {shape}; give --input-size for "
                         "a model that takes other sizes, or an image file to be resized")
    return values


def _is_tensor(value) -> bool:
    """A torch tensor, told without importing torch (the command line's -h imports no framework):
    whoever holds one has imported it."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)
