"""The registry: the one list of attribution methods.

Each entry gives the method's key, display name, paper, what it needs from the model,
the settings.py dict it reads and where its code lives. The CLI's choices and help and the
README's method table are generated from here. Importing this module imports no framework.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from enum import Enum

from core.errors import UsageError
from core.rules import Choice, ChoiceOrFolder, Float, Int, ListOf, Optional, Text

SEED = Int(min=0, max=2**32 - 1)


class Needs(Enum):
    """What a method asks of the model wrapper."""

    GRADIENTS = "gradients of the logits"
    CONV_LAYER = "a conv layer's activations and gradients"
    TORCH_MODULE = "the PyTorch module"
    PROBABILITIES = "batch probabilities only"


BACKENDS = ("keras", "torch")  # frameworks a gradient-family method can run on
ANY = "any"  # the backend of a method that only asks for probabilities


@dataclass(frozen=True)
class Paper:
    cite: str
    title: str
    url: str


@dataclass(frozen=True)
class Method:
    key: str
    name: str
    paper: Paper
    needs: Needs
    # backend ("keras", "torch", or ANY) -> "module:function" under methods/,
    # called as function(model, image, target, params)
    impl: dict[str, str]
    settings: str | None = None  # the settings.py dict this method reads

    @property
    def backends(self) -> tuple[str, ...]:
        return BACKENDS if ANY in self.impl else tuple(self.impl)

    def runs_on(self, backend: str, available: tuple[str, ...] = BACKENDS) -> str:
        """The framework that runs this method when `backend` is chosen and the model has the
        `available` ones: `backend` where both allow it, else one that does (Meaningful
        Perturbation always runs on PyTorch; a TorchScript model runs everything on PyTorch)."""
        if ANY in self.impl:
            return backend if backend in available else available[0]
        usable = [framework for framework in self.impl if framework in available] or list(self.impl)
        return backend if backend in usable else usable[0]

    def function(self, backend: str):
        module, function = self.impl.get(ANY, self.impl.get(backend, "")).partition(":")[::2]
        if not module:
            raise UsageError(f"method {self.key} has no {backend} implementation; it runs on {self.backends}")
        return getattr(importlib.import_module(f"methods.{module}"), function)


def _both(module: str, rule: str = "") -> dict[str, str]:
    """The Keras and PyTorch functions of a gradient-family module: `<rule>keras` and `<rule>torch`."""
    return {backend: f"{module}:{rule}{backend}" for backend in BACKENDS}


def _any(module: str) -> dict[str, str]:
    return {ANY: f"{module}:attribute"}


# Rules for every key of every method dict in settings.py (a test keeps the two in step).
SETTINGS_RULES = {
    "sg": {
        "augment_by_n": Int(min=1),
        "noise_scale": Float(min=0.0),
        "postprocess": Choice((None, "abs", "square")),
        "seed": SEED,
    },
    "ig": {
        "reference": Float(),
        "steps": Int(min=2),
        "rule": Choice(("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")),
    },
    "gradcam": {
        "layers": Optional(ListOf(Text())),
    },
    "deeplift": {
        "baseline": Float(),
    },
    "mp": {
        "mask_size": Int(min=1),
        "blur_sigma": Float(min=0.0, exclusive_min=True),
        "l1_coeff": Float(min=0.0),
        "tv_coeff": Float(min=0.0),
        "tv_beta": Float(min=1.0),
        "learning_rate": Float(min=0.0, exclusive_min=True),
        "iterations": Int(min=1),
        "optimizer": Choice(("adam", "sgd")),
        "mask_init": Choice(("ones", "random")),
        "noise": Float(min=0.0),
        "seed": SEED,
    },
    "lrp": {
        "epsilon": Float(min=0.0, exclusive_min=True),
        "alpha_beta_bias": Choice(("split", "whole")),
    },
    "occlusion": {
        "patch": Int(min=1),
        "stride": Int(min=1),
        "fill": Float(),
    },
    "pda": {
        "train_samples": Int(min=1),
        "levels": Int(min=2, max=256),
        "window": Int(min=1),
        "prior": ChoiceOrFolder(("uniform", "image")),
        "samples": Int(min=1),
        "seed": SEED,
    },
    "shapley": {
        "samples": Int(min=1),
        "baseline": Float(),
        "seed": SEED,
    },
    "lime": {
        "kernel_size": Float(min=0.0, exclusive_min=True),
        "max_dist": Float(min=0.0, exclusive_min=True),
        "ratio": Float(min=0.0, max=1.0),
        "num_samples": Int(min=2),
        "hide_color": Optional(Float()),
        "num_features": Int(min=1),
        "seed": SEED,
    },
    "shap": {
        "n_segments": Int(min=1),
        "compactness": Float(min=0.0, exclusive_min=True),
        "sigma": Float(min=0.0),
        "nsamples": Int(min=2),
        "background": Float(),
        "l1_reg": Float(min=0.0),
        "seed": SEED,
    },
    "rise": {
        "num_masks": Int(min=1),
        "cell_size": Int(min=1),
        "keep_probability": Float(min=0.0, max=1.0, exclusive_min=True),
        "batch_size": Int(min=1),
        "seed": SEED,
    },
}

_GRAD_CAM = Paper("Selvaraju et al. 2017", "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
                  "Localization", "https://arxiv.org/abs/1610.02391")
_LRP = Paper(
    "Bach et al. 2015",
    "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation",
    "https://doi.org/10.1371/journal.pone.0130140",
)

METHODS = [
    Method("grad", "Gradient", Paper(
        "Simonyan et al. 2014",
        "Deep Inside Convolutional Networks: Visualising Image Classification Models and Saliency Maps",
        "https://arxiv.org/abs/1312.6034"), Needs.GRADIENTS, _both("gradient")),
    Method("gb", "Guided Backprop", Paper(
        "Springenberg et al. 2015", "Striving for Simplicity: The All Convolutional Net",
        "https://arxiv.org/abs/1412.6806"), Needs.GRADIENTS, _both("guided_backprop")),
    Method("deconvnet", "DeConvNet", Paper(
        "Zeiler & Fergus 2014", "Visualizing and Understanding Convolutional Networks",
        "https://arxiv.org/abs/1311.2901"), Needs.GRADIENTS, _both("deconvnet")),
    Method("sg", "SmoothGrad", Paper(
        "Smilkov et al. 2017", "SmoothGrad: removing noise by adding noise",
        "https://arxiv.org/abs/1706.03825"), Needs.GRADIENTS, _both("smoothgrad"), "sg"),
    Method("inpgrad", "Input x Gradient", Paper(
        "Shrikumar et al. 2016",
        "Not Just a Black Box: Learning Important Features Through Propagating Activation Differences",
        "https://arxiv.org/abs/1605.01713"), Needs.GRADIENTS, _both("input_x_gradient")),
    Method("ig", "Integrated Gradients", Paper(
        "Sundararajan et al. 2017", "Axiomatic Attribution for Deep Networks",
        "https://arxiv.org/abs/1703.01365"), Needs.GRADIENTS, _both("integrated_gradients"), "ig"),
    Method("deeplift", "DeepLIFT", Paper(
        "Shrikumar et al. 2017", "Learning Important Features Through Propagating Activation Differences",
        "https://arxiv.org/abs/1704.02685"), Needs.GRADIENTS, _both("deeplift"), "deeplift"),
    Method("cam", "CAM", Paper(
        "Zhou et al. 2016", "Learning Deep Features for Discriminative Localization",
        "https://arxiv.org/abs/1512.04150"), Needs.CONV_LAYER, _both("cam")),
    Method("gradcam", "Grad-CAM", _GRAD_CAM, Needs.CONV_LAYER, _both("grad_cam", "gradcam_"), "gradcam"),
    Method("gradcampp", "Grad-CAM++", Paper(
        "Chattopadhyay et al. 2018", "Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks",
        "https://arxiv.org/abs/1710.11063"), Needs.CONV_LAYER, _both("grad_cam", "gradcampp_"), "gradcam"),
    Method("guided_gradcam", "Guided Grad-CAM", _GRAD_CAM, Needs.CONV_LAYER, _both("guided_grad_cam"), "gradcam"),
    Method("lrp.z", "LRP-Z", _LRP, Needs.GRADIENTS, _both("lrp", "z_")),
    Method("lrp.epsilon", "LRP-Epsilon", _LRP, Needs.GRADIENTS, _both("lrp", "epsilon_"), "lrp"),
    Method("lrp.alpha1beta0", "LRP-Alpha1Beta0", _LRP, Needs.GRADIENTS, _both("lrp", "alpha1beta0_"), "lrp"),
    Method("lrp.alpha2beta1", "LRP-Alpha2Beta1", _LRP, Needs.GRADIENTS, _both("lrp", "alpha2beta1_"), "lrp"),
]

_PAPERS = {
    "occlusion": Paper("Zeiler & Fergus 2014", "Visualizing and Understanding Convolutional Networks",
                       "https://arxiv.org/abs/1311.2901"),
    "pda": Paper("Zintgraf et al. 2017",
                 "Visualizing Deep Neural Network Decisions: Prediction Difference Analysis",
                 "https://arxiv.org/abs/1702.04595"),
    "shapley": Paper("Castro et al. 2009; Strumbelj & Kononenko 2010",
                     "Polynomial calculation of the Shapley value based on sampling",
                     "https://doi.org/10.1016/j.cor.2008.04.004"),
    "lime": Paper("Ribeiro et al. 2016", '"Why Should I Trust You?": Explaining the Predictions of Any Classifier',
                  "https://arxiv.org/abs/1602.04938"),
    "shap": Paper("Lundberg & Lee 2017", "A Unified Approach to Interpreting Model Predictions",
                  "https://arxiv.org/abs/1705.07874"),
    "mp": Paper("Fong & Vedaldi 2017", "Interpretable Explanations of Black Boxes by Meaningful Perturbation",
                "https://arxiv.org/abs/1704.03296"),
    "rise": Paper("Petsiuk et al. 2018", "RISE: Randomized Input Sampling for Explanation of Black-box Models",
                  "https://arxiv.org/abs/1806.07421"),
}

METHODS += [
    Method("occlusion", "Occlusion", _PAPERS["occlusion"], Needs.PROBABILITIES, _any("occlusion"), "occlusion"),
    Method("pda", "PDA", _PAPERS["pda"], Needs.PROBABILITIES, _any("pda"), "pda"),
    Method("shapley", "Shapley Sampling", _PAPERS["shapley"], Needs.PROBABILITIES, _any("shapley"), "shapley"),
    Method("lime", "LIME", _PAPERS["lime"], Needs.PROBABILITIES, _any("lime"), "lime"),
    Method("shap", "KernelSHAP", _PAPERS["shap"], Needs.PROBABILITIES, _any("kernel_shap"), "shap"),
    Method("rise", "RISE", _PAPERS["rise"], Needs.PROBABILITIES, _any("rise"), "rise"),
    Method("mp", "Meaningful Perturbation", _PAPERS["mp"], Needs.TORCH_MODULE,
           {"torch": "meaningful_perturbation:attribute"}, "mp"),
]

REGISTRY = {method.key: method for method in METHODS}


def label(key: str) -> str:
    """The display name of a map key: the method's, with the layer of a `key@layer` map."""
    base, _, layer = key.partition("@")
    return REGISTRY[base].name + (f" @{layer}" if layer else "")


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
