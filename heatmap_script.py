"""Explain an image classifier with many attribution methods in one run, side by side.

    python heatmap_script.py -ip images/chelsea.png -hm grad gb lrp
    python heatmap_script.py -hm all --set sg.noise_scale=0.2      # a seeded random image
    python heatmap_script.py -ip images/astronaut.png --compare-backends   # innvestigate vs captum

Each run writes <out_path>/<image>_<time>/ holding heatmaps.png (the figure), heatmaps.npz
(raw maps and the input), scores.json (center scores, also printed) and run.json (the record).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import settings
from core import config, frameworks
from core.errors import UsageError
from methods.registry import ANY, BACKENDS, METHODS, REGISTRY, expand, groups, label


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
    parser.add_argument("-ip", "--img_path", type=Path, nargs="+", metavar="IMAGE",
                        help="image files (any format PIL reads) and folders of them; default: a seeded random image")
    parser.add_argument("-mp", "--model_path", type=Path,
                        help=f"Keras classifier (.h5/.keras) or TorchScript classifier (.pt); a model from "
                             f"create_model.py brings its twin (default: settings.model_path, {settings.model_path})")
    parser.add_argument("-hm", "--heatmap_methods", nargs="+", default=["all"], metavar="KEY",
                        help="methods to run: keys below, a family, or all (default: all)")
    parser.add_argument("-cl", "--clamp_label", type=int, metavar="CLASS",
                        help="class to explain (default: the predicted class)")
    parser.add_argument("-cp", "--centre_pixel", type=int, metavar="LEVEL",
                        help="set the center pixel to this 8-bit gray level (0-255) before explaining")
    parser.add_argument("-op", "--out_path", type=Path,
                        help=f"folder that receives the run folder (default: settings.out_path, {settings.out_path}/)")
    parser.add_argument("--backend", choices=("auto", *BACKENDS), help="framework of the gradient family: keras "
                        "(innvestigate), torch (captum), or auto: Keras where the model has a Keras version "
                        "(default: settings.backend)")
    parser.add_argument("--compare-backends", action="store_true",
                        help="compute the gradient family on both twins and report how far they agree "
                             f"(-hm defaults to: {' '.join(comparable())})")
    parser.add_argument("--trust-model", action="store_true",
                        help="load Keras models with Lambda layers, whose stored Python code runs on loading")
    parser.add_argument("--preprocess", choices=("unit", "byte", "imagenet"),
                        help="input scaling: pixels in [0, 1], in [0, 255], or ImageNet mean/std "
                             "(default: settings.preprocess)")
    parser.add_argument("--labels", type=Path, metavar="FILE", help="class names, one per line, shown in the figure")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the PyTorch path runs "
                        "(default: settings.device, auto: cuda when available)")
    parser.add_argument("--sanity", choices=("cascading", "independent", "noise"),
                        help="sanity check: re-initialize the layers top down, cumulatively (cascading) or one at a "
                             "time (independent), or add weight noise; writes sanity_*.png/.csv instead of heatmaps")
    parser.add_argument("--growing-patch", action="store_true",
                        help="occlude a patch growing over growing_patch.sizes and recompute the maps")
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="run the methods that read KEY at each value, e.g. --sweep sg.noise_scale=0.05,0.1 "
                             "(repeatable); writes sweep.png/.csv")
    parser.add_argument("--rerun", type=Path, metavar="RUN_JSON",
                        help="repeat the run recorded in a run folder's run.json and report whether every map is "
                             "bit-identical")
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
        names.update({name: label(name) for name in layered} or {key: label(key)})
    return names


RERUN_FLAGS = ("rerun", "out_path", "quiet", "verbose")  # what may come with --rerun


def rerun(args) -> int:
    """Repeats the run recorded in run.json, with its recorded settings, into a new folder (beside
    the recorded one, or in -op), and reports whether every map is bit-identical to the recorded run's."""
    import numpy as np

    defaults = vars(build_parser().parse_args([]))
    extra = [name for name, value in vars(args).items() if name not in RERUN_FLAGS and value != defaults[name]]
    if extra:
        raise UsageError(f"--rerun repeats the recorded command as it was; drop {', '.join(extra)} "
                         "(only -op, -q and -v go with it)")
    record_path = args.rerun
    try:
        record = json.loads(record_path.read_text())
        argv = [str(a) for a in record["command"][1:]]
        settings_used = record["settings"]
        recorded = np.load(record_path.parent / "heatmaps.npz")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"cannot repeat {record_path} ({error}); give the run.json of a finished run") from None
    overrides = [arg for key, value in config.flatten(settings_used).items() for arg in ("--set", f"{key}={value!r}")]
    overrides += ["-op", str(args.out_path)] * (args.out_path is not None) + ["-q"] * args.quiet
    code, folder = run(build_parser().parse_args(argv + overrides), argv + overrides)
    if code == 130:
        return code
    repeated = np.load(folder / "heatmaps.npz")
    differing = sorted(key for key in set(recorded.files) | set(repeated.files)
                       if key not in recorded.files or key not in repeated.files
                       or not np.array_equal(recorded[key], repeated[key]))
    if differing:
        print(f"not identical: {', '.join(differing)} differ from {record_path.parent}")
        return 1
    print(f"identical: all {len(recorded.files)} arrays of {folder} equal {record_path.parent} bit for bit")
    return code


