"""Layers given as objects in a call's settings, as a notebook has them ({"gradcam.layers":
[net.layer4]}), turned into the names the settings take: a torch module's path in the model, a
Keras layer's name."""
from __future__ import annotations

from heatkit.base.errors import UsageError
from heatkit.model import Model
from heatkit.pipeline import config


def named(settings: dict | list[str] | None, model: object) -> dict | list[str]:
    """The settings with each layer object in them (a module of the torch.nn.Module given, a Keras
    layer), as in {"gradcam.layers": [net.layer3, net.layer4]}, replaced by its name in the model."""
    if not isinstance(settings, dict):
        return settings or {}
    flat = config.flatten(settings)
    if not any(isinstance(value, list) and any(_is_layer(item) for item in value) for value in flat.values()):
        return settings
    modules = _module_names(model)
    found = {}
    for key, value in flat.items():
        if isinstance(value, list) and any(_is_layer(item) for item in value):
            value = [_layer_name(item, modules, key) if _is_layer(item) else item for item in value]
        found[key] = value
    return found


def _is_layer(item) -> bool:
    return not isinstance(item, (str, int, float, bool, type(None), list, tuple, dict))


def _module_names(model) -> dict[int, str]:
    """The module path of each submodule of a PyTorch model given as an object, by id."""
    if isinstance(model, Model):
        model = model.torch.module if "torch" in model.frameworks else None
    is_module = any(cls.__module__ == "torch.nn.modules.module" for cls in type(model).__mro__)
    return {id(module): name for name, module in model.named_modules() if name} if is_module else {}


def _layer_name(item, modules: dict[int, str], key: str) -> str:
    """A torch module's path in the model, or a Keras layer's name."""
    if id(item) in modules:
        return modules[id(item)]
    if type(item).__module__.startswith(("keras", "tensorflow")):
        return item.name
    raise UsageError(f"{key}: a {type(item).__name__} given is not a layer of the model explained; give the "
                     "model's own layers (with the model as an object), or their names")
