"""Center scores on maps whose answers are obvious."""
import numpy as np
import pytest

from heatkit.pipeline.scores import center_crop, center_scores


def test_a_map_on_the_center_alone_scores_perfectly():
    attribution = np.zeros((9, 9), np.float32)
    attribution[4, 4] = -3.0
    assert center_scores(attribution, 5) == {"center_value": -3.0, "center_rank": 1, "center_share": 1.0,
                                             "crop_share": 1.0}


def test_rank_counts_the_magnitudes_at_least_the_centers_and_ties_count_against_it():
    attribution = np.arange(81, dtype=np.float32).reshape(9, 9) - 40  # center is 0
    attribution[4, 4] = 10  # 60 pixels hold |value| above 10; -10 and 10 tie with it
    assert center_scores(attribution, 3)["center_rank"] == 63
    ties = np.ones((9, 9), np.float32)
    assert center_scores(ties, 3)["center_rank"] == 81


def test_shares_of_a_uniform_map():
    scores = center_scores(np.full((9, 9), 2.0, np.float32), 3)
    assert scores["center_share"] == pytest.approx(1 / 81) and scores["crop_share"] == pytest.approx(9 / 81)


def test_an_all_zero_map_has_zero_shares():
    scores = center_scores(np.zeros((5, 5), np.float32), 3)
    assert scores["center_share"] == 0.0 and scores["crop_share"] == 0.0
    assert scores["center_rank"] == 25  # an empty map does not "find the center"


def test_center_crop_is_centered():
    grid = np.arange(49).reshape(7, 7)
    assert center_crop(grid, 3).tolist() == [[16, 17, 18], [23, 24, 25], [30, 31, 32]]