def run(args, argv: list[str]) -> tuple[int, Path | None]:
    from core.compare import format_agreement
    from core.explain import explain
    from core.images import Preprocess, image_files, load_image, random_image, set_center
    from core.model import Model
    from core.output import RunFolder, write_json
    from core.perturb import EngineOptions
    from core.record import run_record
    from core.report import Explained, unique_stems, write
    from core.scores import format_table

    cfg = config.load(overrides=args.set + flag_settings(args))
    model_path, out_path = Path(cfg["model_path"]), Path(cfg["out_path"])
    keys = chosen_methods(args)
    if args.centre_pixel is not None and not 0 <= args.centre_pixel <= 255:
        raise UsageError(f"-cp {args.centre_pixel} is not an 8-bit gray level; give 0 to 255")
    files = image_files(args.img_path) if args.img_path else []  # before the model loads, to fail fast
    if cfg["device"] == "cuda" and not frameworks.torch().cuda.is_available():
        raise UsageError("--device cuda: PyTorch finds no CUDA device here; use --device cpu or auto")
    class_names = read_labels(args.labels) if args.labels else None

    preprocess = Preprocess(**cfg["preprocess"])
    model = Model(model_path, evaluate_with=cfg["evaluate_with"],
                  engine_options=EngineOptions(**cfg["perturbation"], progress=not args.quiet),
                  preprocess=preprocess, device=cfg["device"], trust=args.trust_model)
    preprocess.check(model.input_shape[-1])
    class_names = class_names or model.card.get("class_names")
    if class_names is not None and len(class_names) != model.num_classes:
        raise UsageError(f"{args.labels} has {len(class_names)} names and the model {model.num_classes} classes; "
                         "give one name per line, one line per class")
    if args.clamp_label is not None and not 0 <= args.clamp_label < model.num_classes:
        raise UsageError(f"-cl {args.clamp_label} is not a class of this model; give 0 to {model.num_classes - 1}")
    if args.compare_backends and set(model.frameworks) != set(BACKENDS):
        raise UsageError(f"--compare-backends needs a Keras model and its PyTorch twin; {model_path} has "
                         f"{' and '.join(model.frameworks)} only")
    backends = list(BACKENDS) if args.compare_backends else [model.gradient_backend(cfg["backend"])]

    model.load({REGISTRY[key].runs_on(backend, model.frameworks) for key in keys for backend in backends})
    if files:
        inputs = [(stem, str(path), load_image(path, model.input_shape, cfg["max_image_pixels"]))
                  for stem, path in zip(unique_stems([p.stem for p in files]), files)]
    else:
        inputs = [(f"random_seed{cfg['seed']}", f"random_seed{cfg['seed']}", random_image(model.input_shape, cfg["seed"]))]
    if args.centre_pixel is not None:
        inputs = [(stem, source, set_center(pixels, args.centre_pixel)) for stem, source, pixels in inputs]

    experiments = [bool(args.sanity), args.growing_patch, bool(args.sweep)]
    if any(experiments):
        if sum(experiments) > 1 or len(inputs) > 1 or args.compare_backends:
            raise UsageError("run one experiment (--sanity, --growing-patch or --sweep) at a time, on one image, "
                             "without --compare-backends")
        return experiment(args, argv, cfg, model, backends[0], keys, inputs[0], files), None

    folder = RunFolder(out_path, inputs[0][0] if len(inputs) == 1 else f"{inputs[0][0]}+{len(inputs) - 1}")
    try:
        items, interrupted = [], False
        for stem, source, pixels in inputs:
            results = []
            for backend in backends:
                label = stem + (f" ({backend})" if len(backends) > 1 else "")
                results.append(explain(model, preprocess(pixels), pixels, label, keys, cfg, args.clamp_label, backend,
                                       verbose=args.verbose))
                interrupted = results[-1].interrupted
                if interrupted:
                    break
            items.append(Explained(stem, source, results))
            if interrupted:
                break
        names = display_names(keys, [r for item in items for r in item.results])
        header = {"model": str(model_path), "backend": backends[0], "evaluated_with": model.evaluator_framework,
                  "ground_truth": model.ground_truth is not None}
        rows = write(folder.path, items, backends, names, cfg, header, class_names)
        write_json(folder.path / "run.json", run_record(argv, cfg, keys, model_path, files, interrupted))
    except BaseException:
        folder.discard()
        raise
    final = folder.publish()
    if interrupted:
        print(f"interrupted: the finished maps are in {final} (run.json says incomplete)", file=sys.stderr)
        return 130, final
    for item, row in zip(items, rows):
        if len(items) > 1:
            print(f"\n== {item.source} ==")
        print(format_table(row["methods"], names))
        if "compare_backends" in row:
            print("\n" + format_agreement(row["compare_backends"]["agreement"], names, *backends))
    if model.ground_truth is None:
        print("\n(this model declares no ground truth: the center scores describe the maps, they do not grade them)")
    figures = sorted(final.glob("heatmaps*.png"))
    print(f"\nfigure{'s' if len(figures) > 1 else ''}: {', '.join(map(str, figures))}")
    return (1 if any(r.failures for item in items for r in item.results) else 0), final


