"""Build the test models as a Keras model and a PyTorch twin with identical weights.

    python create_model.py                      # models/center_pixel.{h5,pt,json}, 227 x 227
    python create_model.py --image-size 15 --out /tmp/small

Each model is verified before it is saved; if any check fails nothing is written and the
exit code is 1. Parameters come from settings.py (the center_pixel dict), or --set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from core import config, frameworks
from core.errors import UsageError


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["center_pixel"], default="center_pixel", help="which model to build")
    parser.add_argument("--image-size", type=int, help="odd side of the input image (default: settings.image_size)")
    parser.add_argument("--out", type=Path, default=Path("models"), help="output folder (default: models/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's log messages")
    return parser.parse_args(argv)


def build_center_pixel(cfg: dict, out: Path) -> bool:
    from core.center_pixel import build_weights
    from core.keras_models import center_pixel as keras_center_pixel
    from core.model import KerasNet, TorchNet
    from core.torch_models import CenterPixelNet, torch
    from core.verify import center_pixel_checks

    params = cfg["center_pixel"]
    weights = build_weights(cfg["image_size"], cfg["num_classes"], params["alpha"], params["relu"],
                            params["weight_seed"], params["noise_weight_scale"])
    keras_model = keras_center_pixel(weights)
    twin = CenterPixelNet.from_weights(weights)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".staging-") as staging:
        staged = Path(staging)
        keras_model.save(staged / "center_pixel.h5", save_format="h5")
        torch.save(twin.state_dict(), staged / "center_pixel.pt")
        # Verify the files as they will be loaded, not the objects in memory.
        card = {
            "architecture": "center_pixel",
            "arguments": {"image_size": weights.image_size, "num_classes": cfg["num_classes"],
                          "relu": weights.relu},
            "input_shape": [weights.image_size, weights.image_size, 1],
            "num_classes": cfg["num_classes"],
            "ground_truth": "center_pixel",
            "settings": params,
        }
        checks = center_pixel_checks(KerasNet(staged / "center_pixel.h5"),
                                     TorchNet.load(staged / "center_pixel.pt", card),
                                     cfg["num_classes"], params["alpha"], params["verify_per_class"],
                                     params["verify_seed"])
        print(f"center-pixel model, {weights.image_size}x{weights.image_size}, {cfg['num_classes']} classes:")
        for check in checks:
            print(f"  {check}")
        if not all(check.passed for check in checks):
            print("verification failed: nothing saved", file=sys.stderr)
            return False
        card["verification"] = {check.name: check.value for check in checks}
        (staged / "center_pixel.json").write_text(json.dumps(card, indent=2) + "\n")
        for name in ("center_pixel.h5", "center_pixel.pt", "center_pixel.json"):
            os.replace(staged / name, out / name)
    print(f"saved {out / 'center_pixel.h5'}, its PyTorch twin center_pixel.pt and card center_pixel.json")
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    frameworks.verbose(args.verbose)
    try:
        overrides = args.set + ([f"image_size={args.image_size}"] if args.image_size is not None else [])
        cfg = config.load(overrides=overrides)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if build_center_pixel(cfg, args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
