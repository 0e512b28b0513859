"""Settings: the defaults (the repository's settings.py, shipped inside the package as
heatkit/defaults.py) read into a plain dict, then in order the overrides of a settings.py in the
working folder or of --config FILE (only the values it names), of --set key=value or a dict from
the API; and validation.

Every key has a rule: the global ones below, each method dict's in its method's module. A value
that breaks its rule, or a key nobody reads, is a UsageError naming the fix.
"""
from __future__ import annotations

import ast
import copy
import difflib
import functools
import runpy
import types
from pathlib import Path

from heatkit.base.errors import UsageError
from heatkit.base.images import PRESETS
from heatkit.base.rules import Bool, Choice, Float, IndexOrKey, Int, ListOf, Optional, PixelValue, Text
from heatkit.methods._entry import SEED
from heatkit.methods.registry import BACKENDS, SETTINGS
from heatkit.metrics.registry import SETTINGS as METRIC_SETTINGS

DEFAULTS_FILE = Path(__file__).resolve().parents[1] / "defaults.py"  # in a checkout, a link to its settings.py
LOCAL_FILE = "settings.py"  # in the working folder: its values override the defaults

DIVERGING_CMAPS = ("RdBu_r", "bwr", "seismic", "coolwarm", "PuOr_r", "PiYG", "PRGn", "BrBG", "RdGy_r")

GLOBAL_RULES = {
    "image_size": Int(min=3, odd=True),
    "num_classes": Int(min=2, max=256),
    "model_path": Text(),
    "weights": Optional(Text()),
    "custom_objects": Optional(Text()),
    "center_pixel": {
        "alpha": Float(min=0.0, exclusive_min=True),
        "relu": Bool(),
        "weight_seed": SEED,
        "noise_weight_scale": Float(min=0.0),
        "verify_per_class": Int(min=1),
        "verify_seed": SEED,
        "region_side": Int(min=1),
        "two_pixels_sharpness": Float(min=0.0, exclusive_min=True),
    },
    "digits": {
        "image_size": Int(min=8),
        "channels": Int(min=1),
        "epochs": Int(min=1),
        "batch_size": Int(min=1),
        "learning_rate": Float(min=0.0, exclusive_min=True),
        "held_out": Float(min=0.0, max=1.0, exclusive_min=True),
        "min_accuracy": Float(min=0.0, max=1.0),
        "seed": SEED,
    },
    "sanity": {
        "steps": Choice(("block", "layer")),
        "initializer": Choice(("layer", "truncated_normal")),
        "std": Float(min=0.0, exclusive_min=True),
        "noise_levels": ListOf(Float(min=0.0)),
        "seed": SEED,
    },
    "growing_patch": {
        "sizes": Optional(ListOf(Int(min=1))),
        "position": Optional(ListOf(Int(min=0))),
        "fill": Float(min=0.0, max=1.0),
    },
    "evaluate_metrics": {
        "models": ListOf(Choice(("center_pixel", "region", "two_pixels_and", "two_pixels_xor"))),
        "image_size": Int(min=9, odd=True),
        "images": Int(min=1),
        "seeds": ListOf(SEED),
        "resamples": Int(min=1),
        "noisy_copies": Int(min=0),
    },
    "seed": SEED,
    "max_image_pixels": Int(min=1),
    "skip_bad_images": Bool(),
    "scheduler_timeout": Float(min=0.0, exclusive_min=True),
    "input_size": Optional(ListOf(Int(min=1), length=2)),
    "output": Optional(IndexOrKey()),
    "out_path": Text(),
    "backend": Choice(("auto", *BACKENDS)),
    "evaluate_with": Choice(("auto", "keras", "torch")),
    "device": Choice(("auto", "cpu", "cuda")),
    "preprocess": {
        "range": Choice(("unit", "byte")),
        "mean": Optional(ListOf(Float())),
        "std": Optional(ListOf(Float(min=0.0, exclusive_min=True))),
        "resize": Choice(("squash", "center_crop")),
        "max_stretch": Float(min=1.0),
        "channel_order": Choice(("rgb", "bgr")),
    },
    "perturbation": {
        "fast": Bool(),
        "memory_mb": Int(min=16, max=65536),
        "max_fast_fraction": Float(min=0.0, max=1.0),
        "min_flop_ratio": Float(min=0.0),
        "approximate": Float(min=0.0, max=1.0),
        "workers": Int(min=0, max=256),
        "warn_seconds": Float(min=0.0),
        "output": Choice(("probability", "logit")),
    },
    "faithfulness": {
        "curves": Choice((True, False, "auto")),
        "patch": Int(min=1),
        "regions_per_step": Int(min=0),
        "ranking": Choice(("signed", "absolute")),
        "baseline": Choice(("constant", "blur", "mean")),
        "fill": PixelValue(),
        "blur_sigma": Float(min=0.0, exclusive_min=True),
        "random_draws": Int(min=0, max=100),
        "seed": SEED,
    },
    "figure": {
        "crop": Int(min=1, odd=True),
        "crop_row": Choice(("auto", True, False)),
        "scale": Choice(("auto", "symmetric")),
        "column_width": Float(min=0.5, max=10.0),
        "maps_per_row": Int(min=0, max=64),
        "dpi": Int(min=30, max=600),
        "cmap": Choice(DIVERGING_CMAPS),
        "top_k": Int(min=1, max=20),
        "overlay": Choice(("auto", True, False)),
        "overlay_alpha": Float(min=0.0, max=1.0, exclusive_min=True),
        "max_images": Int(min=1, max=64),
    },
}

