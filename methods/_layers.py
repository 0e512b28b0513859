"""A layer's activations, and the target logit's gradient with respect to them, on either
framework, as (H', W', K) numpy arrays for one image. Layers are named by their Keras names;
a twin's modules carry the same names (core/twins.py)."""
from __future__ import annotations

import numpy as np

from core import frameworks
from core.errors import NotApplicable, UsageError


def conv_layers(model) -> list[str]:
    """Names of the model's convolutional layers, input to output."""
    spec = model.card.get("arguments", {}).get("spec")
    if spec is not None:
        return [entry["name"] for entry in spec if entry["layer"] == "conv2d"]
    tf = frameworks.tensorflow()
    return [layer.name for layer in model.keras.model.layers if isinstance(layer, tf.keras.layers.Conv2D)]


def target_layers(model, chosen: list[str] | None) -> list[str]:
    """The layers a CAM method explains: those chosen in settings, or the last conv layer."""
    names = conv_layers(model)
    if not names:
        raise NotApplicable("the model has no convolutional layer")
    for name in chosen or []:
        if name not in names:
            raise UsageError(f"layer {name!r} is not a conv layer of this model; choose from {', '.join(names)}")
    return chosen or names[-1:]


def keras(model, names: list[str], image: np.ndarray, target: int) -> list[tuple[np.ndarray, np.ndarray]]:
    tf = frameworks.tensorflow()
    net = model.keras.logits_model
    outputs = [model.keras.model.get_layer(name).output for name in names]
    gradients = tf.gradients(net.output[:, target], outputs)
    session = tf.compat.v1.keras.backend.get_session()
    values = session.run(outputs + gradients, {net.inputs[0]: image[None]})
    return [(values[i][0], values[len(names) + i][0]) for i in range(len(names))]


def torch(model, names: list[str], image: np.ndarray, target: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from core.twins import layer_modules

    torch = frameworks.torch()
    net = model.torch
    captured = {}
    hooks = [layer_modules(net.module, name)[-1].register_forward_hook(
        lambda module, inputs, output, name=name: captured.__setitem__(name, output)) for name in names]
    try:
        logits = net.module(net.tensor(image[None]).requires_grad_())
    finally:
        for hook in hooks:
            hook.remove()
    gradients = torch.autograd.grad(logits[0, target], [captured[name] for name in names])
    return [(captured[name][0].detach().numpy().transpose(1, 2, 0), gradient[0].numpy().transpose(1, 2, 0))
            for name, gradient in zip(names, gradients)]


def upsample(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A layer-resolution map at the input's resolution (bilinear), as the contract's float32."""
    from skimage.transform import resize

    return resize(cam, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True).astype(np.float32)
