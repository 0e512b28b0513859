"""The dataset mode: a LocalCluster, a resumed run, maps equal to single-image runs, the leaderboard
and the boards, and Sufficiency over the images (on a cluster whose workers see no client file:
tests/test_dataset_cluster.py)."""
from __future__ import annotations


import numpy as np
import pytest

import heatkit
from heatkit.pipeline import datasets
from heatkit.pipeline.datasets.store import Store

METHODS = ["grad", "occlusion"]
SETTINGS = {"backend": "torch"}  # the workers need no TensorFlow


def stored_maps(found) -> dict[str, dict[str, np.ndarray]]:
    """Each image's maps as its file holds them, by image."""
    return {row["image"]: Store(found.folder).read(row["key"])[0] for row in found.rows}


def assert_complete(found, images: int):
    pairs = [(row["image"], row["method"]) for row in found.rows]
    assert len(pairs) == len(set(pairs)) == images * len(METHODS)
    assert not any(row["error"] for row in found.rows)


def test_a_notebooks_cluster_gives_the_maps_of_single_runs(small_model_path, tmp_path):
    """A distributed.Client made in a notebook is used as it is, and left open."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        found = heatkit.explain_dataset(small_model_path, "random:40", METHODS, settings=SETTINGS, scheduler=client,
                                        out=tmp_path, progress=False)
        assert client.status == "running"
    assert_complete(found, 40)
    assert found.computed == 40
    model = heatkit.load_model(small_model_path, settings=SETTINGS)
    cfg = heatkit.settings(SETTINGS)
    for item in datasets.items("random:40", model, cfg)[:3]:
        single = heatkit.explain(small_model_path, item.pixels, METHODS, settings=SETTINGS, progress=False)
        for key in METHODS:
            assert np.array_equal(stored_maps(found)[item.source][key], single.maps[key])
        assert item.label == single.result.true_label  # random:N knows each image's class
    assert {"results.parquet", "results.csv", "leaderboard.txt", "summary.png", "run.json"} <= \
        {path.name for path in found.folder.iterdir()}


def test_a_resumed_run_computes_only_what_is_missing(small_model_path, tmp_path):
    first = heatkit.explain_dataset(small_model_path, "random:10", METHODS, settings=SETTINGS, workers=0, out=tmp_path,
                                    progress=False)
    lost = sorted({row["key"] for row in first.rows})[:3]
    for key in lost:
        (first.folder / "maps" / f"{key}.npz").unlink()
    again = heatkit.explain_dataset(small_model_path, "random:10", METHODS, settings=SETTINGS, workers=0, out=tmp_path,
                                    progress=False)
    assert again.computed == 3
    timeless = lambda rows: [{**row, "seconds": None} for row in rows]  # noqa: E731
    assert timeless(again.rows) == timeless(first.rows)
    changed = heatkit.explain_dataset(small_model_path, "random:10", METHODS, workers=0, out=tmp_path, progress=False,
                                      settings={**SETTINGS, "occlusion.patch": 3})
    assert changed.computed == 10  # another setting, other keys


def test_the_leaderboard_ranks_the_faithful_method_first(small_model_path, tmp_path):
    found = heatkit.explain_dataset(small_model_path, "random:8", METHODS, settings=SETTINGS, workers=0, out=tmp_path,
                                    progress=False)
    text, board = datasets.leaderboard(found.scores, ground_truth=True)
    assert [entry["method"] for entry in board] == ["occlusion", "grad"]
    assert board[0]["low"] <= board[0]["mean"] <= board[0]["high"] and "center_share" in text.splitlines()[0]


def test_a_board_per_category_orders_the_methods_by_its_first_metric_in_its_direction(small_model_path, tmp_path):
    """Occlusion finds the center: first on the localisation board (higher is better) and, as the
    sparser map, first on the complexity board, whose first metric, Sparseness, is higher-better."""
    found = heatkit.explain_dataset(small_model_path, "random:4", METHODS, settings=SETTINGS, workers=0, out=tmp_path,
                                    progress=False)
    boards = {block.splitlines()[0].split(",")[0]: block.splitlines() for block in
              datasets.category_boards(found.scores).split("\n\n")}
    assert boards["localisation"][0].endswith("by center_rank") and boards["localisation"][3].startswith("occlusion")
    assert boards["complexity"][2].split()[1:] == ["higher", "lower"]  # sparseness, complexity
    assert boards["complexity"][3].startswith("occlusion")
    assert "localisation, mean over the images" in (found.folder / "leaderboard.txt").read_text()


def test_sufficiency_grades_the_datasets_images_together_as_one_run_does(gap_model_path, tmp_path):
    """Sufficiency compares each image's map with every other image's: on an untrained 3-class CNN
    and eight images of mixed predictions, the dataset's score of an image equals that of one run
    of all eight, resumed or not."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for index in range(8):  # each channel scaled apart, so that the predictions differ
        pixels = rng.random((12, 12, 3)) * rng.uniform(0, 1, 3) * 255
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"image{index}.png")
    settings = {**SETTINGS, "sufficiency.threshold": 0.9}  # random images: alike maps are far apart
    found = heatkit.explain_dataset(gap_model_path, str(folder), METHODS, settings=settings, workers=0,
                                    out=tmp_path, progress=False)
    files = sorted(folder.iterdir())
    together = heatkit.explain(gap_model_path, [str(file) for file in files], METHODS, settings=settings,
                               progress=False)
    expected = {(str(file), key): image.results[0].scores()[key]["sufficiency"]
                for file, image in zip(files, together.items) for key in METHODS}
    assert {(row["image"], row["method"]): row["sufficiency"] for row in found.rows if row["method"] in METHODS} \
        == pytest.approx(expected)
    assert 0 < np.mean(list(expected.values())) < 1
    again = heatkit.explain_dataset(gap_model_path, str(folder), METHODS, settings=settings, workers=0,
                                    out=tmp_path, progress=False)
    assert again.computed == 0 and [row.get("sufficiency") for row in again.rows] == \
        [row.get("sufficiency") for row in found.rows]


