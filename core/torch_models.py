"""PyTorch twins of the test models (imports torch: load it only on the PyTorch path).

Each module returns logits; the model wrapper applies the softmax. Inputs are NCHW.
"""
from __future__ import annotations

from core import frameworks
from core.center_pixel import CenterPixelWeights

torch = frameworks.torch()


class Dense(torch.nn.Linear):
    """nn.Linear that adds its bias after the matmul, as Keras' Dense does.

    nn.Linear's fused addmm accumulates the products onto the bias; with the center-pixel
    model's ~1e10 bias that rounding moves probabilities by ~1e-8, this order by ~1e-12.
    """

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight) + self.bias


class CenterPixelNet(torch.nn.Sequential):
    """Flatten -> Dense (+ ReLU), float64: the twin of keras_models.center_pixel."""

    def __init__(self, image_size: int, num_classes: int, relu: bool):
        layers = [torch.nn.Flatten(), Dense(image_size * image_size, num_classes, dtype=torch.float64)]
        super().__init__(*layers, *([torch.nn.ReLU()] if relu else []))

    @classmethod
    def from_weights(cls, weights: CenterPixelWeights) -> "CenterPixelNet":
        net = cls(weights.image_size, weights.bias.size, weights.relu)
        with torch.no_grad():
            net[1].weight.copy_(torch.from_numpy(weights.kernel.T))
            net[1].bias.copy_(torch.from_numpy(weights.bias))
        return net.eval()


def sequential(spec: list[dict], dtype: str = "float64") -> torch.nn.Sequential:
    """A twin of a Keras chain model (core/twins.py), from the spec in its card."""
    from core.twins import build

    return build(spec, dtype)


ARCHITECTURES = {"center_pixel": CenterPixelNet, "sequential": sequential}
