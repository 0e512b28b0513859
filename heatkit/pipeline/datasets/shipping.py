"""The model as it travels to Dask workers that see none of the client's files: its files' bytes,
sent once to each worker, written there into a folder of the worker's own and loaded from it
after their hash is checked against the client's. A worker never reads the path the user typed,
so a stale copy at that path on a worker cannot give a map."""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from heatkit.base.errors import UsageError


@dataclass(frozen=True)
class Bundle:
    """A model's files by their names in the worker's folder, and how to name the model there: a
    file's name, net.py:factory, or a zoo name such as torchvision:resnet50."""

    source: str
    files: dict[str, bytes]
    weights: str | None = None  # the name of the --weights file among `files`
    custom_objects: str | None = None  # the name of the --custom-objects file

    @property
    def fingerprint(self) -> str:
        """A hash of everything the worker builds the model from."""
        digest = hashlib.sha256(self.source.encode())
        for name in sorted(self.files):
            digest.update(f"\0{name}\0{len(self.files[name])}\0".encode())
            digest.update(self.files[name])
        for name in (self.weights, self.custom_objects):
            digest.update(f"\0{name}".encode())
        return digest.hexdigest()


def bundle_of(model) -> Bundle:
    """The files a loaded model was read from: a model file (with its card, its twin and an ONNX
    file's external weights), net.py:factory (with the Python files beside it, which it may
    import, and its weights), or a zoo name (with its weights); and --custom-objects."""
    files: dict[str, bytes] = {}
    if model.named is not None:
        source = model.named.source
    elif model.path is None:  # net.py:factory
        code, _, factory = model.source.rpartition(":")
        code = Path(code)
        files.update({path.name: path.read_bytes() for path in sorted(code.parent.glob("*.py"))})
        source = f"{code.name}:{factory}"
    else:
        source = model.path.name
        files[model.path.name] = model.path.read_bytes()
        for beside in (model.path.with_suffix(".json"), model.path.with_suffix(".pt"), model.path.with_suffix(".h5")):
            if beside != model.path and beside.is_file():
                files[beside.name] = beside.read_bytes()
        if model.path.suffix == ".onnx":
            files.update(_external_data(model.path))
    weights = custom_objects = None
    if model.weights is not None:
        weights = f"weights{model.weights.suffix}"
        files[weights] = model.weights.read_bytes()
    if model.custom_objects is not None:
        custom_objects = f"custom_objects{model.custom_objects.suffix}"
        files[custom_objects] = model.custom_objects.read_bytes()
    return Bundle(source, files, weights, custom_objects)


def unpack(bundle: Bundle, fingerprint: str, worker: str) -> tuple[tempfile.TemporaryDirectory, str, dict]:
    """The bundle's files written into a new folder of this process's (kept while the returned
    handle lives), after checking they are the client's: the folder, the model's source in it and
    the settings that name files in it."""
    from heatkit.model import zoo

    if bundle.fingerprint != fingerprint:
        raise UsageError(f"Dask worker {worker} holds another model than the client's (its files hash to "
                         f"{bundle.fingerprint[:12]}, the client's to {fingerprint[:12]}); restart that worker, or "
                         "rerun, which sends the model again")
    folder = tempfile.TemporaryDirectory(prefix="heatkit-model-")
    root = Path(folder.name)
    for name, data in bundle.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    files = {"weights": bundle.weights, "custom_objects": bundle.custom_objects}
    source = bundle.source if zoo.is_named(bundle.source) else str(root / bundle.source)
    return folder, source, {key: str(root / name) for key, name in files.items() if name is not None}


def _external_data(path: Path) -> dict[str, bytes]:
    """The files an ONNX model keeps its weights in, by their paths relative to its folder (its
    loader has checked that each lies inside it)."""
    import onnx
    from onnx import external_data_helper

    from heatkit.model.onnx_file import tensors

    model = onnx.load(str(path), load_external_data=False)
    locations = {dict((entry.key, entry.value) for entry in tensor.external_data)["location"]
                 for tensor in tensors(model.graph) if external_data_helper.uses_external_data(tensor)}
    return {location: (path.parent / location).read_bytes() for location in sorted(locations)}
