"""The run record (run.json): what was run, with which settings, seeds and package versions."""
from __future__ import annotations

import hashlib
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from core import config

PACKAGES = ("numpy", "tensorflow", "keras", "innvestigate", "torch", "captum", "shap", "lime",
            "scikit-image", "scikit-learn", "scipy", "matplotlib", "pillow", "tqdm")


def run_record(argv: list[str], cfg: dict, keys: list[str], model_path: Path, image_paths: list[Path],
               incomplete: bool) -> dict:
    return {
        "command": [Path(sys.argv[0]).name, *argv],
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "methods": keys,
        "model": {"path": str(model_path), "sha256": _sha256(model_path)},
        "images": [{"path": str(path), "sha256": _sha256(path)} for path in image_paths],  # none: a random image
        "seeds": seeds(cfg),
        "settings": cfg,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in PACKAGES},
        "incomplete": incomplete,  # Ctrl-C stopped the run; what finished is here
    }


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