def experiment(args, argv, cfg, model, backend, keys, image_input, files) -> int:
    """--sanity, --growing-patch or --sweep on one image; the run folder gets its figures and CSV."""
    import tempfile

    from core import experiments
    from core.output import RunFolder, write_json
    from core.record import run_record

    stem, _, pixels = image_input
    image = model.preprocess(pixels)
    flags = flag_settings(args)
    for text in args.sweep:  # every value checked before any work
        key, values = experiments.parse_sweep(text)
        for value in values:
            config.load(overrides=[*args.set, *flags, f"{key}={value}"])
    folder = RunFolder(Path(cfg["out_path"]), stem)
    try:
        with tempfile.TemporaryDirectory(prefix="heatmaps-variants-") as scratch:
            common = (model, image, pixels, keys)
            if args.sanity:
                outcome = experiments.sanity(*common, cfg, args.clamp_label, backend, args.sanity,
                                                 folder.path, Path(scratch))
            elif args.growing_patch:
                outcome = experiments.growing_patch(*common, cfg, args.clamp_label, backend, folder.path)
            else:
                outcome = experiments.sweep(*common, [*args.set, *flags], args.sweep, args.clamp_label,
                                                backend, folder.path, cfg["figure"])
        write_json(folder.path / "run.json",
                   run_record(argv, cfg, keys, Path(cfg["model_path"]), files, outcome.interrupted))
    except BaseException:
        folder.discard()
        raise
    final = folder.publish()
    if outcome.interrupted:
        print(f"interrupted: the finished steps are in {final} (run.json says incomplete)", file=sys.stderr)
        return 130
    for step, key, error in outcome.failures:
        print(f"{REGISTRY[key].name} ({key}) failed at {step}: {error}")
    print("wrote " + ", ".join(str(p) for p in sorted(final.iterdir()) if p.name != "run.json"))
    return 1 if outcome.failures else 0


def flag_settings(args) -> list[str]:
    """The settings that the command line's flags stand for, as --set overrides (after --set's own)."""
    from core.images import IMAGENET

    flags = {"model_path": args.model_path, "out_path": args.out_path, "seed": args.seed, "backend": args.backend,
             "device": args.device}
    overrides = [f"{key}={value if isinstance(value, int) else str(value)!r}" for key, value in flags.items()
                 if value is not None]
    return overrides + {None: [], "unit": ["preprocess.range='unit'"], "byte": ["preprocess.range='byte'"],
                        "imagenet": ["preprocess.range='unit'", f"preprocess.mean={IMAGENET['mean']}",
                                     f"preprocess.std={IMAGENET['std']}"]}[args.preprocess]


def read_labels(path: Path) -> list[str]:
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read labels file {path} ({error}); give a text file, one class name per line") from None
    return names


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    frameworks.verbose(args.verbose)
    try:
        return rerun(args) if args.rerun else run(args, argv)[0]
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
