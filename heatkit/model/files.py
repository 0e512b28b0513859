"""Model files read without running their code: what a file holds, and a Keras file's Lambda
layers, found from its JSON config before Keras deserializes anything."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from heatkit.base.errors import UsageError


def refuse_code_layers(path: Path) -> None:
    """UsageError if the Keras file holds a Lambda layer: loading one runs the Python code stored in
    the file. Reads the file's JSON config only (a SavedModel folder's Keras metadata)."""
    if path.is_dir():
        if b'"class_name": "Lambda"' in (path / "keras_metadata.pb").read_bytes():
            raise UsageError(f"{path} holds a Lambda layer, whose Python code would run on loading; give "
                             "--trust-model if you trust the folder")
        return
    if '"class_name": "Lambda"' in json.dumps(keras_config(path)):
        raise UsageError(f"{path} holds a Lambda layer, whose Python code would run on loading; "
                         "give --trust-model if you trust the file")


def keras_config(path: Path) -> dict:
    """The JSON config of a Keras .h5 or .keras file, read without building anything."""
    import h5py

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                text = archive.read("config.json").decode()
        else:
            with h5py.File(path, "r") as handle:
                text = handle.attrs.get("model_config", "")
                text = text.decode() if isinstance(text, bytes) else text
        return json.loads(text)
    except (OSError, KeyError, ValueError) as error:
        raise UsageError(f"cannot read {path} as a Keras model ({first_line(error)}); "
                         "give a Keras .h5 or .keras classifier") from None


def layer_classes(config: dict) -> set[str]:
    """The class names of a Keras model config's layers, a nested model's included."""
    names = set()
    for layer in config.get("config", {}).get("layers", []):
        names |= {layer["class_name"], *layer_classes(layer)}
    return names


def refuse_keras_3(path: Path) -> None:
    """UsageError for a .keras file saved by Keras 3, which Keras 2.14 (innvestigate's) cannot read."""
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        try:
            version = json.loads(archive.read("metadata.json")).get("keras_version", "")
        except (KeyError, ValueError):
            return
    if version.startswith("3"):
        raise UsageError(f"{path} was saved by Keras {version}, which the toolkit's Keras 2.14 cannot read; export "
                         f"it to ONNX in Keras 3, model.export('{path.stem}.onnx', format='onnx'), and give "
                         f"-mp {path.stem}.onnx")


def is_keras_saved_model(path: Path) -> bool:
    """A SavedModel folder that Keras wrote (and can load back as layers)."""
    return path.is_dir() and (path / "saved_model.pb").is_file() and (path / "keras_metadata.pb").is_file()


def archive_kind(path: Path) -> str | None:
    """What a PyTorch zip archive holds: "torchscript" (it has code), "pickle" (torch.save's
    objects, a state dict among them), or None when the file is no such archive."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = [name.split("/", 1)[-1] for name in archive.namelist()]
    return "torchscript" if "constants.pkl" in names else "pickle" if "data.pkl" in names else None


def first_line(error: Exception) -> str:
    """An exception's message cut to one line of at most 200 characters, for a one-line error."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
