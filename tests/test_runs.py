"""Runs are repeatable bit for bit, --rerun checks it, a failing or interrupted run loses nothing, and
what a run writes is whole and has the usual permissions."""
import csv
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import break_occlusion, replace_method, run_cli, image_maps, image_scores
from heatkit.methods.registry import BACKENDS, REGISTRY, Needs
from heatkit.pipeline.plotting import WARNING_HEIGHT

# Every method, cheap enough for a 12 x 12 RGB model.
CHEAP = ["sg.augment_by_n=3", "ig.steps=4", "pda.levels=4", "shapley.samples=2", "lime.num_samples=20",
         "shap.nsamples=20", "shap.n_segments=4", "rise.num_masks=20", "rise.cell_size=3", "mp.iterations=3",
         "mp.mask_size=3", "mp.blur_sigma=1.0", "figure.dpi=30"]


def cheap(*settings):
    return [arg for setting in (*CHEAP, *settings) for arg in ("--set", setting)]


def test_the_same_command_gives_bit_identical_maps_for_every_method(gap_model_path, tmp_path):
    computed = set()
    for backend in BACKENDS:
        out = tmp_path / backend
        for _ in range(2):
            assert run_cli("-mp", gap_model_path, "-hm", "all", "--backend", backend, "-op", out, "-q",
                           "--set", "lime.kernel_size=1", *cheap()) == 0
        first, second = (image_maps(folder) for folder in sorted(out.iterdir()))
        assert first.keys() == second.keys()
        for key in first:
            assert first[key].tobytes() == second[key].tobytes(), (backend, key)
        computed |= {key.split("@")[0] for key in first} - {"input"}
    # Keras' DeepLIFT takes Dense models only: it runs here on torch; the attention methods repeat in test_transformers
    assert computed == {key for key, method in REGISTRY.items() if method.needs is not Needs.ATTENTION}


def test_rerun_repeats_a_run_from_its_record(gap_model_path, tmp_path, capsys):
    edited_settings = ["shapley.samples=3", "lime.kernel_size=1"]  # recorded in run.json, not in settings.py
    assert run_cli("-mp", gap_model_path, "-hm", "shapley", "lime", "rise", "--seed", 3, "-op", tmp_path, "-q",
                   *cheap(*edited_settings)) == 0
    [folder] = tmp_path.iterdir()
    record = folder / "run.json"
    command = json.loads(record.read_text())["command"]
    command[command.index("shapley.samples=3")] = "shapley.samples=2"  # the record's settings still say 3
    record.write_text(json.dumps({**json.loads(record.read_text()), "command": command}))
    capsys.readouterr()
    assert run_cli("--rerun", record) == 0
    assert "identical: all 4 arrays" in capsys.readouterr().out
    assert len(list(tmp_path.iterdir())) == 2

    stem = folder.name.rsplit("_", 1)[0]
    np.savez(folder / "heatmaps.npz", **{**np.load(folder / "heatmaps.npz"), f"{stem}/rise": np.zeros((12, 12), np.float32)})
    assert run_cli("--rerun", record) == 1
    assert f"not identical: {stem}/rise differ" in capsys.readouterr().out


def raise_error(model, image, target, params):
    raise RuntimeError("the model said no")


def test_a_method_that_raises_is_reported_and_the_others_complete(small_model_path, tmp_path, monkeypatch, capsys):
    replace_method(monkeypatch, "occlusion", raise_error)
    assert run_cli("-mp", small_model_path, "-hm", "grad", "occlusion", "ig", "-op", tmp_path, "-q") == 1
    [folder] = tmp_path.iterdir()
    scores = image_scores(folder)["methods"]
    assert scores["occlusion"] == {"error": "RuntimeError: the model said no"}
    assert "center_share" in scores["grad"] and "center_share" in scores["ig"]
    assert sorted(image_maps(folder)) == ["grad", "ig", "input"]
    assert "RuntimeError: the model said no" in capsys.readouterr().out


