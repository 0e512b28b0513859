"""heatmap_script.py end to end: the files a run writes (bad input: test_bad_inputs.py)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SMALL, dense_weights, image_maps, image_scores, run_cli
from heatkit import cli
from heatkit.pipeline.scores import center_scores

ROOT = Path(__file__).resolve().parent.parent
GRADIENT_FAMILY = ["grad", "gb", "deconvnet", "sg", "inpgrad", "ig", "lrp"]


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "gray.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def finished_run(small_model_path, image_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    code = run_cli("-ip", image_path, "-mp", small_model_path, "-hm", *GRADIENT_FAMILY, "-op", out,
                   "--set", "ig.steps=8", "--set", "sg.augment_by_n=4")
    [folder] = out.iterdir()
    return code, folder


def test_run_writes_its_files(finished_run):
    code, folder = finished_run
    assert code == 0
    assert folder.name.startswith("gray_")
    assert sorted(p.name for p in folder.iterdir()) == ["heatmaps.npz", "heatmaps.png", "report.html", "run.json",
                                                        "scores.csv", "scores.json"]


def test_scores_csv_holds_every_map_of_scores_json(finished_run):
    """One row per image and map, in the registry's columns that some map has, the same values as
    scores.json."""
    import csv

    from heatkit.metrics.registry import METRICS, Reads

    _, folder = finished_run
    methods = image_scores(folder)["methods"]
    with open(folder / "scores.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["method"] for row in rows] == list(methods)
    held = [m for m in METRICS if m.reads is not Reads.RANDOMISED and
            any(row.get(m.key) is not None for row in methods.values())]
    assert [m.key for m in held] == [key for key in rows[0] if key in {m.key for m in METRICS}]
    for row in rows:
        for metric in held:
            value = methods[row["method"]].get(metric.key)
            assert (row[metric.key] == "") if value is None else float(row[metric.key]) == pytest.approx(value)


def test_npz_holds_every_map_and_the_input(finished_run):
    _, folder = finished_run
    maps = image_maps(folder)
    expected = ["grad", "gb", "deconvnet", "sg", "inpgrad", "ig", "lrp.z", "lrp.epsilon", "lrp.alpha1beta0",
                "lrp.alpha2beta1", "lrp.epsilon_plus_flat", "lrp.epsilon_alpha2beta1_flat", "lrp.epsilon_gamma_box",
                "input"]
    assert sorted(maps) == sorted(expected)
    for key in expected:
        assert maps[key].shape == (SMALL, SMALL)
        assert maps[key].dtype == (np.float64 if key == "input" else np.float32)


def test_npz_maps_of_the_linear_model_are_its_weight_column(finished_run, small_model):
    """The center-pixel model is one Dense layer before its softmax: its gradient is the explained
    class's weight column, whatever rectifier rule or noise a method adds; input x gradient, and IG
    from black, are that times the input."""
    _, folder = finished_run
    maps, explained = image_maps(folder), image_scores(folder)["explained_class"]
    kernel, _ = dense_weights(small_model)
    column = kernel[:, explained].reshape(SMALL, SMALL)
    for key in ("grad", "gb", "deconvnet", "sg"):
        np.testing.assert_allclose(maps[key], column, rtol=1e-5, atol=1e-6 * np.abs(column).max(), err_msg=key)
    for key in ("inpgrad", "ig"):
        np.testing.assert_allclose(maps[key], maps["input"] * column, rtol=1e-4, atol=1e-6 * np.abs(column).max(),
                                   err_msg=key)


def test_scores_agree_with_the_npz(finished_run):
    _, folder = finished_run
    maps = image_maps(folder)
    scores = image_scores(folder)
    center = maps["input"][SMALL // 2, SMALL // 2]
    assert scores["true_label"] == round(center * 255) == scores["predicted_label"] == scores["explained_class"]
    assert scores["explained_probability"] > 0.999 and scores["ground_truth"] is True
    for key, row in scores["methods"].items():
        assert {k: row[k] for k in center_scores(maps[key], 5)} == center_scores(maps[key], 5)


def test_seconds_are_the_methods_own_time(small_model_path, tmp_path, monkeypatch):
    """A method that takes 0.3 s is timed at 0.3 s, and the next one's time is its own: on a clock
    of the test's, which moves a microsecond a reading and 0.3 s inside the method."""
    from conftest import replace_method
    from heatkit.pipeline import maps

    now = [0.0]

    def clock():
        now[0] += 1e-6
        return now[0]

    def slow(model, image, target, params):
        now[0] += 0.3
        return np.zeros(image.shape[:2], np.float32)
    monkeypatch.setattr(maps.time, "perf_counter", clock)
    replace_method(monkeypatch, "ig", slow)
    assert run_cli("-mp", small_model_path, "-hm", "ig", "grad", "-op", tmp_path, "-q") == 0
    [folder] = tmp_path.iterdir()
    seconds = {key: row["seconds"] for key, row in image_scores(folder)["methods"].items()}
    assert seconds["ig"] == pytest.approx(0.3, abs=1e-3) and seconds["grad"] < 1e-3


