"""Every method on a residual network at 224 x 224 (float32), on PyTorch and on Keras, timed in
units of one forward pass of that network on that framework, so that the table travels across
machines.

    .venv/bin/python bench/models.py --methods grad occlusion lime   # a few minutes on 2 cores
    .venv/bin/python bench/models.py                                 # every method: PDA and Shapley
                                                                     # add about an hour on Keras

The network is ResNet-shaped and small: a 3 x 3 stride-2 stem (16 channels) with BatchNorm, three
stages of one basic block each (16, 32, 64 channels; the last two halve the resolution, with 1 x 1
shortcut convolutions), global average pooling and a Linear head of 10 classes. Both frameworks
build it from the same seeded weights. Methods run at their defaults but for the settings in
SETTINGS, which keep the perturbation methods to minutes (say so beside the table). "map" is the
second map of a method in the process (the first builds graphs and caches); "first" includes that.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIDE, CLASSES, WIDTHS = 224, 10, (16, 32, 64)
SETTINGS = {"occlusion.patch": 8, "occlusion.stride": 4, "pda.window": 8, "pda.samples": 2, "shapley.samples": 1}


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded weights by name, He-scaled, and BatchNorm statistics, shared by both builds."""
    rng = np.random.default_rng(seed)
    shapes = {"stem": (3, 3, 3, WIDTHS[0])}
    inputs = WIDTHS[0]
    for stage, width in enumerate(WIDTHS):
        shapes[f"s{stage}.conv1"] = (3, 3, inputs, width)
        shapes[f"s{stage}.conv2"] = (3, 3, width, width)
        if stage:
            shapes[f"s{stage}.short"] = (1, 1, inputs, width)
        inputs = width
    values = {name: rng.normal(size=shape) * np.sqrt(2 / np.prod(shape[:3])) for name, shape in shapes.items()}
    for name, shape in shapes.items():
        width = shape[-1]
        values[f"{name}.bn"] = np.stack([0.5 + rng.random(width), 0.1 * rng.normal(size=width),
                                         0.1 * rng.normal(size=width), 0.5 + rng.random(width)])
    values["fc"], values["fc.bias"] = rng.normal(size=(WIDTHS[-1], CLASSES)) * 0.3, np.zeros(CLASSES)
    return {name: value.astype(np.float32) for name, value in values.items()}


def torch_net(values: dict):
    import torch
    from torch import nn

    def conv(name, stride):
        kernel = values[name]
        layer = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0], stride, kernel.shape[0] // 2, bias=False)
        layer.weight.data = torch.tensor(kernel.transpose(3, 2, 0, 1).copy())
        norm = nn.BatchNorm2d(kernel.shape[3], eps=1e-3)
        gamma, beta, mean, variance = (torch.tensor(row) for row in values[f"{name}.bn"])
        norm.weight.data, norm.bias.data, norm.running_mean.data, norm.running_var.data = gamma, beta, mean, variance
        return nn.Sequential(layer, norm)

    class Block(nn.Module):
        def __init__(self, stage):
            super().__init__()
            stride = 2 if stage else 1
            self.conv1, self.conv2 = conv(f"s{stage}.conv1", stride), conv(f"s{stage}.conv2", 1)
            self.short = conv(f"s{stage}.short", stride) if stage else nn.Identity()

        def forward(self, x):
            return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.short(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv("stem", 2), nn.ReLU())
            self.stages = nn.Sequential(*[Block(stage) for stage in range(len(WIDTHS))])
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(WIDTHS[-1], CLASSES)
            self.fc.weight.data = torch.tensor(values["fc"].T.copy())
            self.fc.bias.data = torch.tensor(values["fc.bias"])

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))

    return ResNet().eval()


