"""Faithfulness curves: exact answers on the center-pixel model, the fast path against full passes,
and Quantus 0.6's definitions on the same maps."""
from __future__ import annotations

import math

import numpy as np
import pytest

import heatkit
from heatkit.base import frameworks
from heatkit.model import Model
from heatkit.metrics import curves as faithfulness
from tests.conftest import SMALL, engine_options

PARAMS = {"curves": True, "patch": 1, "regions_per_step": 1, "ranking": "signed", "baseline": "constant", "fill": 0.0,
          "blur_sigma": 5.0, "random_draws": 0, "seed": 0}


def map_ranking_center(rank: int, rng) -> np.ndarray:
    """A map of distinct values whose center pixel is the rank-th largest."""
    values = rng.permutation(SMALL * SMALL).astype(np.float32)
    attribution = values.reshape(SMALL, SMALL)
    center = (SMALL // 2, SMALL // 2)
    position = np.argwhere(attribution == SMALL * SMALL - rank)[0]
    attribution[tuple(position)], attribution[center] = attribution[center], attribution[tuple(position)]
    return attribution


@pytest.mark.parametrize("per_step", [1, 4, 7])
def test_center_pixel_curves_fall_exactly_when_the_center_goes(small_model, per_step, rng):
    """A map that ranks the center k-th deletes it at step m = ceil(k / per_step): deletion is p
    before m and p(fill) from m, insertion the reverse, and the areas follow in closed form."""
    image = rng.random((SMALL, SMALL, 1))
    target = int(small_model.probabilities(image[None]).argmax())
    filled = image.copy()
    filled[SMALL // 2, SMALL // 2] = 0.0
    p, p_fill = (float(small_model.probabilities(x[None])[0, target]) for x in (image, filled))
    steps = math.ceil(SMALL * SMALL / per_step)
    for rank in (1, 2, 30, 113, SMALL * SMALL):
        scored = faithfulness.score_maps(small_model, image, target, {"map": map_ranking_center(rank, rng)},
                                         {**PARAMS, "regions_per_step": per_step})["map"]
        m = math.ceil(rank / per_step)
        expected = np.where(np.arange(steps + 1) < m, p, p_fill)
        assert np.abs(scored["deletion"] - expected).max() < 1e-9
        assert np.abs(scored["insertion"] - (p + p_fill - expected)).max() < 1e-9
        assert abs(scored["deletion_area"] - ((m - 1) * p + (p + p_fill) / 2 + (steps - m) * p_fill) / steps) < 1e-9
        assert abs(scored["insertion_area"] - ((m - 1) * p_fill + (p + p_fill) / 2 + (steps - m) * p) / steps) < 1e-9
        assert abs(scored["aopc"] - (p - p_fill) * (steps + 1 - m) / (steps + 1)) < 1e-9


def test_the_fast_path_gives_the_curves_of_full_passes(small_model_path, rng):
    image, attribution = rng.random((SMALL, SMALL, 1)), rng.normal(size=(SMALL, SMALL))
    params = {**PARAMS, "patch": 2, "regions_per_step": 3, "baseline": "blur", "random_draws": 2}
    scored = {}
    for fast in (True, False):
        with engine_options(fast=fast) as state:
            scored[fast] = faithfulness.score_maps(Model(small_model_path), image, 7, {"map": attribution}, params)
        assert set(state.evaluations) == {"fast" if fast else "full"}
    for key in ("map", "random"):
        for curve in ("deletion", "insertion"):
            assert np.abs(scored[True][key][curve] - scored[False][key][curve]).max() < 1e-9


def test_regions_rank_by_their_sum_and_steps_end_at_the_last_region():
    labels = faithfulness.regions((5, 5), 2)  # 3 x 3 tiles, the last row and column of tiles smaller
    attribution = np.zeros((5, 5))
    attribution[4, 4], attribution[0, 2:4] = 5.0, 2.0  # tile 8 (one pixel) first, then tile 1 (sum 4)
    order = faithfulness.ranked_regions(attribution, labels, "signed", seed=0)
    assert list(order[:2]) == [8, 1] and sorted(order) == list(range(9))
    elements, points = faithfulness.walk_of(np.array([8, 1, 0, 2, 3, 4, 5, 6, 7]), labels, channels=2, per_step=4)
    assert list(elements[:2]) == [48, 49] and list(elements[2:4]) == [4, 5]  # pixel 24's channels, then pixel 2's
    # tiles 8, 1, 0, 2 (2 + 8 + 8 + 4 elements), then 3, 4, 5, 6 (8 + 8 + 4 + 4), then 7 (4)
    assert list(points) == [22, 46, 50]


@pytest.fixture(scope="module")
def quantus_case():
    """A float32 PyTorch CNN, a gray image, its predicted class and a map without ties."""
    torch = frameworks.torch()
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 3)).eval()
    rng = np.random.default_rng(4)
    image, attribution = rng.random((10, 10, 1)), rng.normal(size=(10, 10))
    model = heatkit.load_model(net, settings={"input_size": [10, 10]})
    return net, model, image, int(model.probabilities(image[None]).argmax()), attribution


