"""A dataset's images, listed on the client without decoding them: a folder of files (labels from
the first subfolder, or labels.csv), or an fsspec URL of one (s3://bucket/images/, every worker
reading it itself), or images generated from a seed (random:N on a center-pixel model, the digits
CNN's held-out digits). Each image's key hashes what it is (its file's bytes, or its pixels), so
a resumed run finds what is done wherever the folder moved; the worker that explains it decodes
it (heatkit/pipeline/datasets/execution.py)."""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heatkit.base.errors import UsageError
from heatkit.base.images import IMAGE_SUFFIXES, load_image


@dataclass(slots=True)
class Item:
    """One image of the dataset: where it is, its label, and its key (see key_of). A generated
    image carries its pixels; a file is read where it is explained."""

    stem: str
    source: str  # a file's path or URL, or random:i / digits:i
    label: str | int | None = None  # from the folder, the CSV, or the generator
    pixels: np.ndarray | None = None  # (H, W, C) in [0, 1], for generated images
    url: bool = False  # the source is an fsspec URL every worker reads itself
    size: int | None = None  # a URL's bytes as listed: a resumed run knows it unchanged by them
    key: str = ""  # set where the content is read: the client, or for a URL the worker
    data: bytes | None = None  # a file's bytes, read by the client for a task in flight
    mask: tuple[str, bytes] | None = None  # its localisation.mask file's name and bytes, for a task in flight
    error: str | None = None  # why it cannot be read: the image is a row with it, the others run