def keras_net(values: dict):
    import heatkit

    tf = heatkit.tensorflow()
    layers = tf.keras.layers

    def conv(hidden, name, stride):
        kernel = values[name]
        layer = layers.Conv2D(kernel.shape[3], kernel.shape[0], stride, padding="same", use_bias=False,
                              name=name.replace(".", "_"))
        norm = layers.BatchNormalization(epsilon=1e-3, name=f"{name.replace('.', '_')}_bn")
        out = norm(layer(hidden))
        layer.set_weights([kernel])
        norm.set_weights(list(values[f"{name}.bn"]))
        return out

    inputs = tf.keras.Input((SIDE, SIDE, 3))
    hidden = layers.ReLU()(conv(inputs, "stem", 2))
    for stage in range(len(WIDTHS)):
        stride = 2 if stage else 1
        branch = conv(layers.ReLU()(conv(hidden, f"s{stage}.conv1", stride)), f"s{stage}.conv2", 1)
        hidden = layers.ReLU()(layers.Add()([branch, conv(hidden, f"s{stage}.short", stride) if stage else hidden]))
    dense = layers.Dense(CLASSES, name="fc")
    outputs = dense(layers.GlobalAveragePooling2D()(hidden))
    dense.set_weights([values["fc"], values["fc.bias"]])
    return tf.keras.Model(inputs, outputs)


def forward_seconds(model, image: np.ndarray, repeats: int = 20) -> float:
    """The median time of one forward pass of one image."""
    model.logits(image[None])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.logits(image[None])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(framework: str, keys: list[str]) -> dict:
    """Seconds of the first and second map of each method, and of one forward pass."""
    import heatkit
    from heatkit.base.errors import NotApplicable
    from heatkit.methods.registry import REGISTRY

    values = weights()
    net = torch_net(values) if framework == "torch" else keras_net(values)
    overrides = {**SETTINGS, "input_size": [SIDE, SIDE]}
    cfg, model = heatkit.settings(overrides), heatkit.load_model(net, settings=overrides)
    image = np.random.default_rng(1).random((SIDE, SIDE, 3))
    target = int(model.probabilities(image[None])[0].argmax())
    rows = {"forward": forward_seconds(model, image)}
    for key in keys:
        method = REGISTRY[key]
        params = {**method.settings.defaults(), **cfg[method.settings.name]} if method.settings else {}
        runs_on = method.runs_on(framework, model.frameworks)
        if runs_on not in model.frameworks:
            rows[key] = {"not_applicable": f"runs on {runs_on} only"}
            continue
        function = method.function(runs_on)
        try:
            start = time.perf_counter()
            function(model, image, target, params)
            first = time.perf_counter() - start
            start = time.perf_counter()
            function(model, image, target, params)
            rows[key] = {"first": first, "map": time.perf_counter() - start}
        except NotApplicable as reason:
            rows[key] = {"not_applicable": str(reason)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", help="method keys (default: every method)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child's framework
    args = parser.parse_args()
    from heatkit.methods.registry import REGISTRY

    keys = args.methods or list(REGISTRY)
    if args.one:
        print(json.dumps(measure(args.one, keys)))
        return
    results = {}
    for framework in ("torch", "keras"):
        child = subprocess.run([sys.executable, __file__, "--one", framework, "--methods", *keys], cwd=ROOT,
                               check=True, capture_output=True, text=True)
        results[framework] = json.loads(child.stdout.strip().splitlines()[-1])
    torch, keras = results["torch"], results["keras"]
    print(f"One forward pass: PyTorch {torch['forward'] * 1e3:.1f} ms, Keras {keras['forward'] * 1e3:.1f} ms; "
          f"settings changed from the defaults: {', '.join(f'{k}={v}' for k, v in SETTINGS.items())}\n")
    print("| method | PyTorch map, forward passes | PyTorch first, s | Keras map, forward passes | Keras first, s |")
    print("|---|---|---|---|---|")
    for key in keys:
        cells = []
        for rows in (torch, keras):
            row = rows[key]
            if "not_applicable" in row:
                cells += [f"not applicable: {row['not_applicable']}", ""]
            else:
                cells += [f"{row['map'] / rows['forward']:,.0f}", f"{row['first']:.2f}"]
        print(f"| {key} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
