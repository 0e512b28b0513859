"""--evaluate-metrics: which metric agrees with the truth, checked where the answer is known by
construction (a metric that is the truth itself has tau 1), and the command's files."""
from __future__ import annotations

import numpy as np
import pytest

import create_model
import heatkit
from heatkit.base.errors import UsageError
from heatkit.pipeline import meta_evaluation
from tests.conftest import run_cli

SIDE = 11
METHODS = ["grad", "ig", "occlusion", "pda", "lime"]


@pytest.fixture(scope="module")
def known_answer_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("known_answers")
    for name in ("center_pixel", "region"):
        assert create_model.main(["--model", name, "--image-size", str(SIDE), "--set", "center_pixel.region_side=3",
                                  "--out", str(folder)]) == 0
    return [str(folder / "center_pixel.h5"), str(folder / "region.h5")]


def test_a_metric_that_is_the_truth_agrees_with_it_exactly(known_answer_models):
    """The truth is the share of |a| on the deciding pixels: center_share is that share on the
    center-pixel model, and Relevance Mass Accuracy by |a| is it on both models."""
    found = heatkit.evaluate_metrics(known_answer_models, METHODS, progress=False, settings={
        "evaluate_metrics.images": 3, "evaluate_metrics.seeds": [0, 1], "localisation.relevance": "absolute",
        "center_pixel.region_side": 3, "evaluate_metrics.noisy_copies": 2})  # the robustness metrics are not graded here
    assert list(found.summaries) == ["center_pixel", "region"]
    assert found.summaries["center_pixel"]["center_share"]["tau"] == pytest.approx(1.0)
    for model in found.summaries:
        summary = found.summaries[model]["relevance_mass_accuracy"]
        assert summary["tau"] == pytest.approx(1.0) and summary["sd"] == pytest.approx(0.0)
        assert summary["seed_sd"] == pytest.approx(0.0) and len(found.taus[model]) == 2
        assert summary["images"] == 6 and summary["low"] <= summary["tau"] <= summary["high"]
        # each image's maps on the re-initialized model (some maps are constant there: no score)
        assert found.summaries[model]["mprt"]["images"] > 0
    assert found.summaries["region"]["center_share"]["tau"] < 0.5  # the center is not where the region model looks
    assert "relevance_mass_accuracy" in found.table() and len(found.rows()) == 2 * len(meta_evaluation.graded())


def test_tau_is_kendalls_over_the_methods_each_metric_turned_to_its_better_direction():
    truths = {"a": 0.9, "b": 0.5, "c": 0.1, "d": None}
    scores = {"a": {"complexity": 1.0, "sparseness": 0.1}, "b": {"complexity": 2.0, "sparseness": 0.2},
              "c": {"complexity": 3.0, "sparseness": 0.3}, "d": {"complexity": 0.0, "sparseness": 1.0}}
    taus = meta_evaluation.image_taus(scores, truths)
    assert taus["complexity"] == pytest.approx(1.0)  # lower is better, and lower goes with the truth
    assert taus["sparseness"] == pytest.approx(-1.0)
    assert taus["pointing_game"] is None  # no map has it
    summary = meta_evaluation.summarize([[{"sparseness": 1.0}, {"sparseness": 0.0}, {"sparseness": None}],
                                         [{"sparseness": 0.5}]], 200, 0)["sparseness"]
    assert summary["tau"] == 0.5 and summary["images"] == 3 and summary["seed_sd"] == 0.0  # seed means 0.5, 0.5
    assert summary["sd"] == pytest.approx(np.std([1.0, 0.0, 0.5]))
    assert 0.0 <= summary["low"] <= 0.5 <= summary["high"] <= 1.0


def test_a_model_without_ground_truth_is_refused(gap_model_path):
    with pytest.raises(UsageError, match="no ground truth"):
        heatkit.evaluate_metrics([str(gap_model_path)], ["grad"], progress=False)


def test_the_command_writes_its_table_and_refuses_an_image(tmp_path, capsys):
    argv = ["--evaluate-metrics", "-hm", "grad", "occlusion", "ig", "--set", f"evaluate_metrics.image_size={SIDE}",
            "--set", "center_pixel.region_side=3", "--set", "evaluate_metrics.images=2", "--set",
            "evaluate_metrics.seeds=[0]", "-op", str(tmp_path), "-q"]
    assert run_cli(*argv) == 0
    (folder,) = tmp_path.glob("evaluate_metrics_*")
    assert {path.name for path in folder.iterdir()} == {"metrics.csv", "metrics.png", "table.txt", "settings.json"}
    assert "relevance_mass_accuracy" in capsys.readouterr().out
    assert run_cli("--evaluate-metrics", "-ip", "images/chelsea.png", "-op", str(tmp_path / "no")) == 2
    assert "builds its own models" in capsys.readouterr().err and not (tmp_path / "no").exists()
