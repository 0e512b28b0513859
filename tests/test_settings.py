"""settings.py, --set overrides and the registry stay consistent and checked, and every setting takes effect."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

import create_model
from conftest import replace_method, run_cli, image_maps, image_scores
from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.methods.registry import METHODS, REGISTRY, SETTINGS, expand
from heatkit.metrics.registry import SETTINGS as METRIC_SETTINGS
from heatkit.model import Model
from heatkit.pipeline import config


def edited_settings(tmp_path, extra: str):
    """A copy of settings.py with `extra` appended, as a user would edit it."""
    path = tmp_path / "settings.py"
    path.write_text(config.DEFAULTS_FILE.read_text() + extra)
    return path


def test_every_setting_has_a_rule_and_every_rule_a_setting(tmp_path, monkeypatch):
    assert sorted(config.load()) == sorted(config.RULES)  # and load() refuses either kind of mismatch
    with pytest.raises(UsageError, match="unknown setting 'typo_setting'"):
        config.read_file(edited_settings(tmp_path, "typo_setting = 1\n"))
    monkeypatch.setattr(config, "DEFAULTS_FILE", edited_settings(tmp_path, "ig = dict(reference=0.0, rule='gausslegendre')\n"))
    with pytest.raises(UsageError, match="setting 'ig.steps' is missing"):
        config.load()


def test_a_settings_file_overrides_only_the_values_it_names(tmp_path, monkeypatch):
    """A settings.py in the working folder, then --config FILE, then --set: each overrides what it
    names and keeps the other defaults; the repository's own settings.py is the defaults."""
    defaults = config.load()
    assert config.DEFAULTS_FILE.samefile(Path(__file__).parents[1] / "settings.py")
    (tmp_path / "settings.py").write_text("ig = dict(steps=7)\nseed = 5\n")
    (tmp_path / "other.py").write_text("ig = dict(steps=9)\n")
    monkeypatch.chdir(tmp_path)
    assert config.load() == defaults  # the API reads no file it finds; a command line adds it
    local = config.load([config.local()])
    assert local["ig"] == {**defaults["ig"], "steps": 7} and local["seed"] == 5
    assert config.read_file(tmp_path / "other.py") == {"ig.steps": 9}
    assert config.load([config.read_file(tmp_path / "other.py"), "seed=6"])["ig"]["steps"] == 9
    (tmp_path / "other.py").write_text("ig = dict(stepz=9)\n")
    with pytest.raises(UsageError, match="other.py: unknown setting 'ig.stepz'; did you mean 'ig.steps'"):
        config.read_file(tmp_path / "other.py")


def test_every_method_dict_is_declared_by_the_methods_that_read_it():
    cfg = config.load()
    assert {m.settings.name for m in METHODS if m.settings} == set(SETTINGS)
    for name, declared in SETTINGS.items():
        assert cfg[name] == declared.defaults()


@pytest.mark.parametrize("override, key, value", [
    ("sg.noise_scale=0.2", ("sg", "noise_scale"), 0.2),
    ("sg.noise_scale=1", ("sg", "noise_scale"), 1.0),  # an int where a float is due is converted
    ("sg.type=vargrad", ("sg", "type"), "vargrad"),  # bare words are strings
    ("gradcam.layers=None", ("gradcam", "layers"), None),
    ("ig.steps=128", ("ig", "steps"), 128),
    ("figure.cmap=bwr", ("figure", "cmap"), "bwr"),
    ("seed=3", ("seed",), 3),
])
def test_overrides_are_parsed_and_applied(override, key, value):
    cfg = config.load(overrides=[override])
    for part in key:
        cfg = cfg[part]
    assert cfg == value and type(cfg) is type(value)


def test_overrides_leave_the_file_untouched():
    config.load(overrides=["ig.steps=3"])
    assert config.load()["ig"]["steps"] == 64


def test_overrides_as_a_dict_nested_or_flat():
    assert config.load({"ig": {"steps": 5}})["ig"]["steps"] == config.load({"ig.steps": 5})["ig"]["steps"] == 5
    with pytest.raises(UsageError, match="did you mean 'ig.steps'"):
        config.load({"ig.stepz": 5})


