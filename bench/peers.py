"""Whole calls against the peers users would call instead, in one process, on torchvision's ResNet-18
and ResNet-50 at 224 x 224 (seeded, untrained, float32, 2 threads), each model loaded once:

    .venv/bin/python bench/peers.py                      # about 40 minutes on 2 cores
    .venv/bin/python bench/peers.py --models resnet18 --only occlusion224 --repeats 1

Each row runs both calls once to warm up, then `--repeats` times each, interleaved (ours, the
peer's, ours, ...), so that a shared machine's load falls on both alike; it prints the minimum and
the median of each, their ratios (the peer's seconds over ours: above 1, we are faster), and how
far the maps differ where the algorithm is the same (the largest difference over the peer's
largest value; "draws" where the two draw their samples differently). Every call is whole, as a
user makes it: the peer's includes the forward pass that finds the predicted class; ours are
heatkit.explain on the same tensor (or, in the batch row, on a list of 16 arrays of pixels, as
users pass them), with the faithfulness curves off, which no peer computes, and otherwise the
settings users get.

Peers: captum (Saliency, IntegratedGradients, NoiseTunnel, GradientShap, DeepLift, LayerGradCam,
Occlusion, ShapleyValueSampling, KernelShap), zennit (LRP-epsilon, EpsilonPlusFlat),
pytorch-grad-cam (ScoreCAM, AblationCAM), lime (LimeImageExplainer).
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import heatkit  # noqa: E402
from heatkit.base import frameworks  # noqa: E402

SIDE = 224
SIZES = (32, 64, 224, 448)  # the input sizes of the occlusion and Shapley rows
PER_EVAL = 64  # captum's perturbations a batch in the occlusion and Shapley rows (its default is 1)
CURVES_OFF = {"faithfulness.curves": False}
DRAWS = "draws"  # the two sample differently: maps not compared
# the rows whose peers make hundreds of passes, on the smaller network only
PERTURBATION = {"scorecam", "ablationcam", "shap", "lime", *(f"{method}{side}" for method in ("occlusion", "shapley")
                                                              for side in SIZES)}


def interleaved(ours: Callable, theirs: Callable, repeats: int):
    """(our seconds, their seconds, our result, their result): a warm-up call of each, then
    `repeats` of each, alternating."""
    results = ours(), theirs()
    mine, peer = [], []
    for _ in range(repeats):
        for call, seconds in ((ours, mine), (theirs, peer)):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
    return mine, peer, *results


def difference(mine: np.ndarray, theirs: np.ndarray) -> str:
    mine, theirs = np.asarray(mine, np.float64), np.asarray(theirs, np.float64)
    return f"{np.abs(mine - theirs).max() / np.abs(theirs).max():.1e}"


def scaled(cam: np.ndarray) -> np.ndarray:
    """A map min-max scaled to [0, 1], as pytorch-grad-cam returns its CAMs."""
    cam = cam - cam.min()
    return cam / (cam.max() or 1)


class Bench:
    """The rows of one network: its module, heatkit's Model of it, one image and a batch."""

    def __init__(self, arch: str):
        import torchvision

        self.torch = frameworks.torch()
        self.torch.manual_seed(0)
        self.arch, self.net = arch, getattr(torchvision.models, arch)().eval()
        self.model = heatkit.load_model(self.net, settings=CURVES_OFF)
        rng = np.random.default_rng(0)
        self.pixels = [rng.random((SIDE, SIDE, 3)) for _ in range(16)]
        inputs = np.stack([self.model.preprocess(image) for image in self.pixels]).transpose(0, 3, 1, 2)
        # contiguous NCHW, as a user's transforms give it (torch.tensor keeps the transposed array's
        # strides: the peers' inputs were channels-last)
        self.batch = self.torch.tensor(inputs, dtype=self.torch.float32).contiguous()
        self.tensor = self.batch[:1]
        self.target = int(self.predicted(self.tensor)[0])

    def predicted(self, inputs):
        with self.torch.no_grad():
            return self.net(inputs).argmax(1)

    def ours(self, key: str, settings: dict | None = None, images=None) -> Callable:
        """Our call of `key` on `images` (default: the one image), with a model loaded for their size."""
        images = self.tensor if images is None else images
        side = SIDE if isinstance(images, list) else images.shape[-1]  # a list: 16 arrays of 224 x 224
        model = self.model if side == SIDE else heatkit.load_model(self.net, settings={**CURVES_OFF,
                                                                                        "input_size": [side, side]})
        return lambda: heatkit.explain(model, images, [key], settings={**CURVES_OFF, **(settings or {})},
                                       progress=False).stack(key)

    def rows(self) -> dict[str, tuple]:
        """name -> (what, ours, peer, theirs, compare(our maps, their result) -> str)."""
        from captum.attr import (DeepLift, GradientShap, IntegratedGradients, LayerAttribution, LayerGradCam,
                                 NoiseTunnel, Saliency)

        torch, net, tensor = self.torch, self.net, self.tensor

        def channels(found):
            return found.detach().sum(1).numpy()

        def saliency(inputs):
            return lambda: channels(Saliency(net).attribute(inputs.clone().requires_grad_(),
                                                            target=self.predicted(inputs), abs=False))

        def grad_cam():
            found = LayerGradCam(net, net.layer4).attribute(tensor, target=int(self.predicted(tensor)))
            return LayerAttribution.interpolate(found, (SIDE, SIDE), "bilinear").detach()[:, 0].numpy()

        def same(mine, theirs):
            return difference(mine, theirs)

        def draws(mine, theirs):
            return DRAWS

        return {
            "grad": ("Saliency, one image", self.ours("grad"), "captum", saliency(tensor), same),
            "grad16": ("Saliency, 16 arrays of pixels in a list (the batch as users pass it)",
                       self.ours("grad", images=self.pixels), "captum, the stacked batch", saliency(self.batch), same),
            "ig": ("IG, 64 steps, from black", self.ours("ig", {"ig.steps": 64}), "captum",
                   lambda: channels(IntegratedGradients(net).attribute(
                       tensor, baselines=self.black(), target=int(self.predicted(tensor)), n_steps=64)), same),
            "sg": ("SmoothGrad, 64 samples", self.ours("sg"), "captum",
                   lambda: channels(NoiseTunnel(Saliency(net)).attribute(
                       tensor.clone().requires_grad_(), nt_type="smoothgrad", nt_samples=64, nt_samples_batch_size=16,
                       stdevs=0.1 * float(tensor.max() - tensor.min()), target=int(self.predicted(tensor)),
                       abs=False)), draws),
            "gradshap": ("GradientSHAP, 64 samples", self.ours("gradshap"), "captum",
                         lambda: channels(GradientShap(net).attribute(
                             tensor, baselines=torch.rand(16, *tensor.shape[1:]) * (tensor.max() - tensor.min())
                             + tensor.min(), n_samples=64, target=int(self.predicted(tensor)))), draws),
            "deeplift": ("DeepLIFT, from black", self.ours("deeplift"), "captum, on a copy with a ReLU a call",
                         lambda: channels(DeepLift(self.relu_once).attribute(
                             tensor, baselines=self.black(), target=int(self.predicted(tensor)))), self.completeness),
            "gradcam": ("Grad-CAM at layer4", self.ours("gradcam", {"gradcam.layers": ["layer4"]}), "captum",
                        grad_cam, same),
            "lrp.epsilon": ("LRP-epsilon", self.ours("lrp.epsilon"), "zennit", self.zennit("epsilon"), same),
            "lrp.epsilon_plus_flat": ("LRP EpsilonPlusFlat", self.ours("lrp.epsilon_plus_flat"), "zennit",
                                      self.zennit("epsilon_plus_flat"), same),
            "scorecam": ("Score-CAM at layer4", self.ours("scorecam", {"gradcam.layers": ["layer4"]}),
                         "pytorch-grad-cam", self.grad_cam_library("ScoreCAM"), lambda m, t: difference(scaled(m[0]), t[0])),
            "ablationcam": ("Ablation-CAM at layer4", self.ours("ablationcam", {"gradcam.layers": ["layer4"]}),
                            "pytorch-grad-cam", self.grad_cam_library("AblationCAM"),
                            lambda m, t: difference(scaled(m[0]), t[0])),
            "shap": ("KernelSHAP, 7 x 7 squares, 1000 samples", self.ours("shap", {"shap.mask": "patch:32"}), "captum",
                     self.kernel_shap(), draws),
            "lime": ("LIME, 1000 samples", self.ours("lime"), "lime", self.lime(), draws),
        }

    def sized_rows(self) -> dict[str, Callable[[], tuple]]:
        """name -> the row, made when it runs (choosing captum's batch times it)."""
        return {**{f"occlusion{side}": functools.partial(self.occlusion, side) for side in SIZES},
                **{f"shapley{side}": functools.partial(self.shapley, side) for side in SIZES}}

    def sized(self, side: int):
        """An image of side x side pixels as the model's input tensor (the first of the batch, resized)."""
        from skimage.transform import resize

        image = resize(self.pixels[0], (side, side), order=1, anti_aliasing=False)
        return self.torch.tensor(self.model.preprocess(image).transpose(2, 0, 1)[None], dtype=self.torch.float32
                                 ).contiguous()

    def occlusion(self, side: int) -> tuple:
        """Occlusion at the window users get (16 x 16 at 224, the same share of other sizes, half of
        it the stride), filled with black, against captum's at 64 perturbations a batch."""
        from captum.attr import Occlusion

        torch, inputs = self.torch, self.sized(side)
        patch = max(1, round(side * 16 / 224))
        stride = max(1, patch // 2)
        windows = Occlusion(lambda batch: torch.softmax(self.net(batch), dim=1))
        black = self.black_of(inputs)

        def captum():
            with torch.no_grad():
                return windows.attribute(inputs, sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride),
                                         baselines=black, target=int(self.predicted(inputs)),
                                         perturbations_per_eval=PER_EVAL)[:, 0].numpy()  # a pixel's channels share it
        return (f"Occlusion {patch}x{patch}, stride {stride}, at {side}x{side}", self.ours("occlusion", images=inputs),
                "captum", captum, lambda mine, theirs: difference(mine, theirs))

    def shapley(self, side: int) -> tuple:
        """Shapley value sampling over squares of 16 x 16 pixels at 224 (the same share of other
        sizes), 2 permutations, against captum's ShapleyValueSampling with that feature mask, 64
        perturbations a batch: the timings, and the maps given the same permutations."""
        from captum.attr import ShapleyValueSampling

        from heatkit.methods import shapley

        torch, inputs = self.torch, self.sized(side)
        patch = max(1, round(side * 16 / 224))
        per_side = -(-side // patch)
        squares = np.arange(side)[:, None] // patch * per_side + np.arange(side)[None] // patch
        mask = torch.from_numpy(squares)[None, None]
        settings = {"shapley.mask": f"patch:{patch}", "shapley.samples": 2, "shapley.seed": 0}
        sampling = ShapleyValueSampling(lambda batch: torch.softmax(self.net(batch), dim=1))
        orders = shapley.permutations(per_side ** 2, {"samples": 2, "seed": 0})
        sampling.permutation_generator = lambda *_: (order.tolist() for order in orders)
        black = self.black_of(inputs)

        def captum():
            with torch.no_grad():
                return sampling.attribute(inputs, baselines=black, target=int(self.predicted(inputs)),
                                          feature_mask=mask, n_samples=2, perturbations_per_eval=PER_EVAL)[:, 0].numpy()
        return (f"Shapley sampling, {patch}x{patch} squares, 2 permutations, at {side}x{side}",
                self.ours("shapley", settings, images=inputs), "captum", captum,
                lambda mine, theirs: difference(mine, theirs))

    def black_of(self, inputs):
        """A black image as the model takes it, shaped as `inputs`."""
        return self.black()[..., :1, :1].expand_as(inputs).contiguous()

    @functools.cached_property
    def relu_once(self):
        """A copy of the ResNet whose blocks call a ReLU module of their own at each place: captum's
        DeepLift refuses a module called twice, as torchvision's blocks call theirs."""
        import copy
        import types

        from torchvision.models.resnet import BasicBlock, Bottleneck

        nn = self.torch.nn

        def forward(block, x):
            out = block.relus[0](block.bn1(block.conv1(x)))
            if isinstance(block, Bottleneck):
                out = block.relus[1](block.bn2(block.conv2(out)))
                out = block.bn3(block.conv3(out))
            else:
                out = block.bn2(block.conv2(out))
            return block.relus[-1](out + (x if block.downsample is None else block.downsample(x)))

        net = copy.deepcopy(self.net)
        for block in net.modules():
            if isinstance(block, (BasicBlock, Bottleneck)):
                block.relus = nn.ModuleList(nn.ReLU() for _ in range(3))
                block.forward = types.MethodType(forward, block)
        return net

    def completeness(self, mine, theirs) -> str:
        """How far each DeepLIFT map's sum is from the logit's change (captum's max pooling rule
        overwrites overlapping windows' shares, which a ResNet's stem has)."""
        with self.torch.no_grad():
            logits = self.net(self.torch.cat([self.tensor, self.black()]))[:, self.target]
        change = float(logits[0] - logits[1])
        return (f"sum's gap from the logit's change: ours {abs(mine.sum() - change) / abs(change):.0e}, "
                f"captum's {abs(theirs.sum() - change) / abs(change):.0e}")

    def black(self):
        return self.torch.tensor(self.model.preprocess(np.zeros((SIDE, SIDE, 3))).transpose(2, 0, 1)[None],
                                 dtype=self.torch.float32).contiguous()

    def zennit(self, composite: str) -> Callable:
        """zennit on the torchvision ResNet, as its documentation composes it."""
        import zennit.composites
        import zennit.layer
        import zennit.rules
        import zennit.torchvision
        import zennit.types

        torch, net, tensor = self.torch, self.net, self.tensor
        canonizers = [zennit.torchvision.ResNetCanonizer()]
        if composite == "epsilon":
            rule = zennit.rules.Epsilon(1e-7)
            chosen = zennit.composites.LayerMapComposite(
                [(zennit.types.Activation, zennit.rules.Pass()), (zennit.types.AvgPool, zennit.rules.Norm()),
                 (zennit.layer.Sum, zennit.rules.Norm()), (zennit.types.Convolution, rule),
                 (zennit.types.Linear, rule)], canonizers=canonizers)
        else:
            chosen = zennit.composites.EpsilonPlusFlat(canonizers=canonizers)

        def run():
            target = int(self.predicted(tensor))
            inputs = tensor.clone().requires_grad_()
            with chosen.context(net) as modified:
                output = modified(inputs)
                seed = torch.zeros_like(output)
                seed[0, target] = output[0, target]
                (relevance,) = torch.autograd.grad(output, inputs, grad_outputs=seed)
            return relevance.sum(1).numpy()
        return run

    def grad_cam_library(self, name: str) -> Callable:
        """pytorch-grad-cam's CAM `name` at layer4, its hooks on the network only during the call
        (left on, they changed the other methods' maps)."""
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        def run():
            with getattr(pytorch_grad_cam, name)(self.net, target_layers=[self.net.layer4[-1]]) as cam:
                return cam(self.tensor, targets=[ClassifierOutputTarget(int(self.predicted(self.tensor)))])
        return run

    def kernel_shap(self) -> Callable:
        """captum's KernelShap over the same 7 x 7 squares of 32 x 32 pixels, 1000 samples (SLIC's 50
        superpixels, shap's default, are one on this noise image)."""
        from captum.attr import KernelShap

        torch, net = self.torch, self.net
        mask = torch.from_numpy(np.arange(SIDE)[:, None] // 32 * 7 + np.arange(SIDE)[None] // 32)[None, None]
        explainer = KernelShap(lambda batch: torch.softmax(net(batch), dim=1))

        def run():
            with torch.no_grad():
                return explainer.attribute(self.tensor, baselines=self.black(), target=int(self.predicted(self.tensor)),
                                           feature_mask=mask, n_samples=1000, perturbations_per_eval=16)
        return run

    def lime(self) -> Callable:
        """The lime package on the same pixels, 1000 samples, batches of 16."""
        from lime.lime_image import LimeImageExplainer

        torch, net, preprocess = self.torch, self.net, self.model.preprocess

        def classify(images):
            inputs = torch.tensor(np.stack([preprocess(image) for image in images]).transpose(0, 3, 1, 2),
                                  dtype=torch.float32)
            with torch.no_grad():
                return torch.softmax(net(inputs), dim=1).numpy()

        def run():
            target = int(self.predicted(self.tensor))
            return LimeImageExplainer(random_state=0).explain_instance(
                self.pixels[0], classify, labels=(target,), hide_color=0, num_samples=1000, batch_size=16)
        return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--only", nargs="+", help="row names (grad, grad16, ig, sg, gradshap, deeplift, gradcam, "
                                                   "lrp.epsilon, lrp.epsilon_plus_flat, scorecam, ablationcam, shap, "
                                                   "lime, occlusion32 ... occlusion448, shapley32 ... shapley448)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch = frameworks.torch()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats\n")
    print("| network | what | heatkit min / median | peer | peer's min / median | ratio min / median | maps |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.models:
        bench = Bench(arch)
        made = {name: (lambda row=row: row) for name, row in bench.rows().items()}
        for name, make in {**made, **bench.sized_rows()}.items():
            if args.only and name not in args.only or arch != "resnet18" and name in PERTURBATION:
                continue
            what, ours, peer, theirs, compare = make()
            mine, peers, my_result, their_result = interleaved(ours, theirs, args.repeats)
            ratio_min, ratio_median = min(peers) / min(mine), statistics.median(peers) / statistics.median(mine)
            print(f"| {arch} | {what} | {min(mine):.2f} / {statistics.median(mine):.2f} s | {peer} | "
                  f"{min(peers):.2f} / {statistics.median(peers):.2f} s | {ratio_min:.2f} / {ratio_median:.2f} | "
                  f"{compare(my_result, their_result)} |", flush=True)


if __name__ == "__main__":
    main()
