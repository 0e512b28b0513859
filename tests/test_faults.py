"""Promises kept under faults: datasets laid out in class folders, with bad rows and bad images;
resumes after a move, a damaged file or a second run at once; schedulers that do not answer;
Ctrl-C and SIGTERM while a run is written; a full disk; checkpoints as researchers save them."""
import errno
import fcntl
import http.server
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

import heatkit
from conftest import run_cli, image_maps
from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.pipeline import datasets

SETTINGS = {"backend": "torch"}


def gray(path, seed=0, size=(15, 15)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, size[::-1], dtype=np.uint8)).save(path)
    return path


def only_folder(out):
    [folder] = [path for path in out.iterdir() if not path.name.startswith(".")]
    return folder


# ---- the dataset's folder ----
def test_a_dataset_folder_is_walked_recursively_with_labels_from_the_first_subfolder(small_model, tmp_path):
    """A class-subfolder layout was refused as holding no images; top-level images were skipped."""
    root = tmp_path / "data"
    for relative in ("cat/a.png", "cat/deeper/b.png", "dog/c.png", "d.png"):
        gray(root / relative, seed=len(relative))
    (root / "cat" / "loop").symlink_to(root)  # a link back up: walked once, no loop
    (root / ".hidden").mkdir()
    gray(root / ".hidden" / "e.png")
    found = datasets.items(str(root), small_model, heatkit.settings())
    assert {(item.source.removeprefix(str(root) + "/"), item.label) for item in found} == {
        ("cat/a.png", "cat"), ("cat/deeper/b.png", "cat"), ("dog/c.png", "dog"), ("d.png", None)}


LABEL_FILES = {
    "no header": (b"a.png,cat\nb.png,dog\n", "must begin with the header row file,label"),
    "not UTF-8": ("file,label\na.png,chat\xe9\n".encode("latin-1"), "is not UTF-8 text"),
    "a row twice": (b"file,label\na.png,cat\nb.png,dog\na.png,dog\n", "row 4 names a.png again (row 2)"),
    "a file not there": (b"file,label\na.png,cat\nz.png,dog\n", "row 3 names z.png, which is no image"),
    "a row without a label": (b"file,label\na.png\nb.png,dog\n", "row 2 (a.png) has no label"),
}


@pytest.mark.parametrize("case", LABEL_FILES)
def test_a_labels_csv_that_is_wrong_is_refused_saying_which_rows(case, small_model_path, tmp_path, capsys):
    data, message = LABEL_FILES[case]
    root = tmp_path / "data"
    gray(root / "a.png"), gray(root / "b.png", 1)
    (root / "labels.csv").write_bytes(data)
    assert run_cli("-mp", small_model_path, "--dataset", root, "--workers", 0, "-hm", "grad", "-op", tmp_path / "out",
                   "-q") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not any((tmp_path / "out").iterdir())


