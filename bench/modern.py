"""The main methods on the architectures trained today, at 224 x 224: torchvision's Swin-T and
ConvNeXt-T (seeded, untrained, float32, 2 threads), one image, the faithfulness curves off; the
seconds of each method's call, as heatkit.explain reports them, and of the whole run.

    .venv/bin/python bench/modern.py        # about 3 minutes on 2 cores

It prints a Markdown table.
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


def main() -> None:
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


if __name__ == "__main__":
    main()
