"""Build the test models, each as a Keras model and a PyTorch twin with identical weights.

    python create_model.py                          # models/center_pixel.{h5,pt,json}, 227 x 227
    python create_model.py --model center_cnn       # the center-pixel model with conv layers
    python create_model.py --model region           # the class set by the mean of a square region
    python create_model.py --model two_pixels_xor   # two classes, set by the XOR of two pixels (or _and)
    python create_model.py --model digits           # a small CNN trained on scikit-learn's digits
    python create_model.py --image-size 15 --out /tmp/small

Each model is verified from its saved files before it is moved into place; if any check fails
nothing is written and the exit code is 1. Parameters come from settings.py (the center_pixel
and digits dicts), or --set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from heatkit.base import data, frameworks
from heatkit.base.errors import UsageError
from heatkit.pipeline import config

MODELS = ("center_pixel", "center_cnn", "region", "two_pixels_and", "two_pixels_xor", "digits")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="center_pixel", help="which model to build")
    parser.add_argument("--image-size", type=int, help="odd side of a center-pixel input image "
                        "(default: settings.image_size)")
    parser.add_argument("--out", type=Path, default=Path("models"), help="output folder (default: models/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's log messages")
    return parser.parse_args(argv)


def center_pixel(cfg: dict, ground_truth: str = data.CENTER_PIXEL):
    """The Keras model, its twin, and the card's description of the center-pixel model (or of the
    region model, whose ground truth names its square)."""
    from heatkit.model.twins import twin_of
    from heatkit.testmodels.center_pixel import build_weights
    from heatkit.testmodels.keras_builders import center_pixel as keras_center_pixel

    params, size = cfg["center_pixel"], cfg["image_size"]
    weights = build_weights(size, cfg["num_classes"], params["alpha"], params["relu"], params["weight_seed"],
                            params["noise_weight_scale"], data.ground_truth_mask(ground_truth, (size, size)))
    keras_model = keras_center_pixel(weights)
    twin, arguments = twin_of(keras_model)
    return keras_model, twin, {"twin": arguments, "ground_truth": ground_truth}


def region_of(cfg: dict) -> str:
    """The region model's square, centered a quarter of the way down and across."""
    side, size = cfg["center_pixel"]["region_side"], cfg["image_size"]
    if side > size // 2:
        raise UsageError(f"center_pixel.region_side={side} does not fit a quarter of a {size}-pixel image: "
                         f"give at most {size // 2}")
    corner = size // 4 - side // 2
    return data.region_ground_truth(corner, corner, side)


def region(cfg: dict):
    return center_pixel(cfg, region_of(cfg))


def two_pixels(kind: str):
    """The builder of the two-pixel model with rule `kind`."""
    def make(cfg: dict):
        from heatkit.model.twins import twin_of
        from heatkit.testmodels.keras_builders import two_pixels as keras_two_pixels
        from heatkit.testmodels.two_pixels import build_weights, pixels

        params, size = cfg["center_pixel"], cfg["image_size"]
        weights = build_weights(kind, size, params["two_pixels_sharpness"], params["weight_seed"])
        keras_model = keras_two_pixels(weights, f"two_pixels_{kind}")
        twin, arguments = twin_of(keras_model)
        return keras_model, twin, {"twin": arguments, "ground_truth": data.two_pixels_ground_truth(kind, *pixels(size))}

    def verify(cfg: dict, keras_net, torch_net):
        from heatkit.testmodels.verify import two_pixel_checks

        params = cfg["center_pixel"]
        return two_pixel_checks(keras_net, torch_net, kind, params["two_pixels_sharpness"],
                                params["verify_per_class"] * 20, params["verify_seed"])
    return make, verify


def center_cnn(cfg: dict):
    from heatkit.model.twins import twin_of
    from heatkit.testmodels.center_cnn import build_weights
    from heatkit.testmodels.keras_builders import center_cnn as keras_center_cnn

    params = cfg["center_pixel"]
    weights = build_weights(cfg["image_size"], cfg["num_classes"], params["alpha"], params["weight_seed"],
                            params["noise_weight_scale"])
    keras_model = keras_center_cnn(weights)
    twin, arguments = twin_of(keras_model)
    return keras_model, twin, {"twin": arguments, "ground_truth": data.CENTER_PIXEL}


def center_checks(cfg: dict, keras_net, torch_net, twin_tolerance: float | None = None,
                  ground_truth: str = data.CENTER_PIXEL):
    from heatkit.testmodels.verify import EXACT, center_pixel_checks

    params = cfg["center_pixel"]
    return center_pixel_checks(keras_net, torch_net, cfg["num_classes"], params["alpha"],
                               params["verify_per_class"], params["verify_seed"],
                               twin_tolerance=twin_tolerance or EXACT, ground_truth=ground_truth)


def region_checks(cfg: dict, keras_net, torch_net):
    return center_checks(cfg, keras_net, torch_net, ground_truth=region_of(cfg))


def center_cnn_checks(cfg: dict, keras_net, torch_net):
    from heatkit.testmodels.verify import CNN_TWINS

    return center_checks(cfg, keras_net, torch_net, CNN_TWINS)


def digits(cfg: dict):
    from heatkit.model.twins import twin_of
    from heatkit.testmodels.digits import train

    keras_model = train(cfg["digits"])
    twin, arguments = twin_of(keras_model)
    return keras_model, twin, {"twin": arguments, "ground_truth": None,
                               "class_names": [str(digit) for digit in range(10)]}


def digits_checks(cfg: dict, keras_net, torch_net):
    from heatkit.testmodels.digits import checks

    return checks(cfg["digits"], keras_net, torch_net)


BUILDERS = {"center_pixel": (center_pixel, center_checks), "center_cnn": (center_cnn, center_cnn_checks),
            "region": (region, region_checks), "two_pixels_and": two_pixels("and"),
            "two_pixels_xor": two_pixels("xor"), "digits": (digits, digits_checks)}


def build(name: str, cfg: dict, out: Path) -> bool:
    """Build, save into a staging folder, verify the saved files, then move them into `out`."""
    from heatkit.model.keras_net import KerasNet
    from heatkit.model.torch_net import TorchNet

    torch = frameworks.torch()

    make, verify = BUILDERS[name]
    keras_model, twin, card = make(cfg)
    card.update(input_shape=list(keras_model.input_shape[1:]), num_classes=int(keras_model.output_shape[-1]),
                settings=cfg["digits"] if name == "digits" else cfg["center_pixel"])
    files = [f"{name}.h5", f"{name}.pt", f"{name}.json"]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".staging-") as staging:
        staged = Path(staging)
        keras_model.save(staged / files[0], save_format="h5")
        torch.save(twin.state_dict(), staged / files[1])
        checks = verify(cfg, KerasNet.load(staged / files[0]), TorchNet.load_twin(staged / files[1], card))
        height, width, channels = card["input_shape"]
        print(f"{name}: {height}x{width}x{channels} input, {card['num_classes']} classes")
        for check in checks:
            print(f"  {check}")
        if not all(check.passed for check in checks):
            print("verification failed: nothing saved", file=sys.stderr)
            return False
        card["verification"] = {check.name: check.value for check in checks}
        (staged / files[2]).write_text(json.dumps(card, indent=2) + "\n")
        for file in files:
            os.replace(staged / file, out / file)
    print(f"saved {out / files[0]}, its PyTorch twin {files[1]} and card {files[2]}")
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    frameworks.verbose(args.verbose)
    try:
        overrides = args.set + ([f"image_size={args.image_size}"] if args.image_size is not None else [])
        return 0 if build(args.model, config.load([config.local(), *overrides]), args.out) else 1
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