RULES = {**GLOBAL_RULES, **{name: settings.rules() for name, settings in {**SETTINGS, **METRIC_SETTINGS}.items()}}


def load(overrides: list[str | dict] | dict = ()) -> dict:
    """The default settings overridden by `overrides`, and validated: `KEY=VALUE` texts, as --set
    takes them, or dicts as {"ig.steps": 128} or {"ig": {"steps": 128}}. No file is read but the
    defaults: a command line adds the working folder's settings.py itself (local()), and the API
    runs no file it happens to find (a notebook started in a folder holding one ran it)."""
    found = DEFAULTS_FILE.stat() if DEFAULTS_FILE.is_file() else None
    return update(copied(_defaults(DEFAULTS_FILE, found and (found.st_mtime_ns, found.st_size))), overrides)


@functools.lru_cache(maxsize=1)
def _defaults(path: Path, version) -> dict:
    """The defaults file's settings, checked: read once while its path, time and size stay the same
    (running it took 3 ms of every call; load() copies what it returns)."""
    cfg = _read(path, "reinstall heatkit, or restore settings.py from the repository")
    _check_tree(cfg, RULES, origin=path.name)
    return cfg


def local() -> dict:
    """The values a settings.py in the working folder names (none where there is none, or where it
    is the defaults themselves, in a checkout), for the command lines: an overriding file sets only
    the values it names (`ig = dict(steps=128)` keeps ig's other defaults)."""
    path = Path.cwd() / LOCAL_FILE
    return read_file(path) if path.is_file() and not path.samefile(DEFAULTS_FILE) else {}


def read_file(path: Path) -> dict:
    """The values a settings file names, as {"ig.steps": 128}, checked against the rules."""
    cfg = _read(DEFAULTS_FILE, "reinstall heatkit, or restore settings.py from the repository")
    return _override_from(cfg, path)


def _override_from(cfg: dict, path: Path) -> dict:
    named = flatten(_read(path, "fix the file, or give another with --config"))
    for key, value in named.items():
        _override(cfg, key, value, origin=str(path))
    checked = flatten(cfg)
    return {key: checked[key] for key in named}


