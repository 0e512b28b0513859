"""Weights files, read without running code: a .safetensors file, or a PyTorch state dict read with
torch.load(weights_only=True), as researchers save them: a checkpoint dict holding one, or the
keys of a model wrapped in nn.DataParallel."""
from __future__ import annotations

import pickle
from pathlib import Path

from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.model.files import first_line

CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights")


def read(path: Path, name: str) -> tuple[dict, list[str]]:
    """The state dict in `path` for the model `name`, and notes that say how it was found (a
    checkpoint's entry, a dropped `module.` prefix)."""
    torch = frameworks.torch()
    if not path.is_file():
        raise UsageError(f"weights file {path} not found; give the state dict of {name}")
    from safetensors import SafetensorError  # a pickle renamed .safetensors, a header that lies of its length

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, SafetensorError) as error:
        raise UsageError(f"cannot load {path} as the state dict of {name} ({first_line(error)}); give the file "
                         "torch.save(model.state_dict(), path) or safetensors' save_file wrote for this model") \
            from error
    notes = []

    def is_state(value) -> bool:
        return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())

    if isinstance(state, dict) and not is_state(state):
        entry = next((key for key in CHECKPOINT_KEYS if is_state(state.get(key))), None)
        if entry is None:
            raise UsageError(f"{path} holds a dict of {', '.join(map(repr, list(state)[:6]))}, none of them a state "
                             f"dict of tensors; save model.state_dict() of {name}")
        state = state[entry]
        notes.append(f"{path} is a checkpoint: its {entry!r} entry is the state dict")
    if not is_state(state):
        raise UsageError(f"{path} holds a {type(state).__name__}, not a state dict; save model.state_dict() of {name}")
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
        notes.append(f"{path}'s keys begin with 'module.' (nn.DataParallel): the prefix is dropped")
    return state, notes


def load(module, state: dict, path: Path, name: str) -> None:
    """`state` loaded into `module`; keys that do not fit are named."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [f"{key} {tuple(state[key].shape)} for {tuple(value.shape)}" for key, value in expected.items()
              if key in state and state[key].shape != value.shape]
    found = (("missing", missing), ("unexpected", unexpected), ("shapes differ", shapes))
    problems = [f"{label}: {', '.join(keys[:3])}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
                for label, keys in found if keys]
    if problems:
        raise UsageError(f"{path} is not the state dict of {name} ({'; '.join(problems)}); give the file "
                         "torch.save(model.state_dict(), path) wrote for this model")
    module.load_state_dict(state)
