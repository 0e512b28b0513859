"""The windowed path on convolutional networks against full forward passes and captum's Occlusion,
in one process, each case once (float32 unless said):

    .venv/bin/python bench/windowed.py          # about 15 minutes on 2 cores
    .venv/bin/python bench/windowed.py --quick  # the 64 x 64 CNN and the digits CNN only

1. the issue's CNN (conv 3->16, max pool, conv 16->16, Linear; 64 x 64 RGB): single-pixel occlusion
   of all 4,096 pixels;
2. a ResNet-18-shaped network at 224 x 224 (7 x 7 stride-2 stem, max pool, four stages of two basic
   blocks, 64 to 512 channels, BatchNorm, GAP, Linear; seeded, untrained): occlusion with an 8 x 8
   patch at stride 4 (3,025 patches);
3. the digits CNN of create_model.py (float64): PDA (every pixel at 256 levels) and Shapley sampling
   (25 permutations).
It prints a Markdown table: seconds (after a small warm-up run of each path, as the first run in
a process pays torch's one-time costs), the speed-up of the windowed path over each baseline, and
the largest difference of the maps, relative to the largest probability change.
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

DIGITS = str(ROOT / "models" / "digits.h5")


def small_cnn(torch):
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(16 * 32 * 32, 10)).eval()


def resnet18_shaped(torch):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, inputs, outputs, stride):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs)
            self.conv2, self.bn2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False), nn.BatchNorm2d(outputs)
            self.shortcut = nn.Identity() if stride == 1 and inputs == outputs else nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

        def forward(self, x):
            return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))

    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    inputs = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(inputs, width, stride), Block(width, width, 1)]
        inputs = width
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def timed(run):
    start = time.perf_counter()
    value = run()
    return value, time.perf_counter() - start


def heatkit_map(model, image, method, settings):
    run = heatkit.explain(model, image, [method], settings={**settings, "faithfulness.curves": False}, progress=False)
    return run.maps[method], run.result.evaluations[method]


def captum_occlusion(torch, net, image, target, patch, stride):
    from captum.attr import Occlusion

    def probabilities(batch):
        return torch.softmax(net(batch), dim=1)
    tensor = torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32)
    with torch.no_grad():
        attribution = Occlusion(probabilities).attribute(tensor, sliding_window_shapes=(3, patch, patch),
                                                         strides=(3, stride, stride), baselines=0.0, target=target,
                                                         perturbations_per_eval=64)
    return attribution[0, 0].numpy()


def occlusion_case(torch, name, net, side, patch, stride):
    image = np.random.default_rng(1).random((side, side, 3))
    settings = {"input_size": [side, side], "occlusion.patch": patch, "occlusion.stride": stride}
    model = heatkit.load_model(net, settings=settings)
    target = int(model.probabilities(image[None]).argmax())
    # the first run in a process pays torch's one-time costs (kernel choice, allocator growth)
    warm = {**settings, "occlusion.stride": side}
    heatkit_map(net, image, "occlusion", warm)
    heatkit_map(net, image, "occlusion", {**warm, "perturbation.fast": False})
    (windowed, evaluations), windowed_seconds = timed(lambda: heatkit_map(net, image, "occlusion", settings))
    full_settings = {**settings, "perturbation.fast": False}
    (full, _), full_seconds = timed(lambda: heatkit_map(net, image, "occlusion", full_settings))
    reference, captum_seconds = timed(lambda: captum_occlusion(torch, net, image, target, patch, stride))
    scale = np.abs(full).max()
    return [(name, "occlusion", windowed_seconds, full_seconds, captum_seconds,
             max(np.abs(windowed - full).max(), np.abs(windowed - reference).max()) / scale, evaluations)]


def digits_cases():
    image = str(ROOT / "images" / "digits" / "digit3_heldout18.png")
    heatkit_map(DIGITS, image, "occlusion", {"occlusion.stride": 32})  # one-time costs, as above
    rows = []
    for method in ("pda", "shapley"):
        (windowed, evaluations), windowed_seconds = timed(lambda: heatkit_map(DIGITS, image, method, {}))
        (full, _), full_seconds = timed(lambda: heatkit_map(DIGITS, image, method,
                                                            {"perturbation.fast": False}))
        rows.append(("digits CNN (float64)", method, windowed_seconds, full_seconds, None,
                     np.abs(windowed - full).max() / np.abs(full).max(), evaluations))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the ResNet-18-shaped network")
    args = parser.parse_args()
    torch = frameworks.torch()
    torch.set_num_threads(2)
    rows = occlusion_case(torch, "64x64 CNN", small_cnn(torch), 64, 1, 1)
    if not args.quick:
        rows += occlusion_case(torch, "ResNet-18-shaped, 224x224", resnet18_shaped(torch), 224, 8, 4)
    rows += digits_cases()
    print("| network | method | windowed | full passes | captum | vs full | vs captum | max difference |")
    print("|---|---|---|---|---|---|---|---|")
    for name, method, windowed, full, captum, difference, evaluations in rows:
        versus_captum = f"{captum / windowed:.1f}x" if captum else "-"
        print(f"| {name} | {method} | {windowed:.1f} s | {full:.1f} s | {f'{captum:.1f} s' if captum else '-'} | "
              f"{full / windowed:.1f}x | {versus_captum} | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
