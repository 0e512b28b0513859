"""Explain an image classifier with many attribution methods in one run, side by side.

    python heatmap_script.py -ip images/chelsea.png -hm grad gb lrp
    python heatmap_script.py -hm all --set sg.noise_scale=0.2      # a seeded random image
    python heatmap_script.py -ip images/astronaut.png --compare-backends   # innvestigate vs captum

Each run writes <out_path>/<image>_<time>/ holding heatmaps.png (the figure), heatmaps.npz
(raw maps and the input), scores.json (center scores, also printed) and run.json (the record).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import settings
from core import config, frameworks
from core.errors import UsageError
from methods.registry import ANY, BACKENDS, METHODS, REGISTRY, expand, groups


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Argument errors as one line and exit code 2."""
        print(f"error: {message}; see {self.prog} -h", file=sys.stderr)
        sys.exit(2)


def build_parser() -> Parser:
    families = ", ".join(f"{name} ({len(keys)} maps)" for name, keys in groups().items() if name != "all")
    methods = "\n".join(f"  {m.key:<17}{m.name}, {m.paper.cite}" + (f"  [--set {m.settings}.*]" if m.settings else "")
                        + ("" if ANY in m.impl or len(m.impl) > 1 else f"  ({next(iter(m.impl))} only)")
                        for m in METHODS)
    parser = Parser(
        prog="heatmap_script.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"methods (-hm):\n{methods}\n  all              every method above\nfamilies: {families}\n\n"
               "Settings and their defaults are in settings.py; override any with --set KEY=VALUE.")
    parser.add_argument("-ip", "--img_path", type=Path, help="image file (any format PIL reads); "
                        "default: a seeded random image")
    parser.add_argument("-mp", "--model_path", type=Path, default=Path(settings.model_path),
                        help=f"Keras model (.h5/.keras); its PyTorch twin is the same stem with .pt "
                             f"(default: {settings.model_path})")
    parser.add_argument("-hm", "--heatmap_methods", nargs="+", default=["all"], metavar="KEY",
                        help="methods to run: keys below, a family, or all (default: all)")
    parser.add_argument("-cl", "--clamp_label", type=int, metavar="CLASS",
                        help="class to explain (default: the predicted class)")
    parser.add_argument("-cp", "--centre_pixel", type=int, metavar="LEVEL",
                        help="set the center pixel to this 8-bit gray level (0-255) before explaining")
    parser.add_argument("-op", "--out_path", type=Path, default=Path(settings.out_path),
                        help=f"folder that receives the run folder (default: {settings.out_path}/)")
    parser.add_argument("--backend", choices=BACKENDS, help="framework of the gradient family: keras "
                        "(innvestigate) or torch (captum, on the PyTorch twin) (default: settings.backend)")
    parser.add_argument("--compare-backends", action="store_true",
                        help="compute the gradient family on both twins and report how far they agree "
                             f"(-hm defaults to: {' '.join(comparable())})")
    parser.add_argument("--seed", type=int, help="seed of the random input image (default: settings.seed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting for this run, e.g. --set ig.steps=128 (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show framework logs and tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def comparable() -> list[str]:
    """The methods that run on both frameworks."""
    return [m.key for m in METHODS if set(m.impl) == set(BACKENDS)]


def chosen_methods(args) -> list[str]:
    keys = expand(args.heatmap_methods)
    if not args.compare_backends:
        return keys
    if args.heatmap_methods == ["all"]:
        return comparable()
    single = [key for key in keys if key not in comparable()]
    if single:
        raise UsageError(f"--compare-backends compares methods that run on both frameworks; drop {', '.join(single)}")
    return keys


def display_names(keys: list[str], results) -> dict[str, str]:
    """Figure and table names by map key, in column order (a method run on several layers, as
    `gradcam@conv2`, gets one column per layer)."""
    names = {}
    for key in keys:
        layered = dict.fromkeys(name for result in results for name in result.maps if name.startswith(f"{key}@"))
        names.update({name: f"{REGISTRY[key].name} @{name.split('@', 1)[1]}" for name in layered} or
                     {key: REGISTRY[key].name})
    return names


def run(args, argv: list[str]) -> int:
    from core.compare import agreement, format_agreement
    from core.explain import explain, scores
    from core.images import check_image_path, load_image, random_image, set_center
    from core.model import Model
    from core.output import RunFolder, write_json, write_npz
    from core.perturb import EngineOptions
    from core.plotting import extras_figure, heatmap_figure
    from core.record import run_record
    from core.scores import format_table

    flags = [f"seed={args.seed}"] * (args.seed is not None) + [f"backend={args.backend!r}"] * (args.backend is not None)
    cfg = config.load(overrides=args.set + flags)
    keys = chosen_methods(args)
    if args.centre_pixel is not None and not 0 <= args.centre_pixel <= 255:
        raise UsageError(f"-cp {args.centre_pixel} is not an 8-bit gray level; give 0 to 255")
    if args.img_path is not None:
        check_image_path(args.img_path)  # before the model loads, to fail fast

    model = Model(args.model_path, backend=cfg["backend"], evaluate_with=cfg["evaluate_with"],
                  engine_options=EngineOptions(**cfg["perturbation"], progress=not args.quiet))
    if args.img_path is None:
        image, stem = random_image(model.input_shape, cfg["seed"]), f"random_seed{cfg['seed']}"
    else:
        image, stem = load_image(args.img_path, model.input_shape), args.img_path.stem
    if args.centre_pixel is not None:
        image = set_center(image, args.centre_pixel)
    if args.clamp_label is not None and not 0 <= args.clamp_label < model.num_classes:
        raise UsageError(f"-cl {args.clamp_label} is not a class of this model; give 0 to {model.num_classes - 1}")
    backends = list(BACKENDS) if args.compare_backends else [cfg["backend"]]
    if args.compare_backends and "torch" not in model.frameworks:
        raise UsageError(f"--compare-backends needs the PyTorch twin {args.model_path.with_suffix('.pt')}; "
                         "build it with create_model.py")

    folder = RunFolder(args.out_path, stem)
    try:
        results = [explain(model, image, stem + (f" ({backend})" if len(backends) > 1 else ""), keys, cfg,
                           args.clamp_label, backend, verbose=args.verbose) for backend in backends]
        result = results[0]
        names = display_names(keys, results)
        table = scores(result, cfg["figure"]["crop"])
        figure = heatmap_figure(results, names, crop=cfg["figure"]["crop"],
                                column_width=cfg["figure"]["column_width"], cmap=cfg["figure"]["cmap"])
        figure.savefig(folder.path / "heatmaps.png", dpi=cfg["figure"]["dpi"])
        maps = {"input": image.squeeze(-1) if image.shape[-1] == 1 else image, **result.maps}
        compared = {}
        if args.compare_backends:
            second = results[1]
            maps.update({f"{backends[1]}/{key}": value for key, value in second.maps.items()})
            compared = {"compare_backends": {
                "backends": backends,
                f"methods_{backends[1]}": scores(second, cfg["figure"]["crop"]),
                "agreement": {key: agreement(result.maps[key], second.maps[key])
                              for key in names if key in result.maps and key in second.maps}}}
        write_npz(folder.path / "heatmaps.npz", maps)
        for key, extras in result.extras.items():
            (folder.path / key).mkdir()
            write_npz(folder.path / key / "extras.npz", extras)
            extras_figure(extras, f"{names[key]}: {stem}").savefig(folder.path / key / "panels.png",
                                                                      dpi=cfg["figure"]["dpi"])
        write_json(folder.path / "scores.json", {
            "image": str(args.img_path) if args.img_path else stem,
            "model": str(args.model_path),
            "ground_truth": model.ground_truth is not None,
            "true_label": result.true_label,
            "predicted_label": result.predicted,
            "explained_class": result.target,
            "explained_probability": result.target_probability,
            "backend": cfg["backend"],
            "methods": table,
            **compared,
        })
        write_json(folder.path / "run.json", run_record(argv, cfg, keys, args.model_path, args.img_path))
    except BaseException:
        folder.discard()
        raise
    final = folder.publish()
    print(format_table(table, names))
    if compared:
        print("\n" + format_agreement(compared["compare_backends"]["agreement"], names, *backends))
    print(f"\nfigure: {final / 'heatmaps.png'}")
    return 1 if any(r.failures for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    frameworks.verbose(args.verbose)
    try:
        return run(args, argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
