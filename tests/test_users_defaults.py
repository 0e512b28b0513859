"""Each entry point with the settings users get, the faithfulness curves included (conftest.py turns
them off for the other tests). On the center-pixel model the center pixel alone decides the class:
occlusion ranks it first, so deleting the map's ranking drops the class's probability at the
first step (a deletion area near 0) and inserting it restores the probability at once (near 1),
where a random ranking is near 0.5."""
import json

import pytest

import heatkit
from conftest import SMALL, image_scores, run_cli
from heatkit.base.data import center_pixel_images

pytestmark = pytest.mark.users_defaults


def assert_center_first(areas: dict, random: dict) -> None:
    assert areas["deletion_area"] < 0.1 and areas["insertion_area"] > 0.9
    assert random["deletion_area"] > 0.2 and random["insertion_area"] < 0.8


def test_the_command_line(small_model_path, tmp_path):
    assert run_cli("-mp", small_model_path, "-hm", "grad", "occlusion", "-op", tmp_path, "-q") == 0
    [folder] = tmp_path.iterdir()
    assert json.loads((folder / "run.json").read_text())["settings"]["faithfulness"]["curves"] is True
    scores = image_scores(folder)
    assert_center_first(scores["methods"]["occlusion"], scores["random_ranking"])


def test_the_api(small_model_path):
    image = center_pixel_images(1, SMALL, 256, seed=3)[0]
    run = heatkit.explain(small_model_path, image, ["occlusion"], progress=False)
    assert run.settings["faithfulness"]["curves"] is True
    assert_center_first(run.scores["occlusion"], run.result.random_ranking())


def test_the_dataset_mode(small_model_path, tmp_path):
    run = heatkit.explain_dataset(small_model_path, "random:2", ["occlusion"], workers=0, out=tmp_path, progress=False)
    rows = {(row["image"], row["method"]): row for row in run.rows}
    assert sorted(rows) == [(f"random:{i}", method) for i in range(2) for method in ("occlusion", "random")]
    for image in ("random:0", "random:1"):
        assert_center_first(rows[image, "occlusion"], rows[image, "random"])
