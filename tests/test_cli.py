"""heatmap_script.py end to end: the files a run writes, and bad input."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import heatmap_script
from conftest import SMALL
from core.scores import center_scores

ROOT = Path(__file__).resolve().parent.parent
GRADIENT_FAMILY = ["grad", "gb", "deconvnet", "sg", "inpgrad", "ig", "lrp"]


def run_cli(*argv):
    try:
        return heatmap_script.main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's own exit
        return exit.code


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


def test_run_writes_the_four_files(finished_run):
    code, folder = finished_run
    assert code == 0
    assert folder.name.startswith("gray_")
    assert sorted(p.name for p in folder.iterdir()) == ["heatmaps.npz", "heatmaps.png", "run.json", "scores.json"]


def test_npz_holds_every_map_and_the_input(finished_run):
    _, folder = finished_run
    maps = np.load(folder / "heatmaps.npz")
    expected = ["grad", "gb", "deconvnet", "sg", "inpgrad", "ig", "lrp.z", "lrp.epsilon", "lrp.alpha1beta0",
                "lrp.alpha2beta1", "input"]
    assert sorted(maps.files) == sorted(expected)
    for key in expected:
        assert maps[key].shape == (SMALL, SMALL)
        assert maps[key].dtype == (np.float64 if key == "input" else np.float32)


def test_scores_agree_with_the_npz(finished_run):
    _, folder = finished_run
    maps = np.load(folder / "heatmaps.npz")
    scores = json.loads((folder / "scores.json").read_text())
    center = maps["input"][SMALL // 2, SMALL // 2]
    assert scores["true_label"] == round(center * 255) == scores["predicted_label"] == scores["explained_class"]
    assert scores["explained_probability"] > 0.999 and scores["ground_truth"] is True
    for key, row in scores["methods"].items():
        assert {k: row[k] for k in center_scores(maps[key], 5)} == center_scores(maps[key], 5)
        assert row["seconds"] >= 0


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
    a, b = np.load(first / "heatmaps.npz"), np.load(second / "heatmaps.npz")
    assert all(np.array_equal(a[key], b[key]) for key in a.files)


def test_clamp_label_and_centre_pixel(small_model_path, tmp_path):
    assert run_cli("-mp", small_model_path, "-hm", "grad", "-op", tmp_path, "-cp", 200, "-cl", 17) == 0
    [folder] = tmp_path.iterdir()
    scores = json.loads((folder / "scores.json").read_text())
    assert (scores["true_label"], scores["predicted_label"], scores["explained_class"]) == (200, 200, 17)
    assert scores["explained_probability"] < 1e-100


def bad_text_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    return path


def truncated_image(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.zeros((64, 64), np.uint8) + 100).save(path)
    path.write_bytes(path.read_bytes()[:60])
    return path


BAD_INPUTS = {
    "missing image": (lambda t, m: ["-ip", t / "nope.png", "-mp", m], "not found"),
    "empty folder as images": (lambda t, m: ["-ip", t, "-mp", m], "holds no image files"),
    "text as image": (lambda t, m: ["-ip", bad_text_image(t), "-mp", m], "cannot read"),
    "truncated image": (lambda t, m: ["-ip", truncated_image(t), "-mp", m], "cannot read"),
    "missing model": (lambda t, m: ["-mp", t / "none.h5"], "create_model.py"),
    "unknown method": (lambda t, m: ["-mp", m, "-hm", "gradd"], "unknown method 'gradd'; choose from grad"),
    "label out of range": (lambda t, m: ["-mp", m, "-cl", 256], "give 0 to 255"),
    "pixel out of range": (lambda t, m: ["-mp", m, "-cp", -1], "give 0 to 255"),
    "label not a number": (lambda t, m: ["-mp", m, "-cl", "cat"], "invalid int value"),
    "unknown setting": (lambda t, m: ["-mp", m, "--set", "ig.step=3"], "did you mean 'ig.steps'"),
    "wrong type": (lambda t, m: ["-mp", m, "--set", "ig.steps=many"], "ig.steps must be an integer"),
    "out of range": (lambda t, m: ["-mp", m, "--set", "ig.steps=0"], "ig.steps must be at least 2"),
    "set without =": (lambda t, m: ["-mp", m, "--set", "ig.steps"], "--set takes KEY=VALUE"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2(case, small_model_path, tmp_path, capsys):
    make_argv, message = BAD_INPUTS[case]
    argv, out = make_argv(tmp_path, small_model_path), tmp_path / "out"
    assert run_cli(*argv, *([] if "-hm" in argv else ["-hm", "grad"]), "-op", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not out.exists() or list(out.iterdir()) == []


def test_unwritable_output_folder(small_model_path, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run_cli("-mp", small_model_path, "-hm", "grad", "-op", blocker / "sub") == 2
    assert "choose a writable folder with -op" in capsys.readouterr().err


def test_bad_input_shows_no_traceback_in_a_real_process(tmp_path):
    done = subprocess.run([sys.executable, "heatmap_script.py", "-ip", tmp_path / "nope.png", "-op", tmp_path],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_help_imports_no_framework():
    code = ("import sys, heatmap_script; heatmap_script.build_parser().format_help();"
            "print(sorted(m for m in ('tensorflow', 'torch', 'innvestigate', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_lists_every_registered_method():
    from methods.registry import METHODS

    text = heatmap_script.build_parser().format_help()
    assert all(f"  {m.key} " in text and m.paper.cite in text for m in METHODS)