@pytest.mark.parametrize("override, message", [
    ("ig.stepz=3", "did you mean 'ig.steps'"),
    ("nothing.here=3", "unknown setting 'nothing.here'"),
    ("ig=3", "ig is a group of settings"),
    ("ig.steps=2.5", "must be an integer"),
    ("ig.steps=-4", "must be at least 2"),
    ("sg.type=cube", "must be one of 'smoothgrad', 'smoothgrad_abs', 'smoothgrad_sq', 'vargrad'"),
    ("image_size=8", "must be odd"),
    ("seed=-1", "must be at least 0"),
    ("lrp.epsilon=0", "must be above 0.0"),
    ("figure.cmap=viridis", "must be one of"),
    ("=3", "--set takes KEY=VALUE"),
])
def test_bad_overrides_say_what_to_fix(override, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config.load(overrides=[override])


def test_groups_expand_in_order_without_repeats():
    assert expand(["lrp", "grad", "lrp.z"]) == ["lrp.z", "lrp.epsilon", "lrp.alpha1beta0", "lrp.alpha2beta1",
                                                "lrp.epsilon_plus_flat", "lrp.epsilon_alpha2beta1_flat",
                                                "lrp.epsilon_gamma_box", "grad"]
    assert expand(["all"]) == list(REGISTRY)


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(UsageError) as error:
        expand(["gradcam++"])
    assert all(key in str(error.value) for key in REGISTRY)


# ---- every setting takes effect, from settings.py or from --set ----------------------------------

def only_folder(out):
    [folder] = out.iterdir()
    return folder


def scores_of(out):
    return image_scores(only_folder(out))


def card_of(out, name="center_pixel"):
    return json.loads((out / f"{name}.json").read_text())


def probe_image_size(small, tmp_path, capsys):
    assert create_model.main(["--out", str(tmp_path), "--set", "image_size=7"]) == 0
    assert card_of(tmp_path)["input_shape"] == [7, 7, 1]


def probe_num_classes(small, tmp_path, capsys):
    assert create_model.main(["--out", str(tmp_path), "--set", "image_size=5", "--set", "num_classes=16"]) == 0
    assert card_of(tmp_path)["num_classes"] == 16


def probe_center_pixel(small, tmp_path, capsys):
    from heatkit.testmodels.center_pixel import build_weights

    assert create_model.main(["--out", str(tmp_path), "--set", "image_size=5", "--set", "center_pixel.weight_seed=4"]) == 0
    stored = Model(tmp_path / "center_pixel.h5").keras.weights("dense")[0]
    assert np.array_equal(stored, build_weights(5, 256, 10.0, True, 4, 1.0).kernel)


def probe_evaluate_metrics(small, tmp_path, capsys):
    argv = ["--evaluate-metrics", "-hm", "grad", "occlusion", "ig", "--set", "evaluate_metrics.models=['region']",
            "--set", "evaluate_metrics.image_size=11", "--set", "center_pixel.region_side=3",
            "--set", "evaluate_metrics.images=2", "--set", "evaluate_metrics.seeds=[3]", "-op", str(tmp_path), "-q"]
    assert run_cli(*argv) == 0
    (folder,) = tmp_path.glob("evaluate_metrics_*")
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    assert {row["model"] for row in rows} == {"region"} and max(int(row["images"]) for row in rows) == 2


def probe_digits(small, tmp_path, capsys):
    argv = ["--model", "digits", "--out", str(tmp_path), "--set", "digits.image_size=8", "--set", "digits.epochs=1",
            "--set", "digits.min_accuracy=1.0"]
    assert create_model.main(argv) == 1 and "(at least 100%)" in capsys.readouterr().out


def probe_model_path(small, tmp_path, capsys):
    assert run_cli("--set", f"model_path={str(small)!r}", "-hm", "grad", "-op", tmp_path, "-q") == 0
    assert scores_of(tmp_path)["model"] == str(small)


def probe_out_path(small, tmp_path, capsys):
    assert run_cli("-mp", small, "--set", f"out_path={str(tmp_path / 'elsewhere')!r}", "-hm", "grad", "-q") == 0
    assert only_folder(tmp_path / "elsewhere").name.startswith("random_seed0_")


def probe_seed(small, tmp_path, capsys):
    assert run_cli("-mp", small, "--set", "seed=5", "-hm", "grad", "-op", tmp_path, "-q") == 0
    assert only_folder(tmp_path).name.startswith("random_seed5_")


def probe_max_image_pixels(small, tmp_path, capsys):
    from PIL import Image

    Image.new("L", (20, 20)).save(tmp_path / "image.png")
    assert run_cli("-mp", small, "-ip", tmp_path / "image.png", "--set", "max_image_pixels=10", "-op", tmp_path) == 2
    assert "more than the limit of 10" in capsys.readouterr().err


def probe_input_size(small, tmp_path, capsys):
    """A fully convolutional TorchScript net takes any size: it runs at the one given."""
    torch = frameworks.torch()
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    torch.jit.script(net).save(str(tmp_path / "any_size.pt"))
    for flag in (["--set", "input_size=[20, 16]"], ["--input-size", "20x16"]):
        out = tmp_path / flag[0]
        assert run_cli("-mp", tmp_path / "any_size.pt", "--trust-model", *flag, "-hm", "grad", "-op", out, "-q") == 0
        assert image_maps(only_folder(out))["grad"].shape == (20, 16)


def probe_skip_bad_images(small, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("L", (15, 15)).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"no image")
    assert run_cli("-mp", small, "-ip", folder, "-hm", "grad", "-op", tmp_path / "a", "-q") == 2
    assert run_cli("-mp", small, "-ip", folder, "-hm", "grad", "--set", "skip_bad_images=True", "-op", tmp_path / "b",
                   "-q") == 0
    assert "note: skipped" in capsys.readouterr().err


def probe_scheduler_timeout(small, tmp_path, capsys):
    """A port that takes connections and never answers: the run gives up after the setting's seconds."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.monotonic()
        assert run_cli("-mp", small, "--dataset", "random:2", "--scheduler", f"tcp://127.0.0.1:{silent.getsockname()[1]}",
                       "--set", "scheduler_timeout=1.5", "-hm", "grad", "-op", tmp_path, "-q") == 2
        assert time.monotonic() - start < 15
    assert "1.5 s" in capsys.readouterr().err


def probe_output(small, tmp_path, capsys):
    """A model returning (logits, aux): its first output by default, the one named by `output` else."""
    (tmp_path / "two.py").write_text(
        "import torch\n\n\nclass Two(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a, self.b = torch.nn.Linear(225, 3), torch.nn.Linear(225, 4)\n\n    def forward(self, x):\n"
        "        return self.a(x.flatten(1)), self.b(x.flatten(1))\n")
    for chosen, classes in ((None, 3), (1, 4)):
        out = tmp_path / str(chosen)
        assert run_cli("-mp", f"{tmp_path / 'two.py'}:Two", "--trust-model", "--set", f"output={chosen}", "-hm",
                       "grad", "-op", out, "-q") == 0
        recorded = json.loads((only_folder(out) / "run.json").read_text())["model"]["head"]
        assert recorded["output"] == f"[{chosen or 0}]" and recorded["classes"] == classes


def probe_weights(small, tmp_path, capsys):
    """The state dict of a model given as code: two weights files, two different maps."""
    torch = frameworks.torch()
    (tmp_path / "net.py").write_text("import torch\n\n\ndef build():\n"
                                     "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(225, 3))\n")
    maps = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(225, 3)).state_dict(), tmp_path / "w.pt")
        out = tmp_path / f"out{seed}"
        assert run_cli("-mp", f"{tmp_path / 'net.py'}:build", "--trust-model", "--set",
                       f"weights={str(tmp_path / 'w.pt')!r}", "-cl", 0, "-hm", "grad", "-op", out, "-q") == 0
        maps.append(image_maps(only_folder(out))["grad"])
        torch.manual_seed(seed)
        expected = torch.nn.Linear(225, 3).weight[0].detach().numpy().reshape(15, 15)
        np.testing.assert_allclose(maps[-1], expected, rtol=1e-6)
    assert not np.allclose(*maps)


CUSTOM_LAYER = "import tensorflow as tf\n\n\nclass Double(tf.keras.layers.Layer):\n    def call(self, inputs):\n" \
               "        return 2.0 * inputs\n"


def probe_custom_objects(small, tmp_path, capsys):
    """A Keras file with a custom layer (x -> 2x before a Dense): refused without its code, and with
    it, the gradient of class 1 is twice the Dense layer's column."""
    import importlib.util

    tf = frameworks.tensorflow()
    (tmp_path / "double.py").write_text(CUSTOM_LAYER)
    spec = importlib.util.spec_from_file_location("double", tmp_path / "double.py")
    double = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(double)
    inputs = tf.keras.Input((15, 15, 1))
    dense = tf.keras.layers.Dense(3, kernel_initializer=tf.keras.initializers.GlorotNormal(seed=0))
    model = tf.keras.Model(inputs, dense(double.Double()(tf.keras.layers.Flatten()(inputs))))
    model.save(tmp_path / "custom.keras")
    assert run_cli("-mp", tmp_path / "custom.keras", "-hm", "grad", "-op", tmp_path / "out", "-q") == 2
    assert "layers Keras does not know, Double" in capsys.readouterr().err
    assert run_cli("-mp", tmp_path / "custom.keras", "--trust-model", "--set",
                   f"custom_objects={str(tmp_path / 'double.py')!r}", "-cl", 1, "-hm", "grad", "-op", tmp_path / "out",
                   "-q") == 0
    grad = image_maps(only_folder(tmp_path / "out"))["grad"]
    np.testing.assert_allclose(grad, 2 * dense.get_weights()[0][:, 1].reshape(15, 15), rtol=1e-6)


def probe_backend(small, tmp_path, capsys):
    assert run_cli("-mp", small, "--set", "backend='torch'", "-hm", "grad", "-op", tmp_path, "-q") == 0
    scores = scores_of(tmp_path)
    assert scores["backend"] == "torch" and scores["methods"]["grad"]["framework"] == "torch"


def probe_evaluate_with(small, tmp_path, capsys):
    assert run_cli("-mp", small, "--set", "evaluate_with='keras'", "-hm", "grad", "-op", tmp_path, "-q") == 0
    assert scores_of(tmp_path)["evaluated_with"] == "keras"


def probe_device(small, tmp_path, capsys):
    if frameworks.torch().cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert run_cli("-mp", small, "--set", "device='cuda'", "-hm", "grad", "-op", tmp_path) == 2
    assert "no CUDA device" in capsys.readouterr().err


def probe_preprocess(small, tmp_path, capsys):
    """A black image with center level 1: scaled to bytes, the model reads 1 / 255 * 255 = 1.0, level 255."""
    from PIL import Image

    Image.new("L", (15, 15)).save(tmp_path / "black.png")
    assert run_cli("-mp", small, "-ip", tmp_path / "black.png", "-cp", 1, "--set", "preprocess.range='byte'",
                   "-hm", "grad", "-op", tmp_path / "out", "-q") == 0
    assert scores_of(tmp_path / "out")["predicted_label"] == 255


def probe_perturbation(small, tmp_path, capsys):
    for fast in (True, False):
        out = tmp_path / str(fast)
        assert run_cli("-mp", small, "--set", f"perturbation.fast={fast}", "-hm", "occlusion", "-op", out, "-q") == 0
        assert scores_of(out)["methods"]["occlusion"]["evaluations"] == {"fast" if fast else "full": 225}


def probe_faithfulness(small, tmp_path, capsys):
    """25 of the 225 pixels a step: 9 steps, 10 points a curve; curves off: no areas."""
    assert run_cli("-mp", small, "--set", "faithfulness.curves=True", "--set", "faithfulness.regions_per_step=25",
                   "-hm", "occlusion", "-op", tmp_path / "on", "-q") == 0
    assert image_maps(only_folder(tmp_path / "on"))["curves/occlusion/deletion"].shape == (10,)
    assert run_cli("-mp", small, "--set", "faithfulness.curves=False", "-hm", "occlusion", "-op", tmp_path / "off",
                   "-q") == 0
    assert "deletion_area" not in scores_of(tmp_path / "off")["methods"]["occlusion"]


def probe_figure(small, tmp_path, capsys):
    from PIL import Image

    widths = []
    for dpi in (30, 60):
        assert run_cli("-mp", small, "--set", f"figure.dpi={dpi}", "-hm", "grad", "-op", tmp_path / str(dpi), "-q") == 0
        widths.append(Image.open(only_folder(tmp_path / str(dpi)) / "heatmaps.png").width)
    assert abs(2 * widths[0] - widths[1]) <= 2


def probe_sanity(small, tmp_path, capsys):
    assert run_cli("-mp", small, "--sanity", "noise", "--set", "sanity.noise_levels=[0.25]", "-hm", "grad",
                   "-op", tmp_path, "-q") == 0
    with open(only_folder(tmp_path) / "sanity_noise.csv") as handle:
        assert {row["changed"] for row in csv.DictReader(handle)} == {"original", "noise 0.25"}


def probe_growing_patch(small, tmp_path, capsys):
    assert run_cli("-mp", small, "--growing-patch", "--set", "growing_patch.sizes=[2]", "-hm", "grad",
                   "-op", tmp_path, "-q") == 0
    with open(only_folder(tmp_path) / "growing_patch.csv") as handle:
        assert {row["patch"] for row in csv.DictReader(handle)} == {"0", "2"}


PROBES = {name.removeprefix("probe_"): probe for name, probe in globals().items() if name.startswith("probe_")}
GLOBAL_SETTINGS = [name for name in config.load() if name not in SETTINGS and name not in METRIC_SETTINGS]


def test_every_global_setting_has_a_probe():
    assert sorted(PROBES) == sorted(GLOBAL_SETTINGS)


@pytest.mark.parametrize("name", GLOBAL_SETTINGS)
def test_a_global_setting_takes_effect(name, small_model_path, tmp_path, capsys):
    PROBES[name](small_model_path, tmp_path, capsys)


def another_value(rule, default):
    """A valid value of `rule` other than `default`."""
    from heatkit.base import rules

    if isinstance(rule, rules.Optional):
        return another_value(rule.rule, None) if default is None else None
    if isinstance(rule, (rules.Choice, rules.ChoiceOrFolder)):
        return next(option for option in rule.options if option != default)
    if isinstance(rule, rules.Bool):
        return not default
    if isinstance(rule, rules.Int):
        start = default if default is not None else rule.min or 1
        return start + 2 if rule.odd else start - 1 if rule.max is not None and start + 1 > rule.max else start + 1
    if isinstance(rule, rules.Float):
        start = float(default if default is not None else rule.min or 0.0)
        return (start + rule.max) / 2 if rule.max is not None else start * 2 + 0.5
    if isinstance(rule, rules.ListOf):
        return [another_value(rule.rule, None)] * (rule.length or 1)
    if isinstance(rule, rules.Text):
        return "conv1"
    if isinstance(rule, rules.Mask):
        return "patch:3"
    if isinstance(rule, rules.PixelValue):
        return 0.25 if default != 0.25 else "mean"
    raise AssertionError(f"no other value for {rule}")


@pytest.mark.parametrize("method", [m for m in METHODS if m.settings], ids=lambda m: m.key)
def test_every_method_setting_reaches_the_method(method, small_model_path, gap_model_path, tmp_path, monkeypatch):
    """Each of a method's settings, set to another valid value on the command line, is what the
    method is given (a pixel value in the model's input space: the small twin's is its pixels'
    own, one channel), and the run succeeds. The CAM family's layers are checked once the model
    loads: they run on a twin with conv layers."""
    received = []
    changed = {key: another_value(setting.rule, setting.default) for key, setting in method.settings.keys.items()}
    replace_method(monkeypatch, method.key,
                   lambda model, image, target, params: received.append(params) or np.zeros(image.shape[:2], np.float32))
    overrides = [arg for key, value in changed.items() for arg in ("--set", f"{method.settings.name}.{key}={value!r}")]
    model = gap_model_path if method.settings.name == "gradcam" else small_model_path
    assert run_cli("-mp", model, "-hm", method.key, *overrides, "-op", tmp_path, "-q") == 0
    pixel_values = method.settings.pixel_values()
    assert received and {key: received[0][key] for key in changed if key not in pixel_values} == \
        {key: value for key, value in changed.items() if key not in pixel_values}
    for key in pixel_values:
        given = received[0][key]
        assert (given is None if changed[key] is None else given.tolist() == [changed[key]]), key


def test_an_edited_settings_file_takes_effect(small_model_path, tmp_path, monkeypatch):
    """settings.py is read when a run starts: an edited value there is used as if given with --set."""
    (tmp_path / "settings.py").write_text(f"model_path = {str(small_model_path)!r}\nout_path = 'out'\n")
    monkeypatch.chdir(tmp_path)
    assert run_cli("-hm", "grad", "-q") == 0
    assert scores_of(tmp_path / "out")["model"] == str(small_model_path)
    (tmp_path / "run.py").write_text("out_path = 'elsewhere'\n")
    assert run_cli("-hm", "grad", "-q", "--config", "run.py") == 0 and scores_of(tmp_path / "elsewhere")
    (tmp_path / "run.py").write_text("out_path = 3\n")
    assert run_cli("-hm", "grad", "-q", "--config", "run.py") == 2
