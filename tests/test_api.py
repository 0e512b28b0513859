"""The Python API: the README's example, models built in the session passed as objects, and the
command line giving the same maps as the API."""
from pathlib import Path

import numpy as np
import pytest

import heatkit
from conftest import image_maps, run_cli, softmax
from heatkit.base import frameworks
from heatkit.base.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_example() -> str:
    block = README.split("<!-- --8<-- [start:api] -->")[1].split("<!-- --8<-- [end:api] -->")[0]
    return block.split("```python\n")[1].split("```")[0]


def test_the_readme_example_runs_and_gives_the_command_lines_maps(full_model_path, tmp_path, capsys):
    code = readme_example().replace('"models/center_pixel.h5"', repr(str(full_model_path)))
    namespace = {}
    exec(code.replace('"results"', repr(str(tmp_path / "api"))), namespace)
    printed = capsys.readouterr().out.splitlines()
    comments = [line.rpartition("# ")[2] for line in readme_example().splitlines() if line.startswith("print(")]
    assert printed == comments  # as the README's comments say
    # the gradient is the Dense weight column of the class: the center's rank among its magnitudes
    from heatkit.model import Model

    kernel, _ = Model(full_model_path).keras.weights("dense")
    column = np.abs(kernel[:, 161].astype(np.float32))
    assert printed[0] == f"1 {1 + int((column > column[227 * 113 + 113]).sum())}"
    assert printed[1] == "161 (227, 227)"  # chelsea's center level
    assert type(namespace["figure"]).__name__ == "Figure"
    assert run_cli("-mp", full_model_path, "-ip", "images/chelsea.png", "-hm", "grad", "occlusion", "lime",
                   "--set", "lime.num_samples=200", "-op", tmp_path / "cli", "-q") == 0
    [folder] = (tmp_path / "cli").iterdir()
    from_api, from_cli = image_maps(namespace["folder"]), image_maps(folder)
    assert sorted(from_api) == sorted(from_cli) == ["grad", "input", "lime", "occlusion"]
    for key in from_api:
        assert from_api[key].tobytes() == from_cli[key].tobytes(), key


def test_a_torch_module_built_here_goes_straight_to_the_api():
    """A float32 residual CNN object, and an image array: no file, no trust flag."""
    torch = frameworks.torch()
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.inner, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4, 5)

        def forward(self, x):
            hidden = torch.relu(self.stem(x))
            hidden = torch.nn.functional.relu(hidden + self.inner(hidden))  # functional ReLUs, a skip connection
            return self.head(hidden.mean((2, 3)))

    torch.manual_seed(0)
    net = Residual().eval()
    image = np.random.default_rng(0).random((12, 12, 3))
    run = heatkit.explain(net, image, ["grad", "gb", "occlusion"], settings={"occlusion.patch": 2, "input_size": [12, 12]},
                          progress=False)
    inputs = torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32, requires_grad=True)
    logits = net(inputs)
    np.testing.assert_allclose(run.probabilities, softmax(logits.detach().numpy()[0]), rtol=1e-6)
    target = int(run.probabilities.argmax())
    (gradient,) = torch.autograd.grad(logits[0, target], inputs)
    np.testing.assert_allclose(run.maps["grad"], gradient[0].sum(0).numpy(), rtol=1e-5, atol=1e-7)
    assert not np.allclose(run.maps["gb"], run.maps["grad"])  # its functional ReLUs were caught
    assert run.scores["occlusion"]["framework"] == "torch" and run.maps["occlusion"].dtype == np.float32


