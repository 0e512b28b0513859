"""Explain an image classifier with many attribution methods in one run, side by side.

    heatmap_script.py -ip images/chelsea.png -hm grad gb lrp
    heatmap_script.py -hm all --set sg.noise_scale=0.2      # a seeded random image
    heatmap_script.py -ip images/astronaut.png --compare-backends   # innvestigate vs captum

Each run writes <out_path>/<image>_<time>/ holding heatmaps.png (the figure), heatmaps.npz
(raw maps and the input), scores.json (center scores, also printed) and run.json (the record).
The command line is a shell over heatkit's Python API (heatkit/api.py): it parses, calls, prints
and sets the exit code.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.base.images import PRESETS
from heatkit.methods.registry import ANY, BACKENDS, METHODS, comparable, groups

RERUN_FLAGS = ("rerun", "out_path", "quiet", "verbose", "trust_model")  # what may come with --rerun


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Argument errors as one line and exit code 2."""
        print(f"error: {message}; see {self.prog} -h", file=sys.stderr)
        sys.exit(2)


def build_parser() -> Parser:
    families = ", ".join(f"{name} ({len(keys)} maps)" for name, keys in groups().items() if name != "all")
    width = max(len(m.key) for m in METHODS) + 2
    methods = "\n".join(f"  {m.key:<{width}}{m.name}, {m.paper.cite}"
                        + (f"  [--set {m.settings.name}.*]" if m.settings else "")
                        + ("" if ANY in m.impl or len(m.impl) > 1 else f"  ({next(iter(m.impl))} only)")
                        for m in METHODS)
    parser = Parser(
        prog=program_name(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"methods (-hm):\n{methods}\n  {'all':<{width}}every method above\nfamilies: {families}\n\n"
               "Settings and their defaults are in settings.py (in the package: heatkit/defaults.py); a settings.py "
               "in the working folder, --config FILE and --set KEY=VALUE override them.")
    # the short flags and the long names after them are the seed's, kept as aliases
    parser.add_argument("-ip", "--image", "--img_path", dest="img_path", type=Path, nargs="+", metavar="IMAGE",
                        help="image files (any format PIL reads) and folders of them; default: a seeded random image")
    parser.add_argument("-mp", "--model", "--model_path", dest="model_path", metavar="MODEL",
                        help="a model by name, torchvision:resnet50 or timm:vit_small_patch16_224 (with --weights); "
                             "an ONNX file (.onnx); a Keras classifier (.h5, .keras, a SavedModel folder); a "
                             "TorchScript classifier (.pt); PyTorch code as net.py:factory (with --weights and "
                             "--trust-model); a model from create_model.py brings its twin (default: "
                             "settings.model_path)")
    parser.add_argument("--weights", type=Path, metavar="FILE",
                        help="the weights of a model given as code or by name: a state dict (loaded with "
                             "weights_only=True) or a .safetensors file")
    parser.add_argument("--custom-objects", type=Path, metavar="FILE.py",
                        help="a Python file defining the custom layers of a Keras model (with --trust-model)")
    parser.add_argument("-hm", "--methods", "--heatmap_methods", dest="heatmap_methods", nargs="+", default=["all"],
                        metavar="KEY",
                        help="methods to run: keys below, a family, or all (default: all)")
    parser.add_argument("-cl", "--target", "--clamp_label", dest="target", type=int, metavar="CLASS",
                        help="class to explain (default: the predicted class)")
    parser.add_argument("-cp", "--center-level", "--centre_pixel", dest="center_level", type=int, metavar="LEVEL",
                        help="set the center pixel to this 8-bit gray level (0-255) before explaining")
    parser.add_argument("-op", "--out", "--out_path", dest="out_path", type=Path, metavar="FOLDER",
                        help="folder that receives the run folder (default: settings.out_path)")
    parser.add_argument("--backend", choices=("auto", *BACKENDS), help="framework of the gradient family: keras "
                        "(innvestigate), torch (captum), or auto: Keras where the model has a Keras version "
                        "(default: settings.backend)")
    parser.add_argument("--compare-backends", action="store_true",
                        help="compute the gradient family on both twins and report how far they agree "
                             f"(-hm defaults to: {' '.join(comparable())})")
    parser.add_argument("--input-size", type=input_size, metavar="H[xW]",
                        help="input height and width of a PyTorch model that does not fix them, e.g. 64 or 64x48 "
                             "(default: settings.input_size, probed where None)")
    parser.add_argument("--trust-model", action="store_true",
                        help="load models whose loading runs code: Keras Lambda layers, modules saved whole with "
                             "torch.save, and PyTorch models given as code")
    parser.add_argument("--preprocess", choices=tuple(PRESETS),
                        help="input scaling: pixels in [0, 1], in [0, 255], ImageNet mean/std (imagenet, torch), "
                             "in [-1, 1] (tf), or BGR bytes less ImageNet's mean (caffe), as keras.applications' "
                             "modes (default: settings.preprocess)")
    curves = parser.add_mutually_exclusive_group()
    curves.add_argument("--curves", dest="curves", action="store_const", const=True,
                        help="draw the faithfulness curves and score the metrics that evaluate the model, whatever "
                             "they cost (default: where they cost no more model passes than the maps)")
    curves.add_argument("--no-curves", dest="curves", action="store_const", const=False,
                        help="leave the faithfulness curves and the metrics that evaluate the model out")
    parser.add_argument("--labels", type=Path, metavar="FILE", help="class names, one per line, shown in the figure")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="skip, with a note, the image files of -ip that cannot be read, instead of refusing the run")
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
    parser.add_argument("--dataset", metavar="SOURCE",
                        help="explain a dataset on Dask: a folder of images (labels from subfolders or labels.csv), "
                             "random:N (center-pixel, region and two-pixel models) or digits (the held-out digits); "
                             "resumable; ends with a leaderboard")
    parser.add_argument("--evaluate-metrics", action="store_true",
                        help="which metric can be believed: the methods on known-answer models built here "
                             "(evaluate_metrics.models), each metric's ranking of them against the ground truth's "
                             "(Kendall's tau); writes metrics.csv/.png")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="with --dataset: the Dask scheduler of a cluster, whose workers need none of this "
                             "machine's files (tcp://HOST:PORT)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="with --dataset: a local cluster of N worker processes; 0: this process (default: a "
                             "worker a core where the run's estimate passes 60 s, else 0)")
    parser.add_argument("--seed", type=int, help="seed of the random input image (default: settings.seed)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="a settings file: the values it names override the defaults and a settings.py in "
                             "the working folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting for this run, e.g. --set ig.steps=128 (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show framework logs and tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def program_name() -> str:
    """How the command was started, for its help and errors: heatmap_script.py, heatkit,
    heatmap_script (the installed alias) or python -m heatkit."""
    name = Path(sys.argv[0]).name
    return "python -m heatkit" if name == "__main__.py" else \
        name if name in ("heatmap_script.py", "heatmap_script") else "heatkit"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    frameworks.verbose(args.verbose)
    stop_on_sigterm()
    try:
        if args.rerun:
            return rerun_command(args)
        if args.dataset:
            return dataset_command(args, argv)
        if args.evaluate_metrics:
            return metrics_command(args)
        if args.scheduler or args.workers is not None:
            raise UsageError("--scheduler and --workers go with --dataset")
        if args.sanity or args.growing_patch or args.sweep:
            return experiment_command(args, argv)
        return explain_command(args, argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        if args.verbose and error.__cause__ is not None:  # what the one line summed up, for a bug report
            traceback.print_exception(error.__cause__, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130


def explain_command(args, argv: list[str]) -> int:
    import heatkit

    settings = run_settings(args)
    check_output(args, settings)
    run = heatkit.explain(None, args.img_path, args.heatmap_methods, target=args.target,
                          settings=settings, compare_backends=args.compare_backends,
                          center_level=args.center_level, labels=args.labels, trust=args.trust_model,
                          progress=not args.quiet, verbose=args.verbose)
    if not run.items:
        print("interrupted before any image was explained: nothing was written", file=sys.stderr)
        return 130
    try:
        folder = run.save(command=argv)
    except KeyboardInterrupt:  # between the run and its saving, which holds the signals itself
        run.interrupted = True
        folder = run.save(command=argv)
    for note in run.notes:
        print(f"note: {note}", file=sys.stderr)
    if run.interrupted:
        print(f"interrupted: the finished maps are in {folder} (run.json says incomplete)", file=sys.stderr)
        return 130
    print(run.summary())
    figures = sorted(folder.glob("heatmaps*.png"))
    print(f"\nfigure{'s' if len(figures) > 1 else ''}: {', '.join(map(str, figures))}")
    return 1 if run.failed else 0


def dataset_command(args, argv: list[str]) -> int:
    """--dataset: every image of a dataset on Dask, into one table and a leaderboard."""
    import heatkit

    if args.img_path or args.sanity or args.growing_patch or args.sweep or args.compare_backends:
        raise UsageError("--dataset explains its own images: drop -ip and the experiments")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers {args.workers}: give 0 (this process) or more")
    settings = run_settings(args)
    check_output(args, settings)
    try:
        found = heatkit.explain_dataset(None, args.dataset, args.heatmap_methods,
                                        settings=settings, scheduler=args.scheduler,
                                        workers=args.workers, trust=args.trust_model, progress=not args.quiet,
                                        command=argv)
    except KeyboardInterrupt:
        print("interrupted: every finished image is kept; the same command resumes", file=sys.stderr)
        return 130
    for note in found.notes:
        print(f"note: {note}", file=sys.stderr)
    print(found.text)
    print(f"\n{found.images} images ({found.computed} computed now), {found.failed} failed maps: {found.folder}")
    return 1 if found.failed else 0


def metrics_command(args) -> int:
    """--evaluate-metrics: the known-answer models built (and verified) in a temporary folder at
    evaluate_metrics.image_size, every method on their seeded images, and the metrics graded."""
    import contextlib
    import io
    import tempfile

    import heatkit
    from heatkit.pipeline import config
    from heatkit.testmodels.build import build

    if args.img_path or args.model_path or args.sanity or args.growing_patch or args.sweep or args.compare_backends:
        raise UsageError("--evaluate-metrics builds its own models and images: drop -ip, -mp and the experiments")
    overrides = run_settings(args)
    check_output(args, overrides)
    cfg = config.load(overrides)
    params = cfg["evaluate_metrics"]
    with tempfile.TemporaryDirectory() as models:
        for name in params["models"]:
            with contextlib.redirect_stdout(io.StringIO()) as log:
                built = build(name, config.update(cfg, {"image_size": params["image_size"]}), Path(models))
            if not built:
                raise UsageError(f"the {name} model failed its verification:\n{log.getvalue()}")
        found = heatkit.evaluate_metrics([str(Path(models) / f"{name}.h5") for name in params["models"]],
                                         args.heatmap_methods, settings=overrides, progress=not args.quiet)
    folder = found.save(Path(cfg["out_path"]))
    print(found.table())
    print(f"\nKendall's tau of each metric's ranking of the methods with the ground truth's, over "
          f"{params['images']} images a model (+1: the same order): {folder}")
    return 0


def experiment_command(args, argv: list[str]) -> int:
    """--sanity, --growing-patch or --sweep on one image; the run folder gets its figures and CSV."""
    import heatkit

    if sum([bool(args.sanity), args.growing_patch, bool(args.sweep)]) > 1 or args.compare_backends:
        raise UsageError("run one experiment (--sanity, --growing-patch or --sweep) at a time, on one image, "
                         "without --compare-backends")
    settings = run_settings(args)
    check_output(args, settings)
    common = dict(target=args.target, settings=settings, center_level=args.center_level,
                  trust=args.trust_model, progress=not args.quiet)
    if args.sanity:
        found = heatkit.sanity(None, args.img_path, args.heatmap_methods, mode=args.sanity, **common)
    elif args.growing_patch:
        found = heatkit.growing_patch(None, args.img_path, args.heatmap_methods, **common)
    else:
        found = heatkit.sweep(None, args.img_path, args.heatmap_methods, sweeps=dict(map(parse_sweep, args.sweep)),
                              **common)
    folder = found.save(command=argv)
    if found.interrupted:
        print(f"interrupted: the finished steps are in {folder} (run.json says incomplete)", file=sys.stderr)
        return 130
    if found.failures or found.skipped or found.scores:
        print(found.summary())
    print("wrote " + ", ".join(str(p) for p in sorted(folder.iterdir()) if p.name != "run.json"))
    return 1 if found.failures else 0


def rerun_command(args) -> int:
    import heatkit

    defaults = vars(build_parser().parse_args([]))
    extra = [name for name, value in vars(args).items() if name not in RERUN_FLAGS and value != defaults[name]]
    if extra:
        raise UsageError(f"--rerun repeats the recorded command as it was; drop {', '.join(extra)} "
                         "(only -op, -q, -v and --trust-model go with it)")
    repeated = heatkit.rerun(args.rerun, args.out_path, progress=not args.quiet, trust=args.trust_model)
    if repeated.run.interrupted:
        return 130
    if repeated.differing:
        print(f"not identical: {', '.join(repeated.differing)} differ from {repeated.recorded}")
        return 1
    print(f"identical: all {repeated.compared} arrays of {repeated.folder} equal {repeated.recorded} bit for bit")
    return 1 if repeated.run.failed else 0


def stop_on_sigterm() -> None:
    """SIGTERM (what batch schedulers and `timeout` send) stops a run as Ctrl-C does, keeping what
    finished."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def check_output(args, settings: list[str | dict]) -> None:
    """The folder a run will be written to, checked before any work: a run of minutes should not
    find at its end that it cannot write."""
    from heatkit.pipeline import config
    from heatkit.pipeline.output import check_writable

    check_writable(Path(args.out_path or config.load(settings)["out_path"]))


def parse_sweep(text: str) -> tuple[str, list]:
    """KEY=V1,V2,... as the key and its values, each a Python literal where it is one."""
    from heatkit.pipeline import config

    key, separator, values = text.partition("=")
    if not separator or "." not in key or not values:
        raise UsageError(f"--sweep {text!r}: write METHOD.SETTING=V1,V2,... e.g. --sweep sg.noise_scale=0.1,0.2")
    return key, [config.parse_override(f"{key}={value.strip()}")[1] for value in values.split(",")]


def input_size(text: str) -> list[int]:
    """H or HxW as [height, width]."""
    try:
        sides = [int(side) for side in text.lower().split("x")]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; give H or HxW, e.g. 64 or 64x48")
    return sides * (3 - len(sides))


def run_settings(args) -> list[str | dict]:
    """The run's overrides of the defaults: the values of a settings.py in the working folder, then
    of --config FILE, then --set's, then the flags'."""
    from heatkit.pipeline import config

    return [config.local(), config.read_file(args.config) if args.config else {}, *args.set, *flag_settings(args)]


def flag_settings(args) -> list[str]:
    """The settings that the command line's flags stand for, as --set overrides (after --set's own)."""
    flags = {"model_path": args.model_path, "weights": args.weights, "custom_objects": args.custom_objects,
             "out_path": args.out_path, "seed": args.seed,
             "backend": args.backend, "device": args.device, "input_size": args.input_size,
             "skip_bad_images": args.skip_bad_images or None, "faithfulness.curves": args.curves}
    overrides = [f"{key}={value if isinstance(value, (int, list)) else str(value)!r}" for key, value in flags.items()
                 if value is not None]
    return overrides + ([f"preprocess={args.preprocess!r}"] if args.preprocess else [])
