"""A layer's activations, and the target logit's gradient with respect to them, on either
framework, as (H', W', K) numpy arrays for one image. Layers are named by their Keras names;
a twin's modules carry the same names (heatkit/model/twins.py)."""
from __future__ import annotations

import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable, UsageError


def conv_layers(model) -> list[str]:
    """Names of the model's convolutional layers, input to output: Keras layer names, or for a
    TorchScript model its modules' names."""
    spec = model.card.get("twin", {}).get("spec")
    if spec is not None:
        return [entry["name"] for entry in spec if entry["layer"] == "conv2d"]
    if "keras" in model.frameworks:
        tf = frameworks.tensorflow()
        return [layer.name for layer in model.keras.model.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    return [name for name, module in model.torch.module.named_modules() if _kind(module) == "Conv2d"]


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
    values = model.keras.once(("layers", *names), lambda: _keras_layers(model.keras, names))(image[None], target)
    return [(values[i][0], values[len(names) + i][0]) for i in range(len(names))]


def _keras_layers(net, names: list[str]):
    """A function of (batch, class) giving the named layers' outputs, then the class logit's
    gradients with respect to them."""
    tf = frameworks.tensorflow()
    target = tf.compat.v1.placeholder(tf.int32, ())
    outputs = [net.model.get_layer(name).output for name in names]
    gradients = tf.gradients(net.logits_model.output[:, target], outputs)
    return net.session.make_callable(outputs + gradients, feed_list=[net.model.inputs[0], target])


def torch(model, names: list[str], image: np.ndarray, target: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Runs the model's modules in order (TorchScript modules take no hooks), keeping the
    outputs of the named layers."""
    from heatkit.model.twins import layer_modules

    torch = frameworks.torch()
    net = model.torch
    modules = dict(net.module.named_modules())
    targets = {id(layer_modules(net.module, name)[-1] if "twin" in model.card else modules[name]):
               name for name in names}
    captured, hidden = {}, net.tensor(image[None]).requires_grad_()
    for module in _sequence(net.module):
        hidden = module(hidden)
        if id(module) in targets:
            captured[targets[id(module)]] = hidden
    logits = torch.log(hidden) if net.softmax_inside else hidden
    gradients = torch.autograd.grad(logits[0, target], [captured[name] for name in names])
    return [(net.array(captured[name][0]).transpose(1, 2, 0), net.array(gradient[0]).transpose(1, 2, 0))
            for name, gradient in zip(names, gradients)]


def _kind(module) -> str:
    return getattr(module, "original_name", type(module).__name__)


def _sequence(module) -> list:
    """The modules a sequential model applies in order, nested Sequentials opened."""
    if _kind(module) != "Sequential":
        return [module]
    if not list(module.children()):
        raise NotApplicable("layer methods on PyTorch need a model made of nn.Sequential containers")
    return [leaf for child in module.children() for leaf in _sequence(child)]


def upsample(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A layer-resolution map at the input's resolution (bilinear), as the contract's float32."""
    from skimage.transform import resize

    return resize(cam, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True).astype(np.float32)
