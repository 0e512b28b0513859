"""Python files of the user's, run only with trust: a PyTorch model's factory (-mp net.py:factory)
and a Keras model's custom layers (--custom-objects layers.py)."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

from heatkit.base.errors import UsageError
from heatkit.model.files import first_line


def run_file(path: Path, what: str) -> types.ModuleType:
    """The module that running the file at `path` makes, its folder on the import path meanwhile
    (so that it imports its neighbours, as `python net.py` would). Its errors are one line that
    starts with `what` (the flag that named the file), the error kept as the cause (-v shows it)."""
    folder = str(path.parent.resolve())
    spec = importlib.util.spec_from_file_location(f"heatkit_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's code: its error, in one line
        raise UsageError(f"{what}: running {path} failed ({type(error).__name__}: {first_line(error)})") from error
    finally:
        sys.path.remove(folder)
    return module
