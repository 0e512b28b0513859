"""The windowed path on convolutional networks against its limit, our full forward passes and
captum's Occlusion, in one process (float32, 2 threads):

    .venv/bin/python bench/windowed.py          # about 20 minutes on 2 cores, after make models
    .venv/bin/python bench/windowed.py --quick  # the 64 x 64 CNN, ResNet-18 at 16/8 and the digits CNN

1. the 64 x 64 CNN (conv 3->16, max pool, conv 16->16, Linear): single-pixel occlusion of all
   4,096 pixels, against captum;
2. torchvision's ResNet-18 and ResNet-50 at 224 x 224 (seeded, untrained): occlusion with 16 x 16
   patches at stride 8 (against captum too), 8 x 8 at stride 8, and single pixels (on a slice of
   2,048 pixels in the middle rows: the whole image would take an hour on full passes);
3. Krypton's approximate mode on both ResNets at 16/8, at 0.5 and 0.25 of each map's side, its
   error (and its map's Pearson correlation with the exact one) beside its speed;
4. the digits CNN of create_model.py (float64): PDA (every pixel at 256 levels) and Shapley sampling.

The FLOP limit is the windowed path's best speed-up over full passes: the multiply-adds of a full
pass (convolutions and matrix products, as torch counts them) over those of a windowed
evaluation, averaged over up to 49 of the setting's positions spread over the image. "Of the
limit" is the speed-up reached over it. Captum's Occlusion runs at its best
`perturbations_per_eval` of 1, 16 and 64. Each path runs once after a small warm-up (the first
run in a process pays torch's one-time costs). The maps' largest difference (the approximate
mode's error) is relative to the largest probability change.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import heatkit  # noqa: E402
from heatkit.base import frameworks  # noqa: E402
from heatkit.base.engine import Engine  # noqa: E402
from heatkit.base.run_state import EngineOptions  # noqa: E402
from heatkit.methods import _sliding  # noqa: E402

DIGITS = str(ROOT / "models" / "digits.h5")
SLICE = 2048  # single pixels evaluated on the ResNets, in the middle rows


def small_cnn(torch):
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(16 * 32 * 32, 10)).eval()


def resnet(name: str):
    import torchvision

    frameworks.torch().manual_seed(0)
    return getattr(torchvision.models, name)().eval()


def timed(run):
    start = time.perf_counter()
    value = run()
    return value, time.perf_counter() - start


def flop_limit(model, image, windows: list[tuple[int, int]], size: tuple[int, int]) -> float:
    """A full pass's multiply-adds over the mean of a windowed evaluation's, at up to 49 of the windows."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(run) -> int:
        with FlopCounterMode(display=False) as counter:
            run()
        return counter.get_total_flops()
    evaluator = model.windowed_evaluator(EngineOptions().max_fast_fraction, 0.0)
    evaluator.remember(image[None])
    chosen = [windows[i] for i in np.linspace(0, len(windows) - 1, min(49, len(windows))).round().astype(int)]
    windowed = [flops(lambda: evaluator.probabilities(np.array([top]), np.array([left]),
                                                      np.zeros((1, *size, image.shape[2])))) for top, left in chosen]
    return flops(lambda: model.probabilities(image[None])) / np.mean(windowed)


def captum_occlusion(torch, model, net, image, target, patch, stride):
    """captum's map and seconds at its best perturbations_per_eval, on the image and the black fill
    as the model takes them (a torchvision network's, normalised by ImageNet's mean and std)."""
    from captum.attr import Occlusion

    def nchw(pixels):  # contiguous, as users have it
        return torch.tensor(model.preprocess(pixels).transpose(2, 0, 1)[None], dtype=torch.float32).contiguous()
    tensor, black = nchw(image), nchw(np.zeros_like(image))
    occlusion = Occlusion(lambda batch: torch.softmax(net(batch), dim=1))
    best = None
    for per_eval in (1, 16, 64):
        with torch.no_grad():
            attribution, seconds = timed(lambda: occlusion.attribute(
                tensor, sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), baselines=black,
                target=target, perturbations_per_eval=per_eval))
        if best is None or seconds < best[1]:
            best = (attribution[0, 0].numpy(), seconds, per_eval)
    return best


def occlusion_map(model, image, patch, stride, fast, approximate=0.0):
    run = heatkit.explain(model, image, ["occlusion"], progress=False, settings={
        "faithfulness.curves": False, "occlusion.patch": patch, "occlusion.stride": stride,
        "perturbation.fast": fast, "perturbation.approximate": approximate})
    return run.maps["occlusion"], run.result.evaluations["occlusion"]


