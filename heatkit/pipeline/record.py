"""The run record (run.json): what was run, with which settings, seeds and package versions."""
from __future__ import annotations

import hashlib
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from heatkit.pipeline import config

# every package that reads a model or computes a map or a score
PACKAGES = ("numpy", "tensorflow", "keras", "innvestigate", "torch", "torchvision", "timm", "captum", "zennit",
            "onnx", "onnx2torch", "onnxruntime", "safetensors", "shap", "lime", "scikit-image", "scikit-learn", "scipy",
            "matplotlib", "pillow", "tqdm")


def now() -> str:
    """The time, as run.json records when a run started."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_record(command: list[str] | None, cfg: dict, request: dict, incomplete: bool) -> dict:
    """The record of a run: the command line (when there was one), the request that repeats it (see
    heatkit.api.rerun), the files it read with their SHA-256, every setting and seed, and versions."""
    return {
        "command": [Path(sys.argv[0]).name, *command] if command is not None else None,
        "started": request.get("started") or now(),  # when the call began, not when its record was written
        "request": request,
        "methods": request["methods"],
        "model": {**_model(request["model"], request["model_object"], cfg["weights"]), "dtype": request["dtype"],
                  "head": request["head"], "preprocess": request["preprocess"]},  # a named model's: its family's
        "images": [_file(path) for path in request["images"] or []],  # none: a random image, or arrays given
        "seeds": seeds(cfg),
        "settings": cfg,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in ("heatkit", *PACKAGES)},
        "incomplete": incomplete,  # Ctrl-C stopped the run; what finished is here
    }


def _file(path: str) -> dict:
    return {"path": path, "sha256": _sha256(Path(path))}


def _model(source: str | None, name: str, weights: str | None) -> dict:
    """The model's file, or its code or name and its weights, with their SHA-256; an object has
    only a name."""
    from heatkit.model.zoo import is_named

    if source is None:
        return {"object": name}
    if is_named(source):
        return {"name": source, "weights": _file(weights) if weights else None}
    if ".py:" not in source:
        return _file(source)
    return {"code": source, "sha256": _sha256(Path(source.rpartition(":")[0])),
            "weights": _file(weights) if weights else None}  # None: the code's random initial weights


def seeds(cfg: dict) -> dict[str, int]:
    """Every seed in the settings, by its --set key."""
    return {key: value for key, value in config.flatten(cfg).items() if "seed" in key.rpartition(".")[2]}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
