"""The architectures trained today, torchvision's at full width (seeded, untrained, float32, 2
threads), one image, the faithfulness curves off.

    .venv/bin/python bench/modern.py        # the main methods at 224 x 224 on Swin-T and
                                            # ConvNeXt-T: about 3 minutes on 2 cores
    .venv/bin/python bench/modern.py --all  # every method at 64 x 64 on Swin-T, MobileNetV3,
                                            # EfficientNet-B0 and ConvNeXt-T, and Inception-v3 at
                                            # 80 x 80 (its smallest input is 75 x 75), the per-pixel
                                            # methods at CHEAP's settings: about 20 minutes
    .venv/bin/python bench/modern.py --attention  # the attention methods, Grad-CAM and Score-CAM on
                                                  # timm's ViT-S at 224, a second call: about 1 minute

Each prints a Markdown table: the seconds of each method's call, as heatkit.explain reports them,
and of the whole run (for --all, the three slowest methods).
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

METHODS = ["grad", "ig", "gradcam", "lrp.epsilon", "deeplift", "occlusion"]
SETTINGS = {"faithfulness.curves": False, "occlusion.patch": 16, "occlusion.stride": 8}
# every method at 64 x 64: the methods with an evaluation per pixel (PDA, Shapley) or per sample at
# a few hundred draws rather than thousands; the rest at their defaults
CHEAP = {**SETTINGS, "pda.window": 8, "pda.samples": 2, "shapley.mask": "patch:8",
         "rise.num_masks": 500, "lime.num_samples": 300, "shap.nsamples": 300, "mp.iterations": 50}
# network -> (its constructor's arguments, the input's side)
EVERY = {"swin_t": ({}, 64), "mobilenet_v3_small": ({}, 64), "efficientnet_b0": ({}, 64),
         "inception_v3": ({"aux_logits": False, "init_weights": True}, 80), "convnext_tiny": ({}, 64)}


def main() -> None:
    if "--all" in sys.argv[1:]:
        return every_method()
    if "--attention" in sys.argv[1:]:
        return attention()
    import torchvision

    torch = frameworks.torch()
    torch.set_num_threads(2)
    image = np.random.default_rng(0).random((224, 224, 3))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ig at its default steps, occlusion "
          "16 x 16 at stride 8\n")
    print(f"| network | {' | '.join(METHODS)} | whole run |")
    print(f"|---|{'---|' * len(METHODS)}---|")
    for arch in ("swin_t", "convnext_tiny"):
        torch.manual_seed(0)
        net = getattr(torchvision.models, arch)().eval()
        model = heatkit.load_model(net, settings=SETTINGS)
        start = time.perf_counter()
        run = heatkit.explain(model, image, METHODS, settings=SETTINGS, progress=False)
        seconds = time.perf_counter() - start
        assert set(run.maps) == set(METHODS), (run.result.skipped, run.result.failures)
        cells = " | ".join(f"{run.result.seconds[key]:.1f} s" for key in METHODS)
        print(f"| {arch} | {cells} | {seconds / 60:.1f} min |", flush=True)


def every_method() -> None:
    import torchvision

    torch = frameworks.torch()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; every method with "
          f"{', '.join(f'{key}={value}' for key, value in CHEAP.items())}\n")
    print("| network | input | maps | not applicable | slowest | whole run |")
    print("|---|---|---|---|---|---|")
    only = [arch for arch in sys.argv[1:] if arch in EVERY] or list(EVERY)  # --all swin_t: that one only
    for arch in only:
        arguments, side = EVERY[arch]
        torch.manual_seed(0)
        net = getattr(torchvision.models, arch)(**arguments).eval()
        image = np.random.default_rng(0).random((side, side, 3))
        start = time.perf_counter()
        run = heatkit.explain(net, image, "all", settings={**CHEAP, "input_size": [side, side]}, progress=False)
        seconds = time.perf_counter() - start
        assert not run.result.failures, run.result.failures
        slowest = sorted(run.result.seconds.items(), key=lambda item: -item[1])[:3]
        print(f"| {arch} | {side} x {side} | {len(run.maps)} | {len(run.result.skipped)} | "
              f"{', '.join(f'{key} {value:.0f} s' for key, value in slowest)} | {seconds / 60:.1f} min |", flush=True)


def attention() -> None:
    import timm

    torch = frameworks.torch()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch16_224", pretrained=False).eval()
    image = np.random.default_rng(0).random((224, 224, 3))
    model = heatkit.load_model(net, settings=SETTINGS)
    methods = ["rollout", "chefer", "legrad", "gradcam", "scorecam"]
    heatkit.explain(model, image, methods[:-1], settings=SETTINGS, progress=False)  # the first call builds caches
    run = heatkit.explain(model, image, methods, settings=SETTINGS, progress=False)
    print(f"| network | {' | '.join(methods)} |\n|---|{'---|' * len(methods)}")
    print(f"| vit_small_patch16_224 | {' | '.join(f'{run.result.seconds[key]:.1f} s' for key in methods)} |")


if __name__ == "__main__":
    main()
