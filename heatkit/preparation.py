"""What every API call does before its work: the model loaded or checked, the methods named, the
layers checked, the run's state put in force, and the record of the request (heatkit/api.py's
runs and heatkit/studies.py's experiments)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from heatkit.base.errors import UsageError
from heatkit.base.progress import say
from heatkit.base.run_state import RunState, running
from heatkit.methods.registry import REGISTRY, comparable, expand
from heatkit.model import Model
from heatkit.pipeline import config

Source = str | Path | object  # a model file, a tf.keras.Model, a torch.nn.Module, or a Model
Images = str | Path | np.ndarray | list | object | None  # files, pixel arrays or torch tensors (pipeline/inputs.py)


def model_for(source: Source, cfg: dict, trust: bool, progress: bool, settings=None) -> tuple[Model, dict]:
    """The model, set up with the run's preprocessing, and the settings as it has them: a Model
    given keeps what it was loaded with, and refuses another value `settings` asks for. "loading"
    is said first (a ResNet-50 from a file takes a minute or more of silence otherwise)."""
    if isinstance(source, Model):
        source.refuse_other(cfg, config.given(settings))
        return source.configure(cfg), config.update(cfg, source.loaded_with())
    source = cfg["model_path"] if source is None else source
    say(f"loading {source if isinstance(source, (str, Path)) else f'the {type(source).__name__} given'}", progress)
    return Model.from_settings(source, cfg, trust), cfg


@contextmanager
def running_on(model: Model, cfg: dict, progress: bool):
    """The run's state in force (heatkit/base/run_state.py), and yielded; a PyTorch module the
    caller built in eval mode while it runs."""
    with running(RunState.of(cfg, progress)) as state, model.evaluating():
        yield state


def method_keys(methods: str | list[str], compare_backends: bool = False) -> list[str]:
    names = [methods] if isinstance(methods, str) else list(methods)
    keys = expand(names)
    if not compare_backends:
        return keys
    both = comparable()  # a group ('all', 'lrp') gives its members that run on both; a method named alone must
    # run on both
    single = [name for name in names if name in REGISTRY and name not in both]
    if single:
        raise UsageError(f"--compare-backends compares methods that run on both frameworks; drop {', '.join(single)}")
    return [key for key in keys if key in both]


def check_layers(model: Model, keys: list[str], cfg: dict, backends: list[str]) -> None:
    """gradcam.layers checked right after the model loads, before any method runs (a wrong name was
    said after the methods before it had run)."""
    from heatkit.methods import _layers

    if cfg["gradcam"]["layers"] and any(REGISTRY[key].settings and REGISTRY[key].settings.name == "gradcam"
                                        for key in keys):
        for backend in backends:
            _layers.target_layers(model, cfg["gradcam"]["layers"], REGISTRY["gradcam"].runs_on(backend, model.frameworks))


def request_record(function: str, model: Model, cfg: dict, files: list[Path], keys: list[str], **options) -> dict:
    """What run.json records of a call: enough to repeat it, where the model and images are files;
    and each pixel value the methods read (a reference, a fill) as the model received it."""
    pixel_values = {f"{method.settings.name}.{name}": model.input_value(cfg[method.settings.name][name]).tolist()
                    for method in (REGISTRY[key] for key in keys) if method.settings
                    for name in method.settings.pixel_values() if cfg[method.settings.name][name] is not None}
    return {"function": function, "model": model.source, "model_object": model.name, "dtype": model.dtype,
            "head": model.head.record(), "preprocess": asdict(model.preprocess),
            "images": [str(path) for path in files] or None, "methods": keys,
            "pixel_values_in_model_input": pixel_values, **options}
