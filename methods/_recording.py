"""PyTorch forward passes kept with their autograd graph: a pass that records modules' outputs,
and the run's prediction pass, kept for the method that runs next.

A method whose map is the target logit's gradient at the input (Gradient, Input x Gradient) or at
layers' outputs (the CAM family) needs a forward pass of the image with its graph, and the run
makes that very pass to find the predicted class. Where such a method runs first, the run makes
its prediction pass with the graph and the outputs of the modules the method reads
(prediction_pass), and the method starts from it (graph_pass): a one-image Gradient call then
makes one forward pass where it made two. Nothing else may start from that pass: a method that
changes the backward pass with hooks (Guided Backprop, LRP) needs them in place during the
forward pass.
"""
from __future__ import annotations

import numpy as np

from heatkit.base import frameworks
from heatkit.base.engine import in_gradient_batches
from heatkit.base.errors import NotApplicable
from heatkit.base.run_state import KeptPass, current
from heatkit.model import torch_head

NO_HOOKS = ("a layer's activations are read with a forward hook, which a TorchScript module, run in C++, never "
            "calls (but in a Sequential); give the model as Python code or as a Keras model")


def at_input(model, params) -> set:
    """The modules read from the prediction pass by a method that needs only the input's gradient: none."""
    return set()


def prediction_pass(model, batch: np.ndarray, modules: set) -> tuple[np.ndarray, np.ndarray]:
    """The logits and probabilities of an NHWC batch, from a pass that keeps its graph and the
    outputs of `modules`, in the run's state for the method that runs next."""
    torch = frameworks.torch()
    kept = current().prediction = _pass(model, batch, modules)
    with torch.no_grad():
        return model.torch.array(kept.logits), model.torch.array(model.torch.probabilities_of(kept.logits))


def graph_pass(model, batch: np.ndarray, modules: set = frozenset()) -> KeptPass:
    """A forward pass of an NHWC batch with its graph and the outputs of `modules`: the run's
    prediction pass where it was kept for these images and modules, else a pass of its own."""
    return current().take_pass(model, batch, modules) or _pass(model, batch, modules)


def _pass(model, batch: np.ndarray, modules: set) -> KeptPass:
    torch = frameworks.torch()
    net = model.torch
    inputs = net.tensor(batch).requires_grad_()
    with torch.enable_grad():
        logits, outputs = run_recording(net, inputs, modules) if modules else (net.forward(inputs), {})
    return KeptPass(model, batch, inputs, logits, outputs)


def input_gradients(model, batch: np.ndarray, targets) -> np.ndarray:
    """d logit_target / d input of each image of an NHWC batch, as an NHWC float32 (or float64)
    array, in the engine's batches of gradient passes; `targets` one class, or one per image."""
    torch = frameworks.torch()

    def gradients(images, chosen):
        found = graph_pass(model, images)
        rows = torch.arange(len(images), device=found.logits.device)
        logits = found.logits[rows, torch.tensor(chosen.tolist(), device=found.logits.device)]
        return model.torch.array(torch.autograd.grad(logits.sum(), found.inputs)[0])
    return in_gradient_batches(model, batch, targets, gradients)


def run_recording(net, inputs, modules: set | None = None):
    """The logits of `inputs`, and the output of each module in `modules` (all where None), by module,
    in the order they ran: caught by forward hooks, or, in a TorchScript Sequential, by running its
    modules one after another."""
    outputs = {}
    if not net.scripted:
        hooks = [module.register_forward_hook(lambda module, _, output: outputs.__setitem__(module, output))
                 for module in net.module.modules() if modules is None or module in modules]
        try:
            return net.forward(inputs), outputs
        finally:
            for hook in hooks:
                hook.remove()
    hidden = inputs
    sequence = sequence_of(net.module)
    for module in sequence[:-1] if net.cut.kind == "last child" else sequence:  # without the final activation
        hidden = module(hidden)
        if modules is None or module in modules:
            outputs[module] = hidden
    return torch_head.logits(net.head, hidden), outputs


def sequence_of(module) -> list:
    """The modules a TorchScript Sequential applies in order, nested Sequentials opened; other
    TorchScript modules run their forward in C++, where no hook is called."""
    if not _is_sequential(module) or not list(module.children()):
        raise NotApplicable(NO_HOOKS)
    return [leaf for child in module.children() for leaf in (sequence_of(child) if _is_sequential(child) else [child])]


def _is_sequential(module) -> bool:
    return getattr(module, "original_name", type(module).__name__) == "Sequential"