def quantus():
    import quantus
    return quantus


@pytest.mark.parametrize("per_step", [1, 4])  # Quantus needs it to divide the pixels
def test_deletion_equals_quantus_pixel_flipping(quantus_case, per_step):
    """Quantus' PixelFlipping curve is the deletion curve without its step 0, and its AUC is
    np.trapz over steps 1..K with unit spacing (our area is the trapezoid mean over 0..K)."""
    net, model, image, target, attribution = quantus_case
    metric = quantus().PixelFlipping(features_in_step=per_step, perturb_baseline=0.0, abs=False, normalise=False,
                                     disable_warnings=True, display_progressbar=False)
    curve = np.array(metric(model=net, x_batch=image.transpose(2, 0, 1)[None].astype(np.float32),
                            y_batch=np.array([target]), a_batch=attribution[None, None].astype(np.float32),
                            softmax=True, device="cpu")[0])
    ours = faithfulness.score_maps(model, image, target, {"map": attribution},
                                   {**PARAMS, "regions_per_step": per_step})["map"]
    assert np.abs(ours["deletion"][1:] - curve).max() < 1e-6
    assert abs(np.trapz(ours["deletion"][1:]) - np.trapz(curve)) < 1e-6 * curve.size


def test_aopc_equals_quantus_region_perturbation(quantus_case):
    """Quantus' RegionPerturbation (MoRF) gives p(x) - p(step k) for k = 1..K; Samek's AOPC is their
    sum over K + 1 (step 0 adds 0)."""
    net, model, image, target, attribution = quantus_case
    metric = quantus().RegionPerturbation(patch_size=1, order="morf", regions_evaluation=100, perturb_baseline=0.0,
                                          abs=False, normalise=False, disable_warnings=True,
                                          display_progressbar=False)
    drops = np.array(metric(model=net, x_batch=image.transpose(2, 0, 1)[None].astype(np.float32),
                            y_batch=np.array([target]), a_batch=attribution[None, None].astype(np.float32),
                            softmax=True, device="cpu")[0])
    ours = faithfulness.score_maps(model, image, target, {"map": attribution}, PARAMS)["map"]
    assert drops.size == 100
    assert abs(ours["aopc"] - drops.sum() / (drops.size + 1)) < 1e-6


def test_a_run_scores_every_map_and_the_random_rankings(small_model_path, rng):
    run = heatkit.explain(small_model_path, rng.random((SMALL, SMALL, 1)), ["grad", "occlusion"], progress=False,
                          settings={"faithfulness.curves": True, "faithfulness.random_draws": 3})
    table, random = run.scores, run.rows()[0]["random_ranking"]
    assert table["occlusion"]["deletion_area"] < random["deletion_area"] < table["grad"]["deletion_area"] + 1
    assert table["occlusion"]["aopc"] > random["aopc"] and random["draws"] == 3 and random["aopc_sd"] > 0
    assert "deletion" in run.summary().splitlines()[0] and "random ranking" in run.summary()


def test_tied_regions_rank_in_a_seeded_random_order_not_in_row_order():
    labels = faithfulness.regions((8, 8), 1)
    attribution = np.zeros((8, 8))
    attribution[5, 5] = 1.0  # one region first; the other 63 tie
    orders = [faithfulness.ranked_regions(attribution, labels, "signed", seed) for seed in range(20)]
    assert all(order[0] == 45 for order in orders)
    np.testing.assert_array_equal(orders[0], faithfulness.ranked_regions(attribution, labels, "signed", 0))
    # the tied regions' order follows no row order: their mean rank position is the middle for every region
    positions = np.mean([np.argsort(order) for order in orders], axis=0)
    assert not np.array_equal(orders[0][1:], np.sort(orders[0][1:]))
    assert abs(np.delete(positions, 45).mean() - 32) < 1e-9 and np.delete(positions, 45).std() < 12


def test_a_constant_maps_ranking_scores_are_undefined(small_model):
    x = np.random.default_rng(0).random(small_model.input_shape)
    constant = {"flat": np.full(x.shape[:2], 0.25, np.float32)}
    scored = faithfulness.score_maps(small_model, small_model.preprocess(x), 3, constant, {**PARAMS, "patch": 3})
    assert scored["flat"]["deletion_area"] is None and scored["flat"]["aopc"] is None
    assert "constant" in scored["flat"]["undefined"] and "deletion" not in scored["flat"]
    from heatkit.metrics import road
    assert road.road(small_model, x, 3, constant["flat"], {"percentages": [10, 50], "noise": 0.0, "seed": 0}) is None