def test_a_url_dataset_is_read_where_it_is_explained_and_resumes_unread(small_model_path, tmp_path, monkeypatch):
    """file:// through fsspec, as s3:// would be: the same rows and maps as the folder; a resumed
    run knows the URLs' keys from maps/sources.jsonl and reads none of them."""
    import fsspec
    from PIL import Image

    rng = np.random.default_rng(2)
    for name in ("cat/a.png", "dog/b.png", "dog/c.png"):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (15, 15), dtype=np.uint8)).save(tmp_path / "data" / name)
    call = dict(methods=METHODS, settings=SETTINGS, workers=0, progress=False)
    folder = heatkit.explain_dataset(small_model_path, str(tmp_path / "data"), out=tmp_path / "folder", **call)
    url = heatkit.explain_dataset(small_model_path, f"file://{tmp_path / 'data'}/", out=tmp_path / "url", **call)
    assert [(row["label"], row["key"], row["center_rank"]) for row in url.rows] == \
        [(row["label"], row["key"], row["center_rank"]) for row in folder.rows]
    assert all(row["image"].startswith("file://") for row in url.rows)
    monkeypatch.setattr(fsspec, "open", lambda path, *args, **kwargs: pytest.fail(f"{path} read again"))
    again = heatkit.explain_dataset(small_model_path, f"file://{tmp_path / 'data'}/", out=tmp_path / "url", **call)
    assert again.computed == 0 and again.images == 3


def test_the_bootstrap_drawn_in_chunks_gives_the_normal_theory_interval(monkeypatch):
    """20,000 scores of 0 and 1 (30% ones): the 95% interval of the mean is 0.3 +- 1.96 sqrt(0.21 / N),
    a resample drawn 1,000 indices at a time (a million rows need no 1000 x N array)."""
    from heatkit.pipeline.datasets import summary

    monkeypatch.setattr(summary, "DRAWS", 1000)
    values = np.random.default_rng(1).permutation(np.repeat([1.0, 0.0], [6000, 14000]))
    scores = summary.Scores({"method": "grad", "center_share": value} for value in values)
    _, [entry] = datasets.leaderboard(scores, ground_truth=True)
    half = 1.96 * np.sqrt(0.3 * 0.7 / values.size)
    assert entry["mean"] == 0.3 and entry["images"] == 20000
    assert entry["low"] == pytest.approx(0.3 - half, abs=0.0015) and entry["high"] == pytest.approx(0.3 + half, abs=0.0015)
