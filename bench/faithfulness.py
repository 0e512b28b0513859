"""Faithfulness curves: seconds per map, ours against Quantus 0.6 on the same model, map and steps,
in one run (after `make models`):

    .venv/bin/python bench/faithfulness.py      # about 3 minutes on 2 cores

1. the center-pixel model at 227 x 227, 1-pixel steps (51,529 a curve): deletion, insertion and
   AOPC of one map, on the exact fast path;
2. the digits CNN (its PyTorch twin in float32, as Quantus feeds float32) and the residual
   network of examples/residual_digits.py, 32 x 32, 16 pixels a step (64 steps): ours (deletion,
   insertion and AOPC) against Quantus' PixelFlipping (deletion alone; Quantus has no insertion
   curve), their deletion curves checked equal. Both are timed on a second map.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

import heatkit  # noqa: E402
from heatkit.base import frameworks  # noqa: E402
from heatkit.metrics import curves  # noqa: E402

PARAMS = {"curves": True, "patch": 1, "regions_per_step": 1, "ranking": "signed", "baseline": "constant", "fill": 0.0,
          "blur_sigma": 5.0, "random_draws": 0, "seed": 0}


def timed(run):
    start = time.perf_counter()
    value = run()
    return value, time.perf_counter() - start


def ours(model, image, target, attribution, per_step):
    """Timed on a second map: the first pays the model's one-time costs (its first passes, the
    bytes a pass allocates, counted once)."""
    params = {**PARAMS, "regions_per_step": per_step}
    curves.score_maps(model, image, target, {"map": -attribution}, params)
    return timed(lambda: curves.score_maps(model, image, target, {"map": attribution}, params)["map"])


def quantus_deletion(net, image, target, attribution, per_step):
    """Timed on a second map, as ours."""
    import quantus

    metric = quantus.PixelFlipping(features_in_step=per_step, perturb_baseline=0.0, abs=False, normalise=False,
                                   disable_warnings=True, display_progressbar=False)

    def deletion(values):
        return metric(model=net, x_batch=image.transpose(2, 0, 1)[None].astype(np.float32),
                      y_batch=np.array([target]), a_batch=values[None, None].astype(np.float32), softmax=True,
                      device="cpu")[0]
    deletion(-attribution)
    return timed(lambda: deletion(attribution))


def main() -> None:
    torch = frameworks.torch()
    center = heatkit.load_model(ROOT / "models" / "center_pixel.h5")
    image = np.random.default_rng(0).random(center.input_shape)
    target = int(center.probabilities(image[None]).argmax())
    scored, seconds = ours(center, image, target, np.random.default_rng(1).normal(size=image.shape[:2]), 1)
    print(f"center-pixel model, 227x227, 1-pixel steps ({scored['deletion'].size - 1:,} a curve): deletion, "
          f"insertion and AOPC of one map in {seconds:.2f} s\n")

    import residual_digits

    digits = heatkit.load_model(ROOT / "models" / "digits.h5").torch.module.float()
    residual = residual_digits.build()
    residual.load_state_dict(torch.load(ROOT / "models" / "residual_digits.pt", weights_only=True))
    print("| network | ours: deletion, insertion, AOPC | Quantus: PixelFlipping (deletion) | ratio |")
    print("|---|---|---|---|")
    for name, net in (("digits CNN (float32)", digits), ("residual network", residual.eval())):
        model = heatkit.load_model(net, settings={"input_size": [32, 32]})
        image = np.random.default_rng(2).random((32, 32, 1))
        target = int(model.probabilities(image[None]).argmax())
        attribution = np.random.default_rng(3).normal(size=(32, 32))
        mine, my_seconds = ours(model, image, target, attribution, 16)
        deletion, their_seconds = quantus_deletion(net, image, target, attribution, 16)
        assert np.abs(mine["deletion"][1:] - np.array(deletion)).max() < 1e-5
        print(f"| {name} | {my_seconds:.2f} s | {their_seconds:.2f} s | {their_seconds / my_seconds:.1f}x |")


if __name__ == "__main__":
    main()
