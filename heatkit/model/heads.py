"""What a classifier's output is, and how the toolkit reads its logits and probabilities.

Models end in many ways: logits; a softmax written as a layer, an activation string or function,
or a call in `forward`; a log-softmax; one sigmoid unit (a binary classifier) or several
(multi-label); a tuple or dict of outputs. Each framework's wrapper finds the head from what the
model computes (the last operation of its graph, or the last call of its forward) and checks it
on probe inputs; on every model the toolkit then explains:

    logits         the class scores below the final activation: its input where the graph allows,
                   else the activation inverted (log p for a softmax, log(p / (1 - p)) for a sigmoid)
    probabilities  the softmax of the logits; for sigmoid heads, each logit's sigmoid

A binary classifier with one output unit, a sigmoid or its logit s, is two classes (1 - p, p):
class 1's logit is s and class 0's is -s, each class's log-odds, so that p = sigmoid(s) for class
1 and 1 - p = sigmoid(-s) for class 0. A multi-label head explains each label as its own yes/no:
its probability sigmoid(s_c), its logit s_c. A softmax over one class is 1 whatever the input, and
is refused. Softmax and sigmoid run in float32 at least, whatever the model's own precision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from heatkit.base.errors import UsageError

Activation = Literal["none", "softmax", "log_softmax", "sigmoid"]


@dataclass(frozen=True)
class Head:
    activation: Activation = "none"  # the model's final activation
    units: int = 2  # the model's output units
    below: bool = True  # logits are the final activation's input; False: its output, inverted
    output: str = ""  # which element of a tuple or dict output is the classifier's: "", "[0]", "['logits']"
    found: str = "graph"  # "graph": the activation was found in what the model computes; "values": from its outputs

    @property
    def binary(self) -> bool:
        return self.units == 1

    @property
    def sigmoid(self) -> bool:
        """Whether probabilities are each logit's sigmoid (binary and multi-label heads)."""
        return self.binary or self.activation == "sigmoid"

    @property
    def classes(self) -> int:
        return 2 if self.binary else self.units

    def record(self) -> dict:
        """What run.json says of the head."""
        return {"activation": self.activation, "units": self.units, "classes": self.classes,
                "logits": "below the final activation" if self.below or self.activation == "none" else
                "the final activation inverted", "output": self.output or None, "explains": self.explains()}

    def explains(self) -> str:
        if self.binary:
            return "binary: class 1 is p = sigmoid(s), class 0 is 1 - p; their logits are s and -s"
        if self.sigmoid:
            return "multi-label: each class is its own yes/no, p_c = sigmoid(s_c), explained through its logit s_c"
        return "softmax over the classes, explained through their logits"

    def notes(self, name: str) -> list[str]:
        """What a user should know of how the toolkit reads this model's output."""
        notes = []
        if self.output:
            notes.append(f"{name} returns several outputs; the classifier's is output{self.output} (the `output` "
                         "setting chooses another)")
        if self.binary:
            unit = "a sigmoid" if self.activation == "sigmoid" else "a logit s (no sigmoid)"
            notes.append(f"{name} has one output unit, {unit}: it is explained as two classes, 0 (1 - p) and 1 "
                         "(p = sigmoid(s)), whose logits are -s and s")
        elif self.sigmoid:
            notes.append(f"{name} ends in {self.units} sigmoid units (multi-label): each class is explained as its own "
                         "yes/no, p_c = sigmoid(s_c), and the probabilities need not sum to 1")
        if self.activation != "none" and not self.below:
            inverse = {"softmax": "log p (the log-probability, not the logit)", "log_softmax": "log p",
                       "sigmoid": "log(p / (1 - p))"}[self.activation]
            notes.append(f"{name} ends in a {self.activation.replace('_', '-')} that cannot be cut off its graph: the "
                         f"gradient family explains {inverse}")
        if self.found == "values":
            notes.append(f"{name}'s outputs are rows of non-negative numbers summing to 1, read as a softmax's")
        return notes


def activation_of_values(outputs: np.ndarray) -> str:
    """The final activation that a model's outputs on probe inputs show, where its graph did not:
    rows of non-negative numbers that sum to 1 are a softmax's, rows of exponentials that do are a
    log-softmax's. One unit whose graph shows no sigmoid is a logit, whatever its values on a few
    probes (a Dense(1) logit that happened to stay in [0, 1] on them was read as a sigmoid, and its
    probabilities were NaN elsewhere); one unit of 1 everywhere is a softmax over one class."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if not np.isfinite(outputs).all():
        return "none"  # NaN weights: each map reports it
    tolerance = 1e-3 * outputs.shape[-1]  # float16 rounding of each probability, summed
    if outputs.shape[-1] == 1:
        return "softmax" if np.all(outputs == 1) else "none"
    if (outputs >= 0).all() and np.allclose(outputs.sum(-1), 1, atol=tolerance):
        return "softmax"
    if (outputs <= 0).all() and np.allclose(np.exp(outputs).sum(-1), 1, atol=tolerance):
        return "log_softmax"
    return "none"


def check_classes(head: Head, name: str) -> None:
    """A softmax over one class is 1 for every input: nothing a perturbation or a score sees changes."""
    if head.binary and head.activation in ("softmax", "log_softmax"):
        raise UsageError(f"{name} has one class, and its {head.activation.replace('_', '-')} is "
                         f"{'1' if head.activation == 'softmax' else '0'} for every input: every probability-based "
                         "map and score would be constant; give the model without its final softmax (its logit) or "
                         "with one output per class")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def probabilities(head: Head, logits: np.ndarray) -> np.ndarray:
    """The probabilities of numpy logits, as the frameworks' wrappers compute them (a reference)."""
    return 1 / (1 + np.exp(-logits)) if head.sigmoid else softmax(logits)


def probabilities_of_output(head: Head, output: np.ndarray) -> np.ndarray:
    """The probabilities of a model's raw output (its final activation included), as the
    frameworks' wrappers compute them from its logits: for a check against another runtime."""
    output = np.asarray(output, dtype=np.float64)
    if head.activation == "log_softmax":
        output = np.exp(output)
    if head.activation == "none":
        logits = np.concatenate([-output, output], axis=-1) if head.binary else output
        return probabilities(head, logits)
    return np.concatenate([1 - output, output], axis=-1) if head.binary else output