def test_a_bad_image_in_a_dataset_is_a_row_with_its_error_and_the_others_run(small_model_path, tmp_path):
    root = tmp_path / "data"
    gray(root / "a.png"), gray(root / "b.png", 1)
    (root / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    found = heatkit.explain_dataset(small_model_path, str(root), ["grad"], settings=SETTINGS, workers=0,
                                    out=tmp_path, progress=False)
    rows = {row["image"].rsplit("/", 1)[1]: row for row in found.rows}
    assert "cannot read" in rows["c.png"]["error"] and rows["c.png"]["method"] is None
    assert rows["a.png"]["method"] == "grad" and rows["a.png"]["center_rank"] >= 1 and found.computed == 2


# ---- resuming ----
def test_a_moved_dataset_folder_resumes_and_damaged_files_are_computed_again(small_model_path, tmp_path):
    """The key hashed out_path, so a moved folder recomputed everything; a file cut short made every
    later resume fail with BadZipFile."""
    first = heatkit.explain_dataset(small_model_path, "random:6", ["grad"], settings=SETTINGS, workers=0,
                                    out=tmp_path / "a", progress=False)
    first_rows = first.rows  # read from the folder, before it moves
    (tmp_path / "a").rename(tmp_path / "b")
    moved = tmp_path / "b" / first.folder.name
    keys = sorted({row["key"] for row in first_rows})
    (moved / "maps" / f"{keys[0]}.npz").write_bytes((moved / "maps" / f"{keys[0]}.npz").read_bytes()[:100])
    (moved / "maps" / f"{keys[1]}.npz").write_bytes(b"")
    again = heatkit.explain_dataset(small_model_path, "random:6", ["grad"], settings=SETTINGS, workers=0,
                                    out=tmp_path / "b", progress=False)
    assert again.computed == 2 and again.folder == moved
    assert [row["center_rank"] for row in again.rows] == [row["center_rank"] for row in first_rows]


def test_a_second_run_on_the_same_folder_at_once_is_told_so(small_model_path, tmp_path):
    folder = tmp_path / "dataset_random_3_center_pixel"
    folder.mkdir()
    with open(folder / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first run holds it
        with pytest.raises(UsageError, match="another dataset run is writing"):
            heatkit.explain_dataset(small_model_path, "random:3", ["grad"], settings=SETTINGS, workers=0,
                                    out=tmp_path, progress=False)
    assert not (folder / "maps").exists()


# ---- schedulers and workers ----
def test_a_scheduler_that_does_not_answer_ends_in_a_bounded_time_leaving_no_folder(small_model_path, tmp_path,
                                                                                 capsys):
    """A plain HTTP server at the address held the run 420 s and more, printing nothing."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.server_address[1]}"
    try:
        start = time.monotonic()
        assert run_cli("-mp", small_model_path, "--dataset", "random:3", "--scheduler", address, "-hm", "grad",
                       "--set", "scheduler_timeout=2", "-op", tmp_path / "out", "-q") == 2
        assert time.monotonic() - start < 30
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert address in err and "within 2 s" in err and err.count("\n") == 1
    for case in ("notanaddress", "tcp://127.0.0.1:9"):  # not an address; a port where nothing listens
        assert run_cli("-mp", small_model_path, "--dataset", "random:3", "--scheduler", case, "-hm", "grad",
                       "--set", "scheduler_timeout=1", "-op", tmp_path / "out", "-q") == 2
        assert case in capsys.readouterr().err
    assert not any((tmp_path / "out").iterdir())


def test_more_workers_than_cores_are_refused_with_the_machines_count(small_model_path, tmp_path, capsys):
    cores = os.cpu_count()
    assert run_cli("-mp", small_model_path, "--dataset", "random:3", "--workers", cores + 1, "-hm", "grad",
                   "-op", tmp_path / "out", "-q") == 2
    assert f"this machine has {cores} cores" in capsys.readouterr().err
    assert not any((tmp_path / "out").iterdir())


# ---- writing a run ----
def test_ctrl_c_while_the_figures_are_drawn_keeps_the_finished_maps(small_model_path, tmp_path, monkeypatch, capsys):
    """It printed "interrupted: nothing was written" and discarded every map."""
    from heatkit.pipeline import report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "save_figure", interrupted)
    assert run_cli("-mp", small_model_path, "-hm", "grad", "occlusion", "-op", tmp_path, "-q") == 130
    folder = only_folder(tmp_path)
    assert json.loads((folder / "run.json").read_text())["incomplete"] is True
    assert set(image_maps(folder)) == {"input", "grad", "occlusion"}
    assert "finished maps are in" in capsys.readouterr().err


def test_sigterm_stops_a_run_as_ctrl_c_does(small_model_path, tmp_path):
    """Batch schedulers and `timeout` send SIGTERM: it kept nothing."""
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code = run_cli("-mp", small_model_path, "-hm", "grad", "shapley", "--set", "shapley.samples=1000000",
                       "-op", tmp_path, "-q")
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, before)
    assert code == 130
    folder = only_folder(tmp_path)
    assert "grad" in image_maps(folder)
    assert json.loads((folder / "run.json").read_text())["incomplete"] is True


def test_a_full_disk_is_one_line_and_leaves_no_folder(small_model_path, tmp_path, monkeypatch, capsys):
    from heatkit.pipeline import output

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(output.np, "savez_compressed", full)
    assert run_cli("-mp", small_model_path, "-hm", "grad", "-op", tmp_path, "-q") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "heatmaps.npz" in err
    assert not [path for path in tmp_path.iterdir()]


def test_an_unwritable_output_folder_is_found_before_any_work(small_model_path, tmp_path, monkeypatch, capsys):
    from conftest import replace_method

    calls = []
    replace_method(monkeypatch, "grad", lambda *args: calls.append(1))
    (tmp_path / "file").write_bytes(b"")
    assert run_cli("-mp", small_model_path, "-hm", "grad", "-op", tmp_path / "file" / "sub", "-q") == 2
    assert not calls and "choose a writable folder with -op" in capsys.readouterr().err


# ---- images ----
def test_a_bad_image_among_several_names_itself_and_can_be_skipped(small_model_path, tmp_path, capsys):
    folder = tmp_path / "images"
    gray(folder / "a.png"), gray(folder / "b.png", 1)
    (folder / "c.png").write_bytes(b"not an image")
    assert run_cli("-mp", small_model_path, "-ip", folder, "-hm", "grad", "-op", tmp_path / "out", "-q") == 2
    err = capsys.readouterr().err
    assert "c.png" in err and "--skip-bad-images" in err
    assert run_cli("-mp", small_model_path, "-ip", folder, "-hm", "grad", "-op", tmp_path / "out", "-q",
                   "--skip-bad-images") == 0
    assert "note: skipped" in capsys.readouterr().err
    scores = json.loads((only_folder(tmp_path / "out") / "scores.json").read_text())
    assert [row["image"].rsplit("/", 1)[1] for row in scores["images"]] == ["a.png", "b.png"]


def test_an_image_stretched_past_the_limit_says_so(small_model_path, tmp_path, capsys):
    strip = gray(tmp_path / "strip.png", size=(5000, 1))
    assert run_cli("-mp", small_model_path, "-ip", strip, "-hm", "grad", "-op", tmp_path / "out", "-q") == 0
    err = capsys.readouterr().err
    assert "note: " in err and "5000x1 pixels" in err and "aspect ratio changes 5e+03-fold" in err
    assert run_cli("-mp", small_model_path, "-ip", gray(tmp_path / "ok.png", size=(30, 30)), "-hm", "grad",
                   "-op", tmp_path / "out2", "-q") == 0
    assert "stretch" not in capsys.readouterr().err  # 2-fold is within the limit


# ---- checkpoints ----
CODE = "import torch\n\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(225, 3))\n"


@pytest.mark.parametrize("form", ["DataParallel", "checkpoint"])
def test_state_dicts_as_researchers_save_them_load_and_say_how(form, tmp_path, capsys):
    torch = frameworks.torch()
    (tmp_path / "net.py").write_text(CODE)
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(225, 3))
    state = net.state_dict()
    saved = {f"module.{key}": value for key, value in state.items()} if form == "DataParallel" else \
        {"model": state, "epoch": 3, "optimizer": {"lr": 0.1}}
    torch.save(saved, tmp_path / "w.pth")
    assert run_cli("-mp", f"{tmp_path / 'net.py'}:build", "--trust-model", "--weights", tmp_path / "w.pth", "-cl", 1,
                   "-hm", "grad", "-op", tmp_path / "out", "-q") == 0
    note = "'module.'" if form == "DataParallel" else "its 'model' entry"
    assert note in capsys.readouterr().err
    grad = image_maps(only_folder(tmp_path / "out"))["grad"]
    np.testing.assert_allclose(grad, net[1].weight[1].detach().numpy().reshape(15, 15), rtol=1e-6)


def test_a_state_dict_of_another_model_names_the_keys(tmp_path, capsys):
    torch = frameworks.torch()
    (tmp_path / "net.py").write_text(CODE)
    torch.save({"1.weight": torch.zeros(3, 225), "2.bias": torch.zeros(3)}, tmp_path / "w.pt")
    assert run_cli("-mp", f"{tmp_path / 'net.py'}:build", "--trust-model", "--weights", tmp_path / "w.pt",
                   "-op", tmp_path / "out", "-q") == 2
    err = capsys.readouterr().err
    assert "missing: 1.bias" in err and "unexpected: 2.bias" in err


def test_a_whole_module_in_a_pth_file_loads_with_trust(tmp_path):
    torch = frameworks.torch()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(225, 3))
    torch.save(net, tmp_path / "whole.pth")
    run = heatkit.explain(str(tmp_path / "whole.pth"), None, ["grad"], target=2, trust=True,
                          settings={"faithfulness.curves": False}, progress=False)
    np.testing.assert_allclose(run.maps["grad"], net[1].weight[2].detach().numpy().reshape(15, 15), rtol=1e-6)


# ---- experiments ----
def test_a_constant_map_has_no_similarity_and_the_growing_patch_fits_small_inputs(small_model_path):
    """An all-zero map scored Spearman 0.0 and SSIM 0.051; the default patch sizes (up to 81 pixels)
    failed on any input under 41 pixels."""
    from conftest import replace_method

    with pytest.MonkeyPatch.context() as patch:
        replace_method(patch, "grad", lambda model, image, target, params: np.zeros(image.shape[:2], np.float32))
        found = heatkit.sanity(small_model_path, None, ["grad"], mode="noise",
                               settings={"sanity.noise_levels": [0.5]}, progress=False)
    [row] = [row for row in found.rows if row["step"] == 1]
    assert np.isnan(row["spearman"]) and np.isnan(row["ssim"]) and "constant" in row["undefined"]
    grown = heatkit.growing_patch(small_model_path, None, ["grad"], progress=False)
    assert sorted({row["patch"] for row in grown.rows}) == [0, 1, 3, 5]  # of the 15 x 15 input


def test_a_disk_that_fills_during_a_dataset_keeps_every_finished_image(small_model_path, tmp_path, monkeypatch,
                                                                          capsys):
    """The disk filling at the fourth image deleted the dataset folder with the three finished; the
    resume then computed everything again."""
    from heatkit.pipeline import output

    written, savez = [], np.savez_compressed

    def fills(*args, **kwargs):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(1)
        return savez(*args, **kwargs)

    argv = ["-mp", small_model_path, "--dataset", "random:6", "--workers", 0, "-hm", "grad", "-op", tmp_path, "-q",
            "--set", "backend='torch'", "--set", "faithfulness.curves=False"]
    monkeypatch.setattr(output.np, "savez_compressed", fills)
    assert run_cli(*argv) == 2
    assert "No space left on device" in capsys.readouterr().err
    [folder] = [path for path in tmp_path.iterdir()]
    assert len(list((folder / "maps").glob("*.npz"))) == 3
    monkeypatch.setattr(output.np, "savez_compressed", savez)
    assert run_cli(*argv) == 0
    assert "6 images (3 computed now)" in capsys.readouterr().out


def test_two_files_of_the_same_pixels_keep_a_row_each_and_share_the_map(small_model_path, tmp_path):
    """One image disappeared and the other's rows came twice ("2 images (3 computed now)")."""
    root = tmp_path / "data"
    gray(root / "cat" / "a.png", seed=3), gray(root / "dog" / "b.png", seed=3), gray(root / "dog" / "c.png", seed=4)
    found = heatkit.explain_dataset(small_model_path, str(root), ["grad"], settings={**SETTINGS, "faithfulness.curves":
                                    False}, workers=0, out=tmp_path / "out", progress=False)
    rows = {row["image"].removeprefix(str(root) + "/"): row for row in found.rows}
    assert set(rows) == {"cat/a.png", "dog/b.png", "dog/c.png"} and len(found.rows) == 3
    assert (rows["cat/a.png"]["label"], rows["dog/b.png"]["label"]) == ("cat", "dog")
    assert rows["cat/a.png"]["key"] == rows["dog/b.png"]["key"] and found.computed == 2


def test_a_dataset_whose_every_map_fails_is_summarised(tmp_path):
    """A model of NaN weights: every map an error row (right), then a ZeroDivisionError drawing the summary."""
    torch = frameworks.torch()
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(15 * 15, 4))
    with torch.no_grad():
        net[1].weight.fill_(float("nan"))
    torch.save(net.state_dict(), tmp_path / "nan.pt")
    (tmp_path / "net.py").write_text("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                                     "torch.nn.Linear(15 * 15, 4))\n")
    root = tmp_path / "data"
    gray(root / "a.png"), gray(root / "b.png", 1)
    found = heatkit.explain_dataset(f"{tmp_path / 'net.py'}:build", str(root), ["grad", "occlusion"], workers=0,
                                    out=tmp_path / "out", trust=True, progress=False,
                                    settings={"weights": str(tmp_path / "nan.pt"), "input_size": [15, 15]})
    assert all("not finite" in row["error"] for row in found.rows) and (found.folder / "summary.png").is_file()