def occlusion_case(torch, name, net, side, patch, stride, captum=True, approximate=0.0):
    """The windowed path (Krypton's approximate mode at `approximate`) against full passes (and
    captum); the difference is the approximation's error where there is one."""
    image = np.random.default_rng(1).random((side, side, 3))
    model = heatkit.load_model(net, settings={"input_size": [side, side]})
    target = int(model.probabilities(image[None]).argmax())
    occlusion_map(model, image, side // 2, side // 2, True)  # one-time costs, as above
    occlusion_map(model, image, side // 2, side // 2, False)
    (windowed, evaluations), windowed_seconds = timed(
        lambda: occlusion_map(model, image, patch, stride, True, approximate))
    (full, _), full_seconds = timed(lambda: occlusion_map(model, image, patch, stride, False))
    rows, cols = _sliding.starts(side, patch, stride), _sliding.starts(side, patch, stride)
    limit = None if approximate else flop_limit(model, image, [(top, left) for top in rows for left in cols],
                                                (patch, patch))
    scale = np.abs(full).max()
    difference = np.abs(windowed - full).max() / scale
    reference = captum_occlusion(torch, model, net, image, target, patch, stride) if captum else None
    if reference is not None:
        difference = max(difference, np.abs(windowed - reference[0]).max() / scale)
    setting = f"{patch}x{patch}/{stride}" + (f", approximate {approximate:g} (r {pearson(windowed, full):.2f})"
                                             if approximate else "")
    return (name, setting, evaluations, limit, windowed_seconds, full_seconds, reference[1:] if reference else None,
            difference)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def single_pixel_case(name, net, side):
    """Single-pixel occlusion of SLICE pixels in the middle rows, through the engine."""
    image = np.random.default_rng(1).random((side, side, 3))
    first = (side // 2 - SLICE // (2 * side)) * side
    pixels = np.arange(first, first + SLICE)
    elements = (pixels[:, None] * 3 + np.arange(3)).astype(np.int64)  # a pixel's three channels
    seconds, results = {}, {}
    for fast in (True, False):
        model = heatkit.load_model(net, settings={"input_size": [side, side], "perturbation.fast": fast})
        target = int(model.probabilities(image[None]).argmax())
        engine = Engine(model, image, target, EngineOptions(fast=fast, progress=False))
        engine.edits(elements[:8], 0.0, "warm-up")
        results[fast], seconds[fast] = timed(lambda: engine.edits(elements, 0.0, "occlusion"))
    limit = flop_limit(model, image, [(p // side, p % side) for p in pixels], (1, 1))
    difference = np.abs(results[True] - results[False]).max() / np.abs(engine.probability() - results[False]).max()
    return (name, f"1x1, {SLICE} pixels", {"windowed": SLICE}, limit, seconds[True], seconds[False], None, difference)


def digits_cases():
    image = str(ROOT / "images" / "digits" / "digit3_heldout18.png")
    heatkit.explain(DIGITS, image, ["occlusion"], settings={"occlusion.stride": 32}, progress=False)
    rows = []
    for method in ("pda", "shapley"):
        maps = {}
        for fast in (True, False):
            run, seconds = timed(lambda: heatkit.explain(DIGITS, image, [method], progress=False, settings={
                "faithfulness.curves": False, "perturbation.fast": fast}))
            maps[fast] = (run.maps[method], seconds, run.result.evaluations[method])
        difference = np.abs(maps[True][0] - maps[False][0]).max() / np.abs(maps[False][0]).max()
        rows.append(("digits CNN (float64)", method, maps[True][2], None, maps[True][1], maps[False][1], None,
                     difference))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 64 x 64 CNN, ResNet-18 at 16/8, the digits CNN")
    args = parser.parse_args()
    if not Path(DIGITS).is_file():  # its rows come last: said before 20 minutes of the others
        sys.exit(f"bench/windowed.py needs {DIGITS}: run make models first")
    torch = frameworks.torch()
    torch.set_num_threads(2)
    print("| network | setting | evaluations | FLOP limit | windowed | full passes | speed-up | of the limit | "
          "captum (per eval) | vs captum | max difference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    cases = [lambda: occlusion_case(torch, "64x64 CNN", small_cnn(torch), 64, 1, 1)]
    for name in ("resnet18",) if args.quick else ("resnet18", "resnet50"):
        label = {"resnet18": "ResNet-18, 224", "resnet50": "ResNet-50, 224"}[name]
        cases.append(lambda name=name, label=label: occlusion_case(torch, label, resnet(name), 224, 16, 8))
        if not args.quick:
            cases.append(lambda name=name, label=label: occlusion_case(torch, label, resnet(name), 224, 8, 8, False))
            cases.append(lambda name=name, label=label: single_pixel_case(label, resnet(name), 224))
            for approximate in (0.5, 0.25):
                cases.append(lambda name=name, label=label, approximate=approximate: occlusion_case(
                    torch, label, resnet(name), 224, 16, 8, False, approximate))
    for case in cases:
        _print(case())
    for row in digits_cases():
        _print(row)


def _print(row) -> None:
    name, setting, evaluations, limit, windowed, full, captum, difference = row
    paths = ", ".join(f"{count:,} {path}" for path, count in evaluations.items())
    speedup = full / windowed
    captum_cells = f"{captum[0]:.1f} s ({captum[1]}) | {captum[0] / windowed:.1f}x" if captum else "- | -"
    limit_cells = f"{limit:.2f}x | " if limit else "- | "
    share = f"{speedup / limit:.0%}" if limit else "-"
    print(f"| {name} | {setting} | {paths} | {limit_cells}{windowed:.1f} s | {full:.1f} s | {speedup:.2f}x | {share} | "
          f"{captum_cells} | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
