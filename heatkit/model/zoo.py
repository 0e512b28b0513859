"""Models by name from the two zoos researchers use: `torchvision:resnet50`, `timm:vit_small_patch16_224`,
with constructor arguments where an architecture takes them (`timm:vit_tiny_patch16_224(img_size=32)`).

The architecture is built without downloading anything (weights=None, pretrained=False), and
the user's weights file is loaded safely: a .safetensors file, or a PyTorch state dict read with
weights_only=True. The number of classes is read from the weights (the classifier's rows), so a
network fine-tuned on 10 classes needs no argument. Each family says how its images are
prepared: torchvision's classifiers take the ImageNet mean and std at 224 x 224; a timm model
takes its own `pretrained_cfg` (mean, std, input size).
"""
from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from pathlib import Path

from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.base.images import IMAGENET
from heatkit.model import weights as weights_file
from heatkit.model.files import first_line

FAMILIES = ("torchvision", "timm")


@dataclass(frozen=True)
class Named:
    """A model named `family:architecture(arguments)`."""

    family: str
    architecture: str
    arguments: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.arguments.items())
        return f"{self.family}:{self.architecture}" + (f"({arguments})" if arguments else "")


def is_named(source) -> bool:
    return isinstance(source, str) and source.partition(":")[0].strip() in FAMILIES and ":" in source


def parse(source: str) -> Named:
    """`family:name` or `family:name(key=value, ...)`, the values Python literals; spaces around
    the parts are dropped."""
    family, _, text = source.partition(":")
    family = family.strip()
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        if isinstance(tree, ast.Name):
            return Named(family, tree.id)
        if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and not tree.args:
            return Named(family, tree.func.id, {word.arg: ast.literal_eval(word.value) for word in tree.keywords})
    except (SyntaxError, ValueError):
        pass
    raise UsageError(f"-mp {source}: give {family}:ARCHITECTURE, or {family}:ARCHITECTURE(key=value, ...) with "
                     "literal values, e.g. timm:vit_tiny_patch16_224(img_size=32)")


def family_of(module) -> str | None:
    """The zoo a module object comes from, by the package that defines its class."""
    family = type(module).__module__.split(".")[0]
    return family if family in FAMILIES else None


def imagenet_names() -> list[str]:
    """ImageNet's 1000 class names, as torchvision ships them with its weights' metadata (read
    offline: nothing is downloaded)."""
    import torchvision

    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def build(named: Named, weights: Path | None):
    """The module, built without a download, its weights loaded from `weights` where given; the
    number of classes taken from the weights; and what reading them said."""
    state, notes = weights_file.read(weights, named.source) if weights is not None else (None, [])
    arguments = dict(named.arguments)
    module = _construct(named, arguments)
    if state is not None and "num_classes" not in arguments:
        classes = _classes_in(module, state)
        if classes is not None and classes != _classes_of(module):
            module = _construct(named, {**arguments, "num_classes": classes})
    if state is not None:
        weights_file.load(module, state, weights, named.source)
    return module.eval(), notes


def preprocessing(named: Named, module) -> dict:
    """The family's input size [H, W] and per-channel mean and std."""
    if named.family == "timm":
        config = getattr(module, "pretrained_cfg", {}) or {}
        size = named.arguments.get("img_size") or config.get("input_size", (3, 224, 224))[1:]
        mean, std = config.get("mean", IMAGENET["mean"]), config.get("std", IMAGENET["std"])
    else:
        size = named.arguments.get("image_size") or 224
        mean, std = IMAGENET["mean"], IMAGENET["std"]
    size = [size, size] if isinstance(size, int) else list(size)
    return {"input_size": size, "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def _construct(named: Named, arguments: dict):
    try:
        if named.family == "torchvision":
            import torchvision

            names = torchvision.models.list_models(module=torchvision.models)
            _known(named, names)
            return torchvision.models.get_model(named.architecture, weights=None, **arguments)
        import timm

        _known(named, timm.list_models())
        return timm.create_model(named.architecture, pretrained=False, **arguments)
    except UsageError:
        raise
    except Exception as error:  # the library's, for arguments the architecture does not take
        raise UsageError(f"-mp {named.source}: building it failed ({type(error).__name__}: {first_line(error)})") \
            from error


def _known(named: Named, names: list[str]) -> None:
    if named.architecture not in names:
        close = difflib.get_close_matches(named.architecture, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"{named.family} has {len(names)} classifiers"
        raise UsageError(f"-mp {named.source}: {named.family} has no classifier {named.architecture!r}; {hint}")


def _classifier(module):
    """The last Linear layer by module path: the classifier of every torchvision and timm network."""
    torch = frameworks.torch()
    found = [(name, layer) for name, layer in module.named_modules() if isinstance(layer, torch.nn.Linear)]
    return found[-1] if found else (None, None)


def _classes_of(module) -> int | None:
    _, layer = _classifier(module)
    return layer.out_features if layer is not None else None


def _classes_in(module, state: dict) -> int | None:
    """The classes the weights' classifier has (its weight's rows), where the weights hold it."""
    name, _ = _classifier(module)
    weight = state.get(f"{name}.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None