@pytest.fixture(autouse=True)
def terminal_sigint():
    """Ctrl-C's handler as a terminal's Python has it: a suite started in the background (`make
    test &`) inherits SIGINT ignored, and Python then installs no handler."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def ctrl_c():
    """Ctrl-C as the terminal sends it: a real SIGINT, while a method runs, raised in this thread
    (a process-wide kill may land in another thread, and be handled a few bytecodes late)."""
    signal.raise_signal(signal.SIGINT)
    raise AssertionError("SIGINT did not interrupt the method")


def test_ctrl_c_keeps_the_finished_maps_and_marks_the_run_incomplete(small_model_path, tmp_path, monkeypatch):
    break_occlusion(monkeypatch, 1, ctrl_c)
    assert run_cli("-mp", small_model_path, "-hm", "grad", "ig", "occlusion", "gb", "-op", tmp_path, "-q") == 130
    [folder] = tmp_path.iterdir()
    assert sorted(image_maps(folder)) == ["grad", "ig", "input"]
    assert json.loads((folder / "run.json").read_text())["incomplete"] is True
    scores = image_scores(folder)["methods"]
    assert sorted(scores) == ["grad", "ig"]
    # the figure of the finished maps: a whole run's of the same two methods, under a red line
    # saying that the run is incomplete
    assert run_cli("-mp", small_model_path, "-hm", "grad", "ig", "-op", tmp_path / "whole", "-q") == 0
    [whole] = (tmp_path / "whole").iterdir()
    (width, height), whole_size = Image.open(folder / "heatmaps.png").size, Image.open(whole / "heatmaps.png").size
    assert width == whole_size[0] and abs(height - whole_size[1] - WARNING_HEIGHT * 120) <= 1
    top = np.asarray(Image.open(folder / "heatmaps.png").convert("RGB"))[: int(WARNING_HEIGHT * 120)].astype(int)
    assert ((top[..., 0] > 200) & (top[..., 1] < 80)).any()  # red text


EXPERIMENTS = {  # three steps each; Ctrl-C during the third leaves the first two, by the CSV's column
    "sanity": (["--sanity", "noise", "--set", "sanity.noise_levels=[0.1, 0.5, 1.0]"], "sanity_noise.csv", "step",
               {"0", "1"}),
    "growing patch": (["--growing-patch", "--set", "growing_patch.sizes=[1, 3, 5]"], "growing_patch.csv", "patch",
                      {"0", "1"}),
    "sweep": (["--sweep", "occlusion.fill=0.0,0.5,1.0"], "sweep.csv", "value_b", {"0.5"}),
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_ctrl_c_keeps_an_experiments_finished_steps(name, small_model_path, tmp_path, monkeypatch):
    flags, table, column, finished = EXPERIMENTS[name]
    break_occlusion(monkeypatch, 3, ctrl_c)
    assert run_cli("-mp", small_model_path, "-hm", "grad", "occlusion", *flags, "-op", tmp_path, "-q") == 130
    [folder] = tmp_path.iterdir()
    assert json.loads((folder / "run.json").read_text())["incomplete"] is True
    with open(folder / table) as handle:
        assert {row[column] for row in csv.DictReader(handle)} == finished


def test_run_files_get_the_usual_permissions(small_model_path, tmp_path):
    previous = os.umask(0o022)
    try:
        assert run_cli("-mp", small_model_path, "-hm", "grad", "-op", tmp_path, "-q") == 0
    finally:
        os.umask(previous)
    [folder] = tmp_path.iterdir()
    assert folder.stat().st_mode & 0o777 == 0o755
    assert {path.stat().st_mode & 0o777 for path in folder.iterdir()} == {0o644}
    assert not list(folder.glob(".*"))  # no temporary file is left


def test_rerun_writes_where_it_is_told_and_never_into_the_run_it_repeats(small_model_path, tmp_path, capsys):
    assert run_cli("-mp", small_model_path, "-hm", "grad", "occlusion", "-op", tmp_path / "first", "-q") == 0
    [original] = (tmp_path / "first").iterdir()
    before = {path.name: path.read_bytes() for path in original.iterdir()}
    assert run_cli("--rerun", original / "run.json", "-op", tmp_path / "again", "-q") == 0
    assert "identical" in capsys.readouterr().out
    [repeated] = (tmp_path / "again").iterdir()
    assert sorted(path.name for path in repeated.iterdir()) == sorted(before)
    assert list((tmp_path / "first").iterdir()) == [original]
    assert {path.name: path.read_bytes() for path in original.iterdir()} == before


def test_rerun_refuses_other_flags(small_model_path, tmp_path, capsys):
    assert run_cli("-mp", small_model_path, "-hm", "grad", "-op", tmp_path, "-q") == 0
    [original] = tmp_path.iterdir()
    assert run_cli("--rerun", original / "run.json", "-hm", "ig") == 2
    assert "drop heatmap_methods" in capsys.readouterr().err


def signals_at(moments: set[int], monkeypatch) -> list[int]:
    """A real SIGINT raised at each of the `moments`-th calls of what a run does over and over:
    a model evaluation, a file written whole, a figure drawn. Returns the count of calls so far."""
    from heatkit.model import Model
    from heatkit.pipeline import output

    calls = [0]

    def counted(function):
        def call(*args, **kwargs):
            calls[0] += 1
            if calls[0] in moments:
                signal.raise_signal(signal.SIGINT)
            return function(*args, **kwargs)
        return call

    for owner, name in ((Model, "probabilities"), (Model, "logits"), (output, "atomic"), (output, "save_figure")):
        monkeypatch.setattr(owner, name, counted(getattr(owner, name)))
    return calls


def test_an_interrupt_at_any_moment_keeps_what_finished(small_model_path, tmp_path, monkeypatch, capsys):
    """One Ctrl-C, or two in a row, at 20 seeded moments of a several-method run: one line, exit 130
    (or 0 where it came after the work), no traceback, no hidden half-written folder, and a run
    folder, where there is one, whose every file reads and whose run.json says if it is incomplete.
    Before, 4 of 24 such moments gave an IndexError, and others lost minutes of finished maps."""
    argv = ["-mp", small_model_path, "-hm", "grad", "ig", "occlusion", "-q", "--set", "ig.steps=4",
            "--set", "faithfulness.random_draws=1", "--set", "faithfulness.patch=3", "--set", "figure.dpi=40"]
    total = signals_at(set(), monkeypatch)
    assert run_cli(*argv, "-op", tmp_path / "whole") == 0
    rng = np.random.default_rng(7)
    for trial, moment in enumerate(rng.integers(1, total[0] + 1, 20)):
        with monkeypatch.context() as patched:
            signals_at({moment, moment + 1} if trial % 2 else {moment}, patched)
            out = tmp_path / f"trial{trial}"
            code = run_cli(*argv, "-op", out)
        err = capsys.readouterr().err
        assert code in (0, 130) and "Traceback" not in err, (moment, err)
        folders = list(out.iterdir()) if out.exists() else []
        assert not [path for path in folders if path.name.startswith(".")], (moment, folders)
        if not folders:
            assert code == 130 and "nothing was written" in err, (moment, err)
            continue
        [folder] = folders
        record = json.loads((folder / "run.json").read_text())
        assert record["incomplete"] is (code == 130), (moment, code)
        assert image_scores(folder)["methods"] and "input" in image_maps(folder)
        assert (folder / "report.html").read_text().rstrip().endswith("</html>")


def test_folders_published_under_one_name_at_once_each_get_their_own(tmp_path, monkeypatch):
    """Two processes publishing a run of the same name in the same second: one of 200 lost the race
    to ENOTEMPTY in 30 cases, with a traceback and a hidden .partial folder left behind."""
    from heatkit.pipeline import output

    first, second = output.RunFolder(tmp_path, "cat"), output.RunFolder(tmp_path, "cat")
    (first.path / "a").write_text("first")
    (second.path / "a").write_text("second")
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda path: False if path.parent == tmp_path else real_exists(path))
    published = [first.publish(), second.publish()]  # the second saw the name free, and the rename refused it
    assert published[0] != published[1] and published[1].name.endswith("_2")
    assert [(folder / "a").read_text() for folder in published] == ["first", "second"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(folder.name for folder in published)
