"""The registry: the one list of attribution methods, in the order the CLI, the figure and the
README show them. Each method's module declares its entry (key, display name, paper, what it
needs from the model, its functions per framework) and the settings it reads; the CLI's choices
and help, settings.py's method dicts and the README's method table are generated from here.
Importing this module imports no framework.
"""
from __future__ import annotations

import difflib

from heatkit.base.errors import UsageError
from heatkit.methods import (
    ablation_cam,
    attention,
    cam,
    deconvnet,
    deeplift,
    eigen_cam,
    grad_cam,
    gradient,
    gradient_shap,
    guided_backprop,
    guided_grad_cam,
    input_x_gradient,
    integrated_gradients,
    kernel_shap,
    lime,
    lrp,
    lrp_composites,
    meaningful_perturbation,
    occlusion,
    pda,
    rise,
    score_cam,
    shapley,
    smoothgrad,
)
from heatkit.methods._entry import ANY, BACKENDS, Method, Needs, Settings

__all__ = ["ANY", "BACKENDS", "METHODS", "REGISTRY", "SETTINGS", "Needs", "comparable", "expand", "groups", "label"]

METHODS: list[Method] = [
    gradient.METHOD, guided_backprop.METHOD, deconvnet.METHOD, smoothgrad.METHOD, input_x_gradient.METHOD,
    integrated_gradients.METHOD, gradient_shap.METHOD, deeplift.METHOD, cam.METHOD, *grad_cam.METHODS,
    *eigen_cam.METHODS, score_cam.METHOD, ablation_cam.METHOD, guided_grad_cam.METHOD, *lrp.METHODS,
    *lrp_composites.METHODS, *attention.METHODS, occlusion.METHOD, pda.METHOD, shapley.METHOD, lime.METHOD,
    kernel_shap.METHOD, rise.METHOD, meaningful_perturbation.METHOD,
]
REGISTRY = {method.key: method for method in METHODS}
# the settings dicts the methods read, by name, in the order of the methods that first read them
SETTINGS: dict[str, Settings] = {m.settings.name: m.settings for m in METHODS if m.settings}


def label(key: str) -> str:
    """The display name of a map key: the method's, with the layer of a `key@layer` map."""
    base, _, layer = key.partition("@")
    return REGISTRY[base].name + (f" @{layer}" if layer else "")


def comparable() -> list[str]:
    """The methods that run on both frameworks, which --compare-backends compares."""
    return [m.key for m in METHODS if set(m.impl) == set(BACKENDS)]


def groups() -> dict[str, list[str]]:
    """Names that stand for several keys: 'all', and each dotted family ('lrp' for lrp.*)."""
    families: dict[str, list[str]] = {}
    for key in REGISTRY:
        if "." in key:
            families.setdefault(key.split(".")[0], []).append(key)
    return {"all": list(REGISTRY), **families}


def expand(names: list[str]) -> list[str]:
    """Method keys for the names given on the command line, in order, without repeats."""
    known = groups()
    keys: list[str] = []
    for name in names:
        if name not in REGISTRY and name not in known:
            valid = [*REGISTRY, *known]
            close = difflib.get_close_matches(name.lower(), valid, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"unknown method {name!r}{hint}; choose from {', '.join(valid)}")
        keys += [key for key in known.get(name, [name]) if key not in keys]
    return keys
