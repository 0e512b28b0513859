"""Meaningful Perturbation (Fong & Vedaldi 2017) on the PyTorch twin.

A mask m of mask_size x mask_size cells, upsampled bilinearly to the image, blends the image
(m = 1) with a Gaussian-blurred copy (m = 0). Gradient steps minimize

    l1_coeff * mean|1 - m| + tv_coeff * TV_beta(m) + p(target | blended image)

with m kept in [0, 1]: the smallest, smoothest deletion that removes the class. The map is
1 - m, upsampled, so higher means more important. The mask, the blurred and the perturbed image
(as pixels in [0, 1]) and the loss curves are returned as extras (the run saves them under mp/).
"""
import numpy as np

from heatkit.base import frameworks
from heatkit.base.contract import WithExtras
from heatkit.base.progress import progress_bar
from heatkit.base.run_state import current
from heatkit.base.rules import Choice, Float, Int
from heatkit.methods._entry import GRADIENT_PASSES, SEED, Method, Needs, Paper, Setting, Settings


def attribute(model, image, target, params):
    from skimage.filters import gaussian

    torch = frameworks.torch()
    functional = torch.nn.functional
    net = model.torch
    generator = torch.Generator().manual_seed(params["seed"])
    height, width = image.shape[:2]
    original = net.tensor(image[None])
    blurred = net.tensor(gaussian(image, sigma=params["blur_sigma"], channel_axis=-1, preserve_range=True)[None])

    # The mask is optimized in float32 whatever the model's type: in float16 Adam's epsilon (1e-8) is 0,
    # and a cell whose gradient is 0 (one the model never reads) became 0 / 0, NaN everywhere
    size = (1, 1, params["mask_size"], params["mask_size"])
    start = torch.ones(size) if params["mask_init"] == "ones" else torch.rand(size, generator=generator)
    mask = start.to(original.device).requires_grad_()
    optimizer = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[params["optimizer"]]([mask], lr=params["learning_rate"])

    def perturbed(cells):
        upsampled = functional.interpolate(cells, size=(height, width), mode="bilinear", align_corners=False)
        blend = upsampled.to(original.dtype)
        return original * blend + blurred * (1 - blend), upsampled

    curves = {name: np.empty(params["iterations"]) for name in ("loss", "l1", "tv", "probability")}
    with progress_bar(params["iterations"], "mp", "step", current().options.progress) as bar:
        for step in range(params["iterations"]):
            blended, _ = perturbed(mask)
            if params["noise"] > 0:
                noise = torch.randn(blended.shape, generator=generator, dtype=blended.dtype)
                blended = blended + params["noise"] * noise.to(blended.device)
            probability = net.probabilities_of(net.forward(blended))[0, target]
            l1 = params["l1_coeff"] * (1 - mask).abs().mean()
            tv = params["tv_coeff"] * total_variation(mask[0, 0], params["tv_beta"])
            loss = l1 + tv + probability
            # the mask's gradient alone: loss.backward() would also fill the weights' (a 100 MB
            # outer product per step on the 227 x 227 model)
            (mask.grad,) = torch.autograd.grad(loss, [mask])
            optimizer.step()
            with torch.no_grad():
                mask.clamp_(0, 1)
            for name, value in (("loss", loss), ("l1", l1), ("tv", tv), ("probability", probability)):
                curves[name][step] = value.item()
            bar.update()

    with torch.no_grad():
        blended, upsampled = perturbed(mask)
    extras = {"mask": net.array(upsampled[0, 0]), "blurred": _pixels(model, blurred), "perturbed": _pixels(model, blended),
              **curves}
    return WithExtras(net.array(1 - upsampled[0, 0]).astype(np.float32), extras)


def _pixels(model, batch) -> np.ndarray:
    """A batch's first image as pixels in [0, 1], for drawing (the model's input space is not)."""
    return model.preprocess.inverse(model.torch.array(batch[0]).transpose(1, 2, 0))


def total_variation(mask, beta: float):
    """Mean |difference of neighbours|^beta, down and across (Fong & Vedaldi's TV norm)."""
    return ((mask[1:, :] - mask[:-1, :]).abs() ** beta).mean() + ((mask[:, 1:] - mask[:, :-1]).abs() ** beta).mean()


SETTINGS = Settings("mp", "mp: Meaningful Perturbation (Fong & Vedaldi 2017) on the PyTorch twin. A low-resolution mask "
                          "m, upsampled to the image, keeps the image where m = 1 and shows a blurred copy where m = 0; "
                          "it is optimized to lower the explained class's probability with a small, smooth deletion: "
                          "loss = l1_coeff * mean|1 - m| + tv_coeff * TV_beta(m) + p(class). The map is 1 - m.", {
    "mask_size": Setting(29, Int(min=1), "mask cells per side; odd, so that one cell is centered on the center pixel"),
    "blur_sigma": Setting(10.0, Float(min=0.0, exclusive_min=True), "Gaussian blur of the deletion image, in pixels of "
                                                                    "the input"),
    "l1_coeff": Setting(0.01, Float(min=0.0)),
    "tv_coeff": Setting(0.2, Float(min=0.0)),
    "tv_beta": Setting(3.0, Float(min=1.0), "exponent of the total-variation term"),
    "learning_rate": Setting(0.1, Float(min=0.0, exclusive_min=True)),
    "iterations": Setting(300, Int(min=1)),
    "optimizer": Setting("adam", Choice(("adam", "sgd")), "adam or sgd"),
    "mask_init": Setting("ones", Choice(("ones", "random")), "ones (nothing deleted) or random (seeded uniform)"),
    "noise": Setting(0.0, Float(min=0.0), "std of seeded Gaussian noise added to the perturbed image at each step"),
    "seed": Setting(0, SEED),
})
METHOD = Method("mp", "Meaningful Perturbation", Paper(
    "Fong & Vedaldi 2017", "Interpretable Explanations of Black Boxes by Meaningful Perturbation",
    "https://arxiv.org/abs/1704.03296"), Needs.TORCH_MODULE, {"torch": attribute}, SETTINGS,
    cheaper="lower mp.iterations", passes=lambda model, params: GRADIENT_PASSES * params["iterations"])