def _read(path: Path, fix: str) -> dict:
    """A settings file's values. A .json or .toml file is data, the safe form (nothing in it
    runs); a Python file runs, as settings.py does by design, and gives its top-level names (but
    modules and names that start with _). Whatever goes wrong is one line: a file that is not a
    regular file (a folder, a FIFO, which would block), an error its code raises (its traceback
    kept as the cause, -v shows it), or its exit()."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"the settings file {path} is {'not found' if not path.exists() else 'not a regular file'}; "
                         f"{fix}")
    if path.suffix in DATA_SUFFIXES:
        return _read_data(path, fix)
    try:
        values = runpy.run_path(str(path))
    except SystemExit as error:
        raise UsageError(f"the settings file {path} called exit({error.code if error.code is not None else ''}); "
                         f"{fix}") from None
    except Exception as error:  # its own code's error, in one line
        where = f" at line {error.lineno}" if isinstance(error, SyntaxError) else ""
        raise UsageError(f"cannot read the settings file {path}{where} ({type(error).__name__}: {error}); {fix}") \
            from error
    return {name: copy.deepcopy(value) for name, value in values.items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)}


DATA_SUFFIXES = (".json", ".toml")


def _read_data(path: Path, fix: str) -> dict:
    """A JSON or TOML settings file: the same names as settings.py, dicts for the groups."""
    import json
    import tomllib

    try:
        values = json.loads(path.read_text()) if path.suffix == ".json" else tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:  # json's and tomllib's parse errors are ValueErrors
        raise UsageError(f"cannot read the settings file {path} ({type(error).__name__}: {error}); {fix}") from error
    if not isinstance(values, dict):
        raise UsageError(f"the settings file {path} holds a {type(values).__name__}; give an object of settings, "
                         '{"ig": {"steps": 128}}')
    return values


def update(cfg: dict, overrides: list[str | dict] | dict) -> dict:
    """Validated settings with overrides (as load() takes them) applied and checked, as new dicts
    along each overridden key's path, sharing the rest with `cfg`: settings are replaced, never
    changed in place (a whole copy, several times a call, took a millisecond of each)."""
    cfg = dict(cfg)
    for item in [overrides] if isinstance(overrides, dict) else overrides:
        if isinstance(item, dict):
            for key, value in flatten(item).items():
                _override(cfg, key, value, origin="settings")
        else:
            key, value = parse_override(item)
            _override(cfg, key, value, origin="--set")
    return cfg


def copied(cfg):
    """Settings with their dicts and lists new and their values shared: values are replaced, never
    changed in place (copy.deepcopy's bookkeeping took three times as long)."""
    if isinstance(cfg, dict):
        return {name: copied(value) for name, value in cfg.items()}
    if isinstance(cfg, list):
        return [copied(value) for value in cfg]
    return cfg


def given(overrides: list[str | dict] | dict | None) -> set[str]:
    """The keys `overrides` (as load() takes them) set: what a call asks for, beside the defaults."""
    keys = set()
    for item in [overrides] if isinstance(overrides, dict) else overrides or ():
        keys |= set(flatten(item)) if isinstance(item, dict) else {parse_override(item)[0]}
    return keys


def flatten(cfg: dict, prefix: str = "") -> dict:
    """The settings as {"group.key": value}, the form --set takes."""
    flat = {}
    for name, value in cfg.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat


def parse_override(item: str) -> tuple[str, object]:
    """KEY=VALUE as the key and the value: a Python literal where the text is one (3, 0.2, None,
    True, 'x'), else the text itself."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--set takes KEY=VALUE, got {item!r}; for example --set sg.noise_scale=0.2")
    try:
        return key.strip(), ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return key.strip(), text.strip()


def _override(cfg: dict, key: str, value, origin: str) -> None:
    if key == "preprocess" and isinstance(value, str):
        if value not in PRESETS:
            raise UsageError(f"{origin}: preprocess {value!r} is no named preprocessing; choose from "
                             f"{', '.join(PRESETS)}, or set its keys (preprocess.mean=[...])")
        for name, preset in PRESETS[value].items():
            _override(cfg, f"preprocess.{name}", preset, origin)
        return
    *parents, name = key.split(".")
    rules, target = RULES, cfg
    for part in parents:
        if not isinstance(rules.get(part), dict):
            raise UsageError(_unknown(key, rules, parents[: parents.index(part)], origin))
        target[part] = dict(target[part])
        rules, target = rules[part], target[part]
    rule = rules.get(name)
    if isinstance(rule, dict):
        raise UsageError(f"{origin}: {key} is a group of settings ({', '.join(rule)}); set one of them, as "
                         f"{key}.{next(iter(rule))}=VALUE, or give a dict of them")
    if rule is None:
        raise UsageError(_unknown(key, rules, parents, origin))
    target[name] = _check_value(key, value, rule, origin)


def _check_tree(values: dict, rules: dict, origin: str, prefix: str = "") -> None:
    for name in sorted(set(values) | set(rules)):
        key = prefix + name
        if name not in rules:
            raise UsageError(f"{origin}: unknown setting {key!r}; remove it or add a rule for it")
        if name not in values:
            raise UsageError(f"{origin}: setting {key!r} is missing; reinstall heatkit, or restore settings.py "
                             "from the repository")
        if isinstance(rules[name], dict):
            if not isinstance(values[name], dict):
                raise UsageError(f"{origin}: {key!r} must be a dict of settings")
            _check_tree(values[name], rules[name], origin, key + ".")
        else:
            values[name] = _check_value(key, values[name], rules[name], origin)


def _check_value(key: str, value, rule, origin: str):
    problem = rule.check(value)
    if problem:
        raise UsageError(f"{origin}: {key} {problem}")
    return rule.normalize(value)


def _unknown(key: str, rules: dict, parents: list[str], origin: str) -> str:
    names = [".".join([*parents, name]) for name in rules]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known here: {', '.join(names)}"
    return f"{origin}: unknown setting {key!r}; {hint}"