def test_a_keras_model_built_here_goes_straight_to_the_api():
    """A float32 Keras model with a Lambda layer, built eagerly as a notebook builds it: no trust flag."""
    tf = heatkit.tensorflow()
    inputs = tf.keras.Input((10, 10, 1))
    hidden = tf.keras.layers.Lambda(lambda x: 2.0 * x - 1.0)(inputs)
    hidden = tf.keras.layers.Conv2D(3, 3, activation="relu", kernel_initializer=tf.keras.initializers.GlorotNormal(
        seed=1))(hidden)
    logits = tf.keras.layers.Dense(4, kernel_initializer=tf.keras.initializers.GlorotNormal(seed=2))(
        tf.keras.layers.GlobalAveragePooling2D()(hidden))
    model = tf.keras.Model(inputs, logits)
    image = np.random.default_rng(1).random((10, 10, 1))
    run = heatkit.explain(model, image, ["grad", "lrp.epsilon", "occlusion"], target=3, progress=False)
    assert set(run.maps) == {"grad", "lrp.epsilon", "occlusion"}
    inputs = tf.constant(image[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        logits = model(inputs)
        logit = logits[:, 3]
    gradient = tape.gradient(logit, inputs).numpy()
    np.testing.assert_allclose(run.maps["grad"], gradient[0, ..., 0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(run.probabilities, softmax(logits.numpy()[0]), rtol=1e-6)


def test_bad_input_raises_a_usage_error_naming_the_fix(small_model_path):
    with pytest.raises(UsageError, match="did you mean 'grad'"):
        heatkit.explain(small_model_path, methods=["gradd"])
    with pytest.raises(UsageError, match=r"the model takes \(15, 15, 1\)"):
        heatkit.explain(small_model_path, np.zeros((3, 3, 1)), ["grad"])
    with pytest.raises(UsageError, match="unknown setting 'ig.stepz'"):
        heatkit.explain(small_model_path, settings={"ig.stepz": 3})


def test_the_record_says_when_the_run_began_and_every_package_that_computed(small_model_path, tmp_path, monkeypatch):
    """run.json said "started" at the time it was saved (04:15:31 for a run begun at 04:06:12), and
    lacked heatkit's own version and torchvision's, timm's and zennit's."""
    import json

    import heatkit.api

    times = iter(["2026-12-07T04:06:12+00:00", "2026-12-07T04:15:31+00:00"])
    monkeypatch.setattr(heatkit.api, "now", lambda: next(times))
    run = heatkit.explain(small_model_path, None, ["grad"], settings={"faithfulness.curves": False}, progress=False)
    record = json.loads((run.save(tmp_path) / "run.json").read_text())
    assert record["started"] == "2026-12-07T04:06:12+00:00"
    assert record["versions"]["heatkit"] == heatkit.__version__
    assert all(record["versions"][name] for name in ("torch", "torchvision", "timm", "zennit", "captum"))


def test_the_api_runs_no_settings_py_it_finds_in_the_working_folder(small_model_path, tmp_path, monkeypatch):
    """A notebook started in a folder holding a settings.py ran it; the command line reads it by
    design, the API takes its settings from its arguments."""
    (tmp_path / "settings.py").write_text("(__import__('pathlib').Path('ran').write_text('x'))\nig = dict(steps=5)\n")
    monkeypatch.chdir(tmp_path)
    run = heatkit.explain(small_model_path, None, ["grad"], settings={"faithfulness.curves": False}, progress=False)
    assert run.settings["ig"]["steps"] == 64 and not (tmp_path / "ran").exists()


def test_a_reused_model_refuses_a_setting_it_was_not_loaded_with(small_model_path):
    """A run given evaluate_with=keras ran on the model's PyTorch twin and recorded keras, exit 0."""
    model = heatkit.load_model(small_model_path)
    with pytest.raises(UsageError, match=r"evaluate_with='keras': this Model was loaded with evaluate_with='auto'"):
        heatkit.explain(model, None, ["grad"], settings={"evaluate_with": "keras"}, progress=False)
    keras = heatkit.load_model(small_model_path, settings={"evaluate_with": "keras"})
    run = heatkit.explain(keras, None, ["occlusion"], progress=False, settings={"faithfulness.curves": False})
    assert run.settings["evaluate_with"] == "keras" and run.request["dtype"] == keras.dtype
    assert keras.evaluator_framework == "keras"


def test_a_dataset_in_this_process_gives_the_callers_thread_count_back(small_model_path, tmp_path):
    from heatkit.base import frameworks

    torch = frameworks.torch()
    torch.set_num_threads(2)
    heatkit.explain_dataset(small_model_path, "random:2", ["grad"], workers=0, out=tmp_path, progress=False,
                            settings={"backend": "torch", "faithfulness.curves": False})
    assert torch.get_num_threads() == 2


def test_a_runs_scores_are_those_of_the_settings_it_ran_with(small_model_path):
    """Editing run.settings after the run changed crop_share from 0.0966 to 1.0."""
    run = heatkit.explain(small_model_path, None, ["grad"], progress=False, settings={"faithfulness.curves": False})
    before = run.scores["grad"]["crop_share"]
    run.settings["figure"]["crop"] = 15
    assert run.scores["grad"]["crop_share"] == before < 1.0