def test_run_record_repeats_the_run(finished_run, small_model_path):
    _, folder = finished_run
    record = json.loads((folder / "run.json").read_text())
    assert record["settings"]["ig"]["steps"] == 8 and record["settings"]["sg"]["augment_by_n"] == 4
    assert record["seeds"]["seed"] == 0 and record["seeds"]["sg.seed"] == 0
    assert record["versions"]["innvestigate"] == "2.1.2" and record["versions"]["numpy"] == "1.26.4"
    assert "--set" in record["command"] and record["model"]["path"] == str(small_model_path)


def test_random_image_run_is_named_by_its_seed_and_repeatable(small_model_path, tmp_path):
    for _ in range(2):
        assert run_cli("-mp", small_model_path, "-hm", "grad", "sg", "-op", tmp_path, "--seed", 7,
                       "--set", "sg.augment_by_n=4") == 0
    first, second = sorted(tmp_path.iterdir())
    assert first.name.startswith("random_seed7_") and second.name != first.name
    a, b = image_maps(first), image_maps(second)
    assert all(np.array_equal(a[key], b[key]) for key in a)


def test_target_and_center_level(small_model_path, tmp_path):
    assert run_cli("-mp", small_model_path, "-hm", "grad", "-op", tmp_path, "-cp", 200, "-cl", 17) == 0
    [folder] = tmp_path.iterdir()
    scores = image_scores(folder)
    assert (scores["true_label"], scores["predicted_label"], scores["explained_class"]) == (200, 200, 17)
    assert scores["explained_probability"] < 1e-100


def test_bad_input_shows_no_traceback_in_a_real_process(tmp_path):
    done = subprocess.run([sys.executable, "heatmap_script.py", "-ip", tmp_path / "nope.png", "-op", tmp_path],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_help_imports_no_framework():
    code = ("import sys, heatkit.cli; heatkit.cli.build_parser().format_help();"
            "print(sorted(m for m in ('tensorflow', 'torch', 'innvestigate', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_lists_every_registered_method():
    from heatkit.methods.registry import METHODS

    text = cli.build_parser().format_help()
    assert all(f"  {m.key} " in text and m.paper.cite in text for m in METHODS)


def test_a_missing_known_answer_model_is_told_how_it_is_built_where_it_runs(tmp_path, monkeypatch, capsys):
    """Outside the checkout, a pip user was told to run `make models`."""
    monkeypatch.chdir(tmp_path)
    assert run_cli("-hm", "grad", "-q") == 2
    err = capsys.readouterr().err
    assert "make models" not in err and "python -m heatkit.testmodels.build --model center_pixel" in err
    (tmp_path / "Makefile").write_text("")
    (tmp_path / "create_model.py").write_text("")
    assert run_cli("-hm", "grad", "-q") == 2
    assert "build it with: make models" in capsys.readouterr().err