def items(source: str, model, cfg: dict) -> list[Item]:
    """The dataset's images: `random:N` (seeded, with chosen center classes, on a center-pixel
    model), `digits` (the held-out digits the digits CNN was not trained on), a folder of images
    (recursively), or an fsspec URL of a folder (`s3://bucket/images/`; `file://` for a local one)."""
    from heatkit.base import data

    height, width, channels = model.input_shape
    if source.startswith("random:"):
        count = _count(source)
        if data.ground_truth_mask(model.ground_truth, (height, width)) is None:
            raise UsageError(f"--dataset {source} makes center-pixel (or region) images; {model.name} is neither "
                             "a center-pixel nor a region model")
        centers = np.random.default_rng(cfg["seed"]).integers(0, model.num_classes, count)
        images = data.center_pixel_images(count, height, model.num_classes, cfg["seed"], centers, model.ground_truth)
        return [Item(f"random{i}", f"random:{i}", int(center), image) for i, (image, center) in
                enumerate(zip(images, centers))]
    if source == "digits":
        made = model.card.get("settings", {})
        if (height, width, channels) != (made.get("image_size"), made.get("image_size"), 1):
            raise UsageError(f"--dataset digits needs the digits CNN (models/digits.h5); {model.name} is another model")
        _, _, images, labels = data.digits(height, made["held_out"], made["seed"])
        return [Item(f"digit{i}", f"digits:{i}", int(label), image) for i, (image, label) in
                enumerate(zip(images, labels))]
    if "://" in source:
        return _url_items(source)
    folder = Path(source)
    if not folder.is_dir():
        raise UsageError(f"--dataset {source}: give a folder of images, an fsspec URL of one, random:N or digits")
    files = dataset_files(folder)
    if not files:
        raise UsageError(f"--dataset {source}: the folder and its subfolders hold no image files "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    labels = _csv_labels(folder / "labels.csv", {relative.as_posix() for relative in files}) \
        if (folder / "labels.csv").is_file() else {}
    return [Item(relative.with_suffix("").as_posix().replace("/", "_"), str(folder / relative),
                 labels.get(relative.as_posix(), relative.parts[0] if len(relative.parts) > 1 else None))
            for relative in files]


def image_bytes(item: Item) -> bytes:
    """A file's bytes, read where the call runs (the client, or a worker for a URL)."""
    if item.url:
        import fsspec

        with fsspec.open(item.source, "rb") as handle:
            return handle.read()
    return Path(item.source).read_bytes()


def pixels_of(item: Item, data: bytes | None, shape: tuple[int, int, int], cfg: dict,
              notes: list[str]) -> np.ndarray:
    """The image as the model's input pixels: generated ones as they are, a file decoded from its
    bytes (given, or read here); a UsageError where it cannot be."""
    if item.pixels is not None:
        return item.pixels
    return load_image(item.source, shape, cfg["max_image_pixels"], cfg["preprocess"]["resize"],
                      cfg["preprocess"]["max_stretch"], notes, data=data if data is not None else image_bytes(item))


def key_of(content: bytes, model_hash: str, what: str) -> str:
    """An image's file name: a hash of what it is (its file's bytes, or its pixels), the model's
    files and what changes its results."""
    return hashlib.sha256(content + model_hash.encode() + what.encode()).hexdigest()[:20]


def content_of(item: Item) -> bytes:
    """What an image's key hashes: a generated image's pixels, or a file's bytes (read, not
    decoded), so that a copy of the folder elsewhere resumes."""
    if item.pixels is not None:
        return np.ascontiguousarray(item.pixels).tobytes()
    return item.data if item.data is not None else image_bytes(item)


def mask_of(item: Item, cfg: dict) -> tuple[str, bytes] | None:
    """The image's localisation.mask file, read by the client for the worker: the setting's file,
    or in its folder the image's own (heatkit/metrics/localisation.py names them); None where
    there is none."""
    from heatkit.metrics.localisation import masks_in

    setting = cfg["localisation"]["mask"]
    if setting is None:
        return None
    path = Path(setting)
    if path.is_dir():
        path = masks_in(path, path.stat().st_mtime_ns).get(item.stem)
        if path is None:
            return None
    return path.name, path.read_bytes()


def dataset_files(folder: Path) -> list[Path]:
    """The image files below `folder`, relative to it, sorted: its own and every subfolder's, links
    followed but never twice into one folder (a link to a folder above makes no loop). Hidden
    files and folders are left out."""
    found, seen = [], set()
    for root, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found += [Path(root, name).relative_to(folder) for name in names
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _url_items(source: str) -> list[Item]:
    """The images below an fsspec URL (labels from the first subfolder), which every worker reads."""
    import fsspec

    try:
        filesystem, root = fsspec.core.url_to_fs(source)
        listed = filesystem.find(root, detail=True)
    except (ImportError, ValueError, OSError) as error:
        raise UsageError(f"--dataset {source}: cannot list it ({type(error).__name__}: {error}); give a folder, or "
                         "a URL fsspec reads (install its filesystem, as s3fs for s3://)") from error
    paths = sorted(path for path in listed if Path(path).suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UsageError(f"--dataset {source} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    protocol = source.partition("://")[0]
    found = []
    for path in paths:
        relative = Path(path).relative_to(root.rstrip("/"))
        found.append(Item(relative.with_suffix("").as_posix().replace("/", "_"), f"{protocol}://{path}",
                          relative.parts[0] if len(relative.parts) > 1 else None, url=True,
                          size=listed[path].get("size")))
    return found


def _count(source: str) -> int:
    count = source.partition(":")[2]
    if not count.isdigit() or int(count) < 1:
        raise UsageError(f"--dataset {source}: give random:N with N a positive number of images")
    return int(count)


def _csv_labels(path: Path, files: set[str]) -> dict[str, str]:
    """labels.csv's labels by file (relative to the folder): a header row `file,label`, then one row
    per image. A file named twice, a file not in the folder or a row without a label refuses it."""
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except UnicodeDecodeError as error:
        raise UsageError(f"{path} is not UTF-8 text (byte {error.start} is 0x{error.object[error.start]:02x}); save "
                         "it as UTF-8") from None
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror})") from None
    if not rows or [cell.strip().lower() for cell in rows[0][:2]] != ["file", "label"]:
        raise UsageError(f"{path} must begin with the header row file,label; its first row is "
                         f"{','.join(rows[0]) if rows else 'empty'}")
    labels, first, problems = {}, {}, []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        name, label = row[0].strip(), row[1].strip() if len(row) > 1 else ""
        if not label:
            problems.append(f"row {number} ({name}) has no label")
        elif name in first:
            problems.append(f"row {number} names {name} again (row {first[name]})")
        elif name not in files:
            problems.append(f"row {number} names {name}, which is no image of the folder")
        else:
            first[name], labels[name] = number, label
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise UsageError(f"{path}: {'; '.join(problems[:5])}{more}; fix those rows")
    return labels
