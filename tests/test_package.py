"""The package as a user installs it: a wheel built from the checkout, installed into a fresh
virtual environment, explains an image from an unrelated folder with the defaults it ships, a
settings.py there overrides them, and its commands answer under their names."""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import numpy as np
import pytest

import heatkit

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel alone; the pinned dependencies come from this environment's
    site-packages by a .pth line (the suite runs without a network), never its heatkit."""
    folder = tmp_path_factory.mktemp("wheel")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(folder / "source.tar", "w") as archive:  # the checkout's files, without builds and models
        for name in files:
            archive.add(ROOT / name, arcname=name, recursive=False)
    with tarfile.open(folder / "source.tar") as archive:
        archive.extractall(folder / "source", filter="tar")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", folder / "dist", "."],
                   cwd=folder / "source", check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", folder / "venv"], check=True)
    site = folder / "venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    [wheel] = (folder / "dist").glob("heatkit-*.whl")
    subprocess.run([*pip, "--python", folder / "venv" / "bin" / "python", "install", "--quiet", "--no-deps",
                    "--no-index", wheel], check=True, capture_output=True)
    return folder / "venv" / "bin"


def test_the_wheel_explains_an_image_from_an_unrelated_folder(installed, small_model_path, tmp_path):
    where = tmp_path / "work"
    where.mkdir()
    done = subprocess.run([installed / "python", "-c", "import heatkit.api, heatkit.methods.gradient as g; "
                           "print(heatkit.api.__file__, g.__file__, heatkit.__version__)"],
                          cwd=where, capture_output=True, text=True)
    api, method, version = done.stdout.split()
    assert Path(api).is_relative_to(installed.parent) and Path(method).is_relative_to(installed.parent)
    assert version == heatkit.__version__
    (where / "settings.py").write_text("occlusion = dict(patch=3)\n")  # the working folder's, read by the command
    command = [installed / "heatkit", "-mp", small_model_path, "-hm", "grad", "occlusion", "-q", "--set", "seed=4"]
    assert subprocess.run(command, cwd=where, capture_output=True).returncode == 0
    [folder] = (where / "results").iterdir()  # the shipped default out_path, relative to the working folder
    assert json.loads((folder / "run.json").read_text())["settings"]["occlusion"]["patch"] == 3
    here = heatkit.explain(small_model_path, None, ["grad", "occlusion"], settings={"seed": 4, "occlusion.patch": 3},
                           progress=False)
    with np.load(folder / "heatmaps.npz") as maps:
        stem = json.loads((folder / "scores.json").read_text())["images"][0]["stem"]
        assert all(np.array_equal(maps[f"{stem}/{key}"], here.maps[key]) for key in ("grad", "occlusion"))


def test_the_commands_answer_under_their_names(installed, tmp_path):
    for command, name in (([installed / "heatkit"], "heatkit"), ([installed / "python", "-m", "heatkit"],
                                                                  "python -m heatkit"),
                          ([installed / "heatmap_script"], "heatmap_script")):
        done = subprocess.run([*command, "-h"], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: {name} ") and "methods (-hm)" in done.stdout
        wrong = subprocess.run([*command, "--no-such-flag"], cwd=tmp_path, capture_output=True, text=True)
        assert wrong.returncode == 2 and f"see {name} -h" in wrong.stderr
