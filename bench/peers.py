"""Whole calls against the peers users would call instead, in one process, on torchvision's
ResNet-18 at 224 x 224 (seeded, untrained, float32, 2 threads), the model loaded once:

    .venv/bin/python bench/peers.py     # about three minutes on 2 cores

- Saliency, Integrated Gradients (64 steps) and Grad-CAM (at layer4, upsampled) on one image, and
  Saliency on 16 images in one call, against captum's Saliency, IntegratedGradients and
  LayerGradCam, each including the forward pass that finds the predicted class;
- LRP-epsilon and LRP-alpha1beta0 against zennit called directly with the same rules (its
  ResNetCanonizer, Norm on additions and average pooling, Pass on activations);
- DeepLIFT in forward passes of the network;
- Shapley value sampling over 16 x 16 patches against captum's ShapleyValueSampling with that
  feature mask, and the two maps' difference given the same permutations;
- single-pixel occlusion by full passes on a TorchScript 64 x 64 CNN (no graph to window) against
  captum's Occlusion at its best perturbations_per_eval.
heatkit's calls leave the faithfulness curves out, which captum and zennit do not compute. Each
call runs once to warm up, then the best of five (of one for the long ones) is kept: on a shared
machine single timings of a 0.2 s call vary by a third. The ratio is the peer's seconds over
ours: above 1, we are faster.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import heatkit  # noqa: E402
from heatkit.base import frameworks  # noqa: E402

SETTINGS = {"faithfulness.curves": False}


def best(run, repeats: int = 5) -> float:
    """The shortest of `repeats` runs, after one to warm up."""
    run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def ours(model, images, keys, settings=None):
    return lambda: heatkit.explain(model, images, keys, settings={**SETTINGS, **(settings or {})}, progress=False)


def main() -> None:
    import torchvision
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

    torch = frameworks.torch()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    rng = np.random.default_rng(0)
    image, batch = rng.random((224, 224, 3)), [rng.random((224, 224, 3)) for _ in range(16)]
    model = heatkit.load_model(net, settings=SETTINGS)
    tensor = torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32)
    tensors = torch.tensor(np.stack(batch).transpose(0, 3, 1, 2), dtype=torch.float32)

    def predicted(inputs):
        with torch.no_grad():
            return net(inputs).argmax(1)

    def grad_cam():
        found = LayerGradCam(net, net.layer4).attribute(tensor, target=int(predicted(tensor)))
        return LayerAttribution.interpolate(found, (224, 224), "bilinear")

    rows = [
        ("Saliency, one image", best(ours(model, image, ["grad"])), "captum",
         best(lambda: Saliency(net).attribute(tensor.clone().requires_grad_(), target=int(predicted(tensor)))),
         1 / 1.3),
        ("IG, 64 steps", best(ours(model, image, ["ig"], {"ig.steps": 64}), 1), "captum",
         best(lambda: IntegratedGradients(net).attribute(tensor, target=int(predicted(tensor)), n_steps=64), 1),
         1 / 1.3),
        ("Grad-CAM at layer4", best(ours(model, image, ["gradcam"], {"gradcam.layers": ["layer4"]})), "captum",
         best(grad_cam), 1 / 1.3),
        ("Saliency, 16 images in one call", best(ours(model, batch, ["grad"]), 1), "captum",
         best(lambda: Saliency(net).attribute(tensors.clone().requires_grad_(), target=predicted(tensors)), 1), 0.5),
    ]
    for key, rule in (("lrp.epsilon", "epsilon"), ("lrp.alpha1beta0", "alpha1beta0")):
        rows.append((key.replace("lrp.", "LRP-"), best(ours(model, image, [key])), "zennit",
                     best(zennit_call(torch, net, tensor, rule, predicted)), 1 / 1.2))
    shapley_timing, shapley_agreement = shapley_row(torch, net, model, image, tensor, predicted)
    rows.append(shapley_timing)
    forward = best(lambda: predicted(tensor), 10)
    deeplift = min(ours(model, image, ["deeplift"])().seconds["deeplift"] for _ in range(4))  # the method's own
    rows.append(full_passes_row(torch, Occlusion))

    print("| what | heatkit | peer | peer's | ratio (peer ÷ ours) | target |")
    print("|---|---|---|---|---|---|")
    for what, mine, peer, theirs, target in rows:
        print(f"| {what} | {mine:.2f} s | {peer} | {theirs:.2f} s | {theirs / mine:.2f} | ≥ {target:.2f} |")
    print(f"\nDeepLIFT, the method's own time: {deeplift:.3f} s, {deeplift / forward:.1f} forward passes of "
          f"{forward * 1000:.0f} ms (target: at most 4)")
    print(shapley_agreement)


def zennit_call(torch, net, tensor, rule: str, predicted):
    """zennit on the torchvision ResNet, as its documentation composes it."""
    import zennit.composites
    import zennit.layer
    import zennit.rules
    import zennit.torchvision
    import zennit.types

    layer_rule = zennit.rules.Epsilon(1e-7) if rule == "epsilon" else zennit.rules.AlphaBeta(1.0, 0.0)
    composite = zennit.composites.LayerMapComposite(
        [(zennit.types.Activation, zennit.rules.Pass()), (zennit.types.AvgPool, zennit.rules.Norm()),
         (zennit.layer.Sum, zennit.rules.Norm()), (zennit.types.Convolution, layer_rule),
         (zennit.types.Linear, layer_rule)],
        canonizers=[zennit.torchvision.ResNetCanonizer()])

    def run():
        target = int(predicted(tensor))
        inputs = tensor.clone().requires_grad_()
        with composite.context(net) as modified:
            output = modified(inputs)
            seed = torch.zeros_like(output)
            seed[0, target] = output[0, target]
            return torch.autograd.grad(output, inputs, grad_outputs=seed)
    return run


def shapley_row(torch, net, model, image, tensor, predicted):
    """Shapley value sampling over the 196 squares of 16 x 16 pixels, two permutations, against captum's
    ShapleyValueSampling with that feature mask at its best perturbations_per_eval; and the largest
    difference of the two maps when captum is given our permutations."""
    from captum.attr import ShapleyValueSampling

    from heatkit.methods import shapley

    mask = torch.from_numpy(np.arange(224)[:, None] // 16 * 14 + np.arange(224)[None] // 16)[None, None]
    sampling = ShapleyValueSampling(lambda batch: torch.softmax(net(batch), dim=1))
    settings = {"shapley.mask": "patch:16", "shapley.samples": 2}

    def captum(per_eval):
        with torch.no_grad():
            return sampling.attribute(tensor, baselines=0.0, target=int(predicted(tensor)), feature_mask=mask,
                                      n_samples=2, perturbations_per_eval=per_eval)
    theirs = min(best(lambda: captum(per_eval), 1) for per_eval in (8, 32))
    mine = best(ours(model, image, ["shapley"], settings), 1)
    orders = shapley.permutations(196, {"samples": 2, "seed": 0})
    sampling.permutation_generator = lambda *_: (order.tolist() for order in orders)
    same_orders = captum(32)[0, 0].numpy()
    difference = np.abs(ours(model, image, ["shapley"], settings)().maps["shapley"] - same_orders).max()
    row = ("Shapley sampling, 16x16 patches, 2 permutations", mine, "captum", theirs, 1.0)
    return row, f"Shapley sampling's map and captum's, given the same permutations: largest difference {difference:.1e}"


def full_passes_row(torch, Occlusion):
    """Single-pixel occlusion of a scripted 64 x 64 CNN: full passes on both sides."""
    nn = torch.nn
    torch.manual_seed(0)
    net = torch.jit.script(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(16 * 32 * 32, 10)).eval())
    image = np.random.default_rng(1).random((64, 64, 3))
    model = heatkit.load_model(net, settings={"input_size": [64, 64]})
    tensor = torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32)
    with torch.no_grad():
        target = int(net(tensor).argmax())
    occlusion = Occlusion(lambda batch: torch.softmax(net(batch), dim=1))

    def captum(per_eval):
        with torch.no_grad():
            return occlusion.attribute(tensor, sliding_window_shapes=(3, 1, 1), strides=(3, 1, 1), baselines=0.0,
                                       target=target, perturbations_per_eval=per_eval)
    theirs = min(best(lambda: captum(per_eval), 1) for per_eval in (16, 64, 256))
    mine = best(ours(model, image, ["occlusion"], {"occlusion.patch": 1, "occlusion.stride": 1}), 1)
    return "single-pixel occlusion, TorchScript 64x64 CNN (full passes)", mine, "captum", theirs, 1.0


if __name__ == "__main__":
    main()
