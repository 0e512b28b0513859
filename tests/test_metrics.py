"""The metric registry's metrics: equal to Quantus 0.6 on the same map and mask, or to their papers
where the two differ (with the difference itself checked), known answers on maps whose scores
are known, and the scores a run writes."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import heatkit
from heatkit.base.errors import UsageError
from heatkit.metrics import complexity, localisation, randomisation
from heatkit.metrics.registry import COMPUTED, METRICS, REGISTRY, Category, Reads, score
from tests.conftest import replace_method, run_cli

SIDE = 15
MODES = {"positive": {"relevance": "positive", "mask": None}, "absolute": {"relevance": "absolute", "mask": None},
         "signed": {"relevance": "signed", "mask": None}}


def quantus_score(name: str, attribution: np.ndarray, mask: np.ndarray | None = None, **options) -> float:
    """Quantus's score of one map (a batch of one, channel first), its warnings off."""
    import quantus

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = getattr(quantus, name)(disable_warnings=True, **options)
        x = np.zeros((1, 1, *attribution.shape), np.float32)
        found = metric(model=None, x_batch=x, y_batch=np.array([0]), a_batch=attribution[None, None].copy(),
                       s_batch=None if mask is None else mask[None, None].astype(float), channel_first=True)
    return float(found[0])


def autograd_gradient(model, inputs, targets, **kwargs):
    """The gradient of each target logit by torch's autograd: Quantus's explain_func, (N, C, H, W)."""
    import torch

    inputs = torch.tensor(inputs, requires_grad=True)
    model(inputs)[torch.arange(len(inputs)), torch.as_tensor(targets)].sum().backward()
    return inputs.grad.numpy()


def small_cnn(seed: int, classes: int = 4):
    """A seeded untrained PyTorch CNN on SIDE x SIDE gray inputs, built as a user builds one:
    conv, ReLU, flatten, linear."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(3 * (SIDE - 2) ** 2, classes)).eval()


def maps_and_masks():
    """Seeded maps without ties (signed, one nearly all negative) and masks of several shapes."""
    rng = np.random.default_rng(7)
    for index in range(6):
        attribution = rng.normal(size=(SIDE, SIDE)) * 10.0 ** rng.uniform(-3, 3)
        if index == 5:
            attribution = -np.abs(attribution)
            attribution[0, 0] *= -1  # Quantus refuses a map with no positive value
        mask = np.zeros((SIDE, SIDE), bool)
        row, col, height, width = *rng.integers(0, 8, 2), *rng.integers(1, 8, 2)
        mask[row:row + height, col:col + width] = True
        yield attribution, mask


def test_every_score_has_one_entry_with_a_category_and_a_direction():
    assert len(REGISTRY) == len(METRICS) and all(isinstance(m.category, Category) for m in METRICS)
    assert {m.direction for m in METRICS} <= {"higher", "lower", "-"}
    assert REGISTRY["complexity"].direction == "lower" and REGISTRY["sparseness"].direction == "higher"


@pytest.mark.parametrize("attribution, mask", list(maps_and_masks()))
def test_complexity_equals_quantus_and_sparseness_is_quantus_without_its_epsilon(attribution, mask):
    assert complexity.entropy(attribution) == pytest.approx(quantus_score("Complexity", attribution), rel=1e-6)
    # Quantus: the Gini index of |a| / max|a| + 1e-7; the paper's has no 1e-7
    shifted = np.abs(attribution) / np.abs(attribution).max() + 1e-7
    assert complexity.gini(shifted) == pytest.approx(quantus_score("Sparseness", attribution), rel=1e-6)


@pytest.mark.parametrize("attribution, mask", list(maps_and_masks()))
def test_localisation_equals_quantus_in_each_relevance_mode(attribution, mask):
    positive = np.clip(attribution, 0, None)
    for key, quantus_name in (("pointing_game", "PointingGame"), ("relevance_mass_accuracy", "RelevanceMassAccuracy"),
                              ("relevance_rank_accuracy", "RelevanceRankAccuracy")):
        function = REGISTRY[key].function
        assert function(attribution, mask, MODES["signed"]) == pytest.approx(
            quantus_score(quantus_name, attribution, mask), rel=1e-6, abs=1e-12)
        assert function(attribution, mask, MODES["absolute"]) == pytest.approx(
            quantus_score(quantus_name, attribution, mask, abs=True), rel=1e-6, abs=1e-12)
        if positive.any() and key != "relevance_rank_accuracy":  # clipped maps tie at 0, which Quantus's sort breaks
            assert function(attribution, mask, MODES["positive"]) == pytest.approx(
                quantus_score(quantus_name, positive, mask), rel=1e-6, abs=1e-12)
    function = REGISTRY["attribution_localisation"].function
    assert function(attribution, mask, MODES["absolute"]) == pytest.approx(
        quantus_score("AttributionLocalisation", attribution, mask), rel=1e-6)
    if positive.any():
        assert function(attribution, mask, MODES["positive"]) == pytest.approx(
            quantus_score("AttributionLocalisation", attribution, mask, abs=False, positive_attributions=True),
            rel=1e-6)


def test_known_answers_of_one_pixel_and_constant_maps():
    n = SIDE * SIDE
    one_pixel = np.zeros((SIDE, SIDE))
    one_pixel[7, 7] = 3.0
    assert complexity.gini(one_pixel) == pytest.approx((n - 1) / n) and complexity.entropy(one_pixel) == 0
    constant = np.full((SIDE, SIDE), -2.0)
    assert complexity.gini(constant) == pytest.approx(0, abs=1e-12)
    assert complexity.entropy(constant) == pytest.approx(math.log(n))
    assert complexity.gini(np.zeros((SIDE, SIDE))) is None and complexity.entropy(np.zeros((SIDE, SIDE))) is None
    # a one-pixel map on 227 x 227: the paper's Gini against Quantus's with its 1e-7
    big = np.zeros((227, 227))
    big[113, 113] = 1.0
    assert complexity.gini(big) == pytest.approx(0.99998, abs=1e-5)
    assert quantus_score("Sparseness", big) == pytest.approx(0.99485, abs=1e-5)


def test_ties_are_shared_by_chance():
    mask = np.zeros((SIDE, SIDE), bool)
    mask[:3, :3] = True  # 9 of 225 pixels
    constant = np.ones((SIDE, SIDE))
    share = 9 / SIDE**2
    for key in ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy"):
        assert REGISTRY[key].function(constant, mask, MODES["positive"]) == pytest.approx(share)
    two_tops = np.zeros((SIDE, SIDE))
    two_tops[0, 0] = two_tops[10, 10] = 5.0  # one maximum inside, one outside
    assert localisation.pointing_game(two_tops, mask, MODES["positive"]) == 0.5
    assert quantus_score("PointingGame", two_tops, mask) == 1.0  # Quantus: any tied maximum inside is a hit
    # rank accuracy, K = 9: 8 pixels clearly inside and above, then 3 pixels tied at the 9th value, one inside
    ranked = np.zeros((SIDE, SIDE))
    ranked[:3, :3] = 10.0
    ranked[2, 2] = 1.0
    ranked[5, 5] = ranked[6, 6] = 1.0
    assert localisation.rank_accuracy(ranked, mask, MODES["positive"]) == pytest.approx((8 + 1 / 3) / 9)
    assert localisation.attribution_localisation(-constant, mask, MODES["positive"]) is None


def test_a_center_pixel_run_scores_against_the_center(small_model_path, tmp_path):
    """The center-pixel model's mask is its center pixel: occlusion, which finds it, scores 1."""
    run = heatkit.explain(str(small_model_path), np.random.default_rng(1).random((SIDE, SIDE, 1)),
                          ["occlusion", "grad"], settings={"occlusion.patch": 1}, progress=False)
    found = run.scores["occlusion"]
    assert found["pointing_game"] == 1 and found["relevance_rank_accuracy"] == 1
    assert found["relevance_mass_accuracy"] == pytest.approx(1, abs=1e-6)
    for key in ("grad", "occlusion"):
        expected = score(run.maps[key], localisation.mask_from(MODES["positive"], (SIDE, SIDE), "center_pixel"),
                         run.settings)
        assert {k: run.scores[key][k] for k in expected} == expected
    written = json.loads((run.save(tmp_path / "out") / "scores.json").read_text())
    assert written["images"][0]["methods"]["occlusion"]["pointing_game"] == 1
    assert "relevance_rank_accuracy" in run.summary() and "higher" in run.summary()


def test_the_relevance_setting_reaches_the_localisation_metrics(small_model_path, monkeypatch):
    """A map whose largest magnitude is negative and at the center: a hit by |a|, a miss by its positive part."""
    attribution = np.full((SIDE, SIDE), 0.1, np.float32)
    attribution[7, 7] = -5.0
    replace_method(monkeypatch, "grad", lambda model, image, target, params: attribution)
    image = np.random.default_rng(1).random((SIDE, SIDE, 1))
    found = {relevance: heatkit.explain(str(small_model_path), image, ["grad"], progress=False,
                                        settings={"localisation.relevance": relevance}).scores["grad"]["pointing_game"]
             for relevance in ("positive", "absolute")}
    assert found == {"positive": 0.0, "absolute": 1.0}


def test_a_model_without_ground_truth_gets_the_map_metrics_and_a_mask_file_brings_the_rest(gap_model_path, tmp_path):
    image = np.random.default_rng(2).random((12, 12, 3))
    run = heatkit.explain(str(gap_model_path), image, ["grad"], progress=False)
    assert "sparseness" in run.scores["grad"] and "pointing_game" not in run.scores["grad"]
    mask = np.zeros((6, 6), np.uint8)
    mask[:3, :3] = 255  # the top-left quarter, at half the map's size
    Image.fromarray(mask).save(tmp_path / "mask.png")
    run = heatkit.explain(str(gap_model_path), image, ["grad"],
                          settings={"localisation.mask": str(tmp_path / "mask.png")},
                          progress=False)
    quarter = np.zeros(run.maps["grad"].shape, bool)
    quarter[:6, :6] = True
    expected = score(run.maps["grad"], quarter, run.settings)
    assert set(expected) == {m.key for m in COMPUTED if m.reads in (Reads.MAP, Reads.MASK)}
    assert {k: run.scores["grad"][k] for k in expected} == expected


def test_a_mask_folder_gives_each_dataset_image_its_own_mask(gap_model_path, tmp_path):
    """Masks at the images' relative paths (any image type): each row is scored against its image's
    own mask; an image without one gets no localisation scores."""
    from heatkit.pipeline.datasets.store import Store

    rng = np.random.default_rng(6)
    masks = {}
    for relative in ("cat/a.png", "cat/b.png", "dog/c.png"):
        for root in ("images", "masks"):
            (tmp_path / root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).save(tmp_path / "images" / relative)
        if relative != "dog/c.png":
            masks[relative] = rng.random((12, 12)) > 0.7
            Image.fromarray(masks[relative].astype(np.uint8) * 255).save(
                (tmp_path / "masks" / relative).with_suffix(".bmp"))
    found = heatkit.explain_dataset(gap_model_path, str(tmp_path / "images"), ["grad"], workers=0, out=tmp_path,
                                    progress=False, settings={"backend": "torch",
                                                              "localisation.mask": str(tmp_path / "masks")})
    for row in found.rows:
        relative = Path(row["image"]).relative_to(tmp_path / "images").as_posix()
        attribution = Store(found.folder).read(row["key"])[0]["grad"]
        if relative in masks:
            expected = score(attribution, masks[relative], heatkit.settings())
            assert row["relevance_mass_accuracy"] == pytest.approx(expected["relevance_mass_accuracy"])
            assert row["pointing_game"] == expected["pointing_game"]
        else:
            assert row["relevance_mass_accuracy"] is None and row["sparseness"] is not None


def test_a_bad_mask_is_one_line_and_exit_2(small_model_path, tmp_path, capsys):
    (tmp_path / "mask.png").write_text("not an image")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "empty.png")
    for mask, said in (("mask.png", "cannot read the mask"), ("empty.png", "is empty")):
        with pytest.raises(UsageError, match=said):
            localisation.mask_from({"relevance": "positive", "mask": str(tmp_path / mask)}, (SIDE, SIDE), None)
        assert run_cli("-mp", str(small_model_path), "-hm", "grad", "--set", f"localisation.mask={tmp_path / mask}",
                       "-op", str(tmp_path / "out")) == 2
        assert said in capsys.readouterr().err and not list((tmp_path / "out").rglob("*"))  # no run folder


def test_faithfulness_correlation_equals_quantus_given_the_same_subsets(monkeypatch):
    """A PyTorch CNN built here, its Gradient map, our seeded subsets replayed into Quantus's draws."""
    import quantus
    import torch

    from heatkit.metrics import faithfulness

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 13 * 13, 4)).eval()
    image = np.random.default_rng(3).random((SIDE, SIDE, 1)).astype(np.float32)
    params = {"runs": 30, "subset": 20, "baseline": "black", "seed": 5}
    run = heatkit.explain(net, image, ["grad"], progress=False, settings={
        "input_size": [SIDE, SIDE], "faithfulness.curves": True, "faithfulness.random_draws": 0,
        **{f"faithfulness_correlation.{key}": value for key, value in params.items()}})
    draws = iter(faithfulness.subsets(params, SIDE * SIDE))
    monkeypatch.setattr(np.random, "choice", lambda *args, **kwargs: next(draws))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = quantus.FaithfulnessCorrelation(nr_runs=30, subset_size=20, disable_warnings=True)(
            model=net, x_batch=image.transpose(2, 0, 1)[None], y_batch=np.array([run.result.target]),
            a_batch=run.maps["grad"][None, None], channel_first=True, softmax=True, device="cpu")
    assert run.scores["grad"]["faithfulness_correlation"] == pytest.approx(expected[0], abs=1e-6)
    assert abs(expected[0]) > 0.1  # a correlation, not a constant


def test_faithfulness_correlation_knows_a_map_that_is_the_drop(small_model_path):
    """On the center-pixel model a subset's drop is all in the center pixel: a map that is 1 there and
    0 elsewhere correlates with the drops exactly (+1), its negative at -1."""
    from heatkit.metrics import faithfulness
    from heatkit.model import Model

    model = Model(small_model_path)
    image = np.random.default_rng(4).random((SIDE, SIDE, 1))
    image[7, 7, 0] = 0.8  # above the baseline (the image's smallest value): removing it drops the class
    target = int(model.probabilities(image[None])[0].argmax())
    one_hot = np.zeros((SIDE, SIDE))
    one_hot[7, 7] = 1.0
    params = {"runs": 40, "subset": 50, "baseline": "black", "seed": 0}
    assert faithfulness.correlation(model, image, target, one_hot, params) == pytest.approx(1.0, abs=1e-9)
    assert faithfulness.correlation(model, image, target, -one_hot, params) == pytest.approx(-1.0, abs=1e-9)
    assert faithfulness.correlation(model, image, target, np.ones((SIDE, SIDE)), params) is None  # constant sums


def test_max_and_avg_sensitivity_equal_quantus_given_the_same_noise(monkeypatch):
    """A PyTorch CNN built here, its Gradient map recomputed (as one batch) on our seeded noisy copies;
    Quantus's, with its explain_func an autograd gradient, fed the same noise."""
    import quantus

    from heatkit.metrics import robustness

    net = small_cnn(seed=1)
    image = np.random.default_rng(5).random((SIDE, SIDE, 1)).astype(np.float32)
    params = {"samples": 6, "radius": 0.3, "seed": 2}
    run = heatkit.explain(net, image, ["grad"], progress=False, settings={
        "input_size": [SIDE, SIDE], **{f"sensitivity.{key}": value for key, value in params.items()}})

    found = {}
    for key, name in (("max_sensitivity", "MaxSensitivity"), ("avg_sensitivity", "AvgSensitivity")):
        noise = iter([(copy - image).reshape(1, -1) for copy in robustness.noisy_copies(image, params)])
        monkeypatch.setattr(np.random, "uniform", lambda *args, **kwargs: next(noise))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found[key] = getattr(quantus, name)(nr_samples=6, lower_bound=0.3, disable_warnings=True)(
                model=net, x_batch=image.transpose(2, 0, 1)[None], y_batch=np.array([run.result.target]),
                a_batch=run.maps["grad"][None, None], explain_func=autograd_gradient, channel_first=True, device="cpu")[0]
        assert run.scores["grad"][key] == pytest.approx(found[key], rel=1e-5)
    assert found["max_sensitivity"] > found["avg_sensitivity"] > 0  # the ReLUs switch: the gradient moves


def test_sensitivity_recomputes_each_copy_once_and_is_off_by_default(small_model_path, monkeypatch):
    from heatkit.metrics import robustness

    calls = []
    replace_method(monkeypatch, "grad", lambda model, image, target, params:
                   calls.append(1) or np.float32(2) * image[..., 0].astype(np.float32))
    image = np.random.default_rng(1).random((SIDE, SIDE, 1))
    run = heatkit.explain(str(small_model_path), image, ["grad"], progress=False)
    assert len(calls) == 1 and run.scores["grad"]["max_sensitivity"] is None
    run = heatkit.explain(str(small_model_path), image, ["grad"], progress=False,
                          settings={"sensitivity.samples": 4, "sensitivity.radius": 0.1})
    assert len(calls) == 1 + 1 + 4  # the map, then the four copies shared by both metrics
    # the map is 2x: each copy moves it by 2 * noise, so the ratio is ||noise|| / ||image||
    noise = [np.linalg.norm(copy - image) / np.linalg.norm(image)
             for copy in robustness.noisy_copies(image, {"samples": 4, "radius": 0.1, "seed": 0})]
    assert run.scores["grad"]["max_sensitivity"] == pytest.approx(max(noise), rel=1e-6)
    assert run.scores["grad"]["avg_sensitivity"] == pytest.approx(np.mean(noise), rel=1e-6)


def test_local_lipschitz_estimate_equals_quantus_on_the_papers_raw_maps(monkeypatch):
    """Quantus with normalise=False (the paper compares the maps as they are), fed our Gaussian noise."""
    import quantus

    from heatkit.metrics import robustness

    net = small_cnn(seed=2)
    image = np.random.default_rng(6).random((SIDE, SIDE, 1)).astype(np.float32)
    params = {"samples": 5, "std": 0.2, "seed": 3}
    run = heatkit.explain(net, image, ["grad"], progress=False, settings={
        "input_size": [SIDE, SIDE], **{f"lipschitz.{key}": value for key, value in params.items()}})

    noise = iter([(copy - image).reshape(1, -1) for copy in robustness.gaussian_copies(image, params)])
    monkeypatch.setattr(np.random, "normal", lambda *args, **kwargs: next(noise))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = quantus.LocalLipschitzEstimate(nr_samples=5, perturb_std=0.2, normalise=False,
                                                  disable_warnings=True)(
            model=net, x_batch=image.transpose(2, 0, 1)[None], y_batch=np.array([run.result.target]),
            a_batch=run.maps["grad"][None, None], explain_func=autograd_gradient, channel_first=True, device="cpu")[0]
    assert run.scores["grad"]["local_lipschitz_estimate"] == pytest.approx(expected, rel=1e-5) and expected > 0


def test_random_logit_is_the_ssim_of_the_maps_of_two_classes(small_model_path, gap_model_path):
    """The center-pixel model's logit gradients differ between classes only at the center: Random
    Logit calls Gradient nearly class-blind. Its occlusion map of a far class is all zero (that
    class's probability is 0 to float64), so the score is undefined. On an untrained 3-class CNN
    both are the SSIM of the two classes' maps."""
    from heatkit.base.similarity import ssim
    from heatkit.metrics.randomisation import other_class

    settings = {"random_logit.enabled": True, "random_logit.seed": 4, "occlusion.patch": 2}
    for path, image in ((small_model_path, np.random.default_rng(3).random((SIDE, SIDE, 1))),
                        (gap_model_path, np.random.default_rng(3).random((12, 12, 3)))):
        run = heatkit.explain(str(path), image, ["grad", "occlusion"], progress=False, settings=settings)
        other = other_class(run.result.target, run.model.num_classes, 4)
        assert other != run.result.target
        again = heatkit.explain(str(path), image, ["grad", "occlusion"], target=other, progress=False,
                                settings=settings)
        assert run.scores["grad"]["random_logit"] == pytest.approx(ssim(run.maps["grad"], again.maps["grad"]))
        if path == small_model_path:
            assert run.scores["grad"]["random_logit"] > 0.99 and np.ptp(again.maps["occlusion"]) == 0
            assert run.scores["occlusion"]["random_logit"] is None
        else:
            assert run.scores["occlusion"]["random_logit"] == pytest.approx(
                ssim(run.maps["occlusion"], again.maps["occlusion"]))
    assert heatkit.explain(str(gap_model_path), image, ["grad"],
                           progress=False).scores["grad"]["random_logit"] is None  # off by default


def test_mprt_equals_quantus_given_the_same_seeds_and_is_the_sanity_checks_last_step(monkeypatch):
    """--sanity cascading re-initializes a CNN built here from the output down, layer k seeded with
    seed + k; Quantus's MPRT (top down, its last correlation, Spearman of |a|) replayed with the same
    seeds finds the same score, which is the sanity table's spearman_abs at the last step."""
    import quantus
    import torch

    net = small_cnn(seed=1)
    image = np.random.default_rng(5).random((SIDE, SIDE, 1)).astype(np.float32)
    found = heatkit.sanity(net, image, ["grad", "ig"], progress=False,
                           settings={"input_size": [SIDE, SIDE], "sanity.seed": 3})
    last = {row["method"]: row["spearman_abs"] for row in found.rows if row["step"] == 2}
    assert found.scores["grad"]["mprt"] == pytest.approx(last["grad"]) and found.scores.keys() == last.keys()

    target, original = found.results[0].target, found.results[0].maps["grad"]
    seeds, seed_with = iter([3, 4]), torch.manual_seed  # Quantus seeds every layer with seed + 1
    monkeypatch.setattr(torch, "manual_seed", lambda seed: seed_with(next(seeds)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = quantus.MPRT(layer_order="top_down", return_last_correlation=True, disable_warnings=True)(
            model=net, x_batch=image.transpose(2, 0, 1)[None], y_batch=np.array([target]),
            a_batch=original[None, None], explain_func=autograd_gradient, channel_first=True, device="cpu")[0]
    assert found.scores["grad"]["mprt"] == pytest.approx(expected, abs=1e-6) and abs(expected) < 0.9


def test_mprt_scores_a_map_the_weights_do_not_set_as_alike(small_model_path):
    """On the center-pixel model, with every layer re-initialized, Gradient's map is a new weight
    column (MPRT near 0) while a map of the input alone would score 1: the similarity is SSIM here."""
    found = heatkit.sanity(str(small_model_path), np.random.default_rng(2).random((SIDE, SIDE, 1)), ["grad"],
                           progress=False, settings={"mprt.similarity": "ssim"})
    steps = max(row["step"] for row in found.rows)
    last = next(row for row in found.rows if row["step"] == steps and row["method"] == "grad")
    assert found.scores["grad"]["mprt"] == pytest.approx(last["ssim"]) and abs(last["ssim"]) < 0.5
    original = found.results[0].maps["grad"]
    assert randomisation.mprt(original, original.copy(), {"similarity": "ssim"}) == pytest.approx(1)


def test_quantus_random_logit_is_ssim_of_flattened_rescaled_maps(monkeypatch):
    """Quantus's Random Logit, its class drawn as ours, equals skimage's SSIM of the two maps each
    divided by its largest |value| and flattened to one row (not the paper's 2-D SSIM)."""
    import quantus
    import torch
    from skimage.metrics import structural_similarity

    from heatkit.metrics.randomisation import other_class

    net = small_cnn(seed=3, classes=5)
    image = np.random.default_rng(8).random((1, 1, SIDE, SIDE)).astype(np.float32)

    target = int(net(torch.tensor(image)).argmax())
    other = other_class(target, 5, 0)
    monkeypatch.setattr(np.random, "randint", lambda *args, **kwargs: np.array([other - (other > target)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = quantus.RandomLogit(num_classes=5, disable_warnings=True)(
            model=net, x_batch=image, y_batch=np.array([target]), a_batch=autograd_gradient(net, image, [target]),
            explain_func=autograd_gradient, channel_first=True, device="cpu")[0]
    a, b = (autograd_gradient(net, image, [c]).ravel() for c in (target, other))
    a, b = a / np.abs(a).max(), b / np.abs(b).max()
    joint = np.concatenate([a, b])
    assert found == pytest.approx(structural_similarity(a, b, data_range=float(joint.max() - joint.min())), rel=1e-5)


def test_integrated_gradients_is_complete_and_gradient_is_not(linear_model_path):
    """On the center-pixel construction without its ReLU the logits are affine, so IG from a zero
    reference, and Input x Gradient, sum exactly to the logit's change: a gap of 0 to rounding."""
    image = np.random.default_rng(5).random((SIDE, SIDE, 1))
    run = heatkit.explain(str(linear_model_path), image, ["ig", "inpgrad", "grad"], progress=False,
                          settings={"faithfulness.curves": True, "faithfulness.random_draws": 0})
    assert run.scores["ig"]["completeness"] < 1e-6 and run.scores["inpgrad"]["completeness"] < 1e-6
    assert run.scores["grad"]["completeness"] > 0.01


def test_completeness_against_quantus_which_asks_for_float_equality():
    """Quantus (normalise=False) says True only of a map whose sum equals the logit's change exactly
    (float equality): of a map 1e-3 off it says False, where ours gives the gap, 1e-3."""
    import quantus
    import torch

    from heatkit.metrics import axiomatic

    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, 3)).eval()
    image = np.random.default_rng(9).random((SIDE, SIDE, 1)).astype(np.float32)
    model = heatkit.load_model(net, settings={"input_size": [SIDE, SIDE]})
    with torch.no_grad():  # one input at a time, as Quantus runs them
        image_logit, baseline_logit = (net(torch.tensor(x.transpose(2, 0, 1)[None]))[0, 1].numpy()
                                       for x in (image, np.full_like(image, image.min())))
    change = float(image_logit - baseline_logit)
    exact = np.zeros((SIDE, SIDE))
    exact[0, 0] = change
    off = exact * (1 + 1e-3)
    params = {"baseline": "black"}
    assert axiomatic.completeness(model, image, 1, exact, params) < 1e-4  # float32 logits, a change of 3e-3
    assert axiomatic.completeness(model, image, 1, off, params) == pytest.approx(1e-3, rel=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for attribution, expected in ((exact, True), (off, False)):
            found = quantus.Completeness(normalise=False, disable_warnings=True)(
                model=net, x_batch=image.transpose(2, 0, 1)[None], y_batch=np.array([1]),
                a_batch=attribution[None, None], channel_first=True, device="cpu")
            assert bool(found[0]) is expected


def test_non_sensitivity_knows_the_center_pixel_model(small_model_path):
    """Only the center changes the center-pixel model's probability. Occlusion attributes only it
    (no violation); Gradient attributes every pixel (every other pixel is a violation). It costs an
    evaluation a pixel, so it waits for non_sensitivity.enabled."""
    image = np.random.default_rng(2).random((SIDE, SIDE, 1))
    settings = {"occlusion.patch": 1, "faithfulness.curves": True, "faithfulness.random_draws": 0}
    run = heatkit.explain(str(small_model_path), image, ["grad", "occlusion"], progress=False,
                          settings={**settings, "non_sensitivity.enabled": True})
    assert run.scores["occlusion"]["non_sensitivity"] == 0
    assert run.scores["grad"]["non_sensitivity"] == SIDE * SIDE - 1
    off = heatkit.explain(str(small_model_path), image, ["grad"], progress=False, settings=settings)
    assert off.scores["grad"]["non_sensitivity"] is None


def test_non_sensitivity_equals_quantus_on_probabilities():
    """A PyTorch CNN built here that looks at the left half of its input alone: the right half
    changes nothing and its gradient is 0 there; the counts equal Quantus's with softmax=True."""
    import quantus
    import torch

    from heatkit.metrics import axiomatic

    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 3)).eval()
    with torch.no_grad():
        net[1].weight.view(8, SIDE, SIDE)[:, :, SIDE // 2:] = 0
    image = np.random.default_rng(4).random((SIDE, SIDE, 1)).astype(np.float32)
    run = heatkit.explain(net, image, ["grad", "occlusion"], progress=False,
                          settings={"input_size": [SIDE, SIDE], "occlusion.patch": 1})
    params = {"enabled": True, "baseline": "black", "eps": 1e-5}
    for key in ("grad", "occlusion"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = quantus.NonSensitivity(disable_warnings=True)(
                model=net, x_batch=image.transpose(2, 0, 1)[None], y_batch=np.array([run.result.target]),
                a_batch=run.maps[key][None, None], channel_first=True, softmax=True, device="cpu")[0]
        assert axiomatic.non_sensitivity(run.model, image, run.result.target, run.maps[key], params) == expected


def test_monotonicity_equals_quantus_given_the_same_values(monkeypatch):
    """Quantus's MonotonicityCorrelation (softmax=True) on a PyTorch network built here, each pixel's
    uniform values replayed in the order Quantus visits the pixels (ascending |a|)."""
    import quantus
    import torch

    from heatkit.metrics import faithfulness

    torch.manual_seed(6)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, 6), torch.nn.Tanh(),
                              torch.nn.Linear(6, 3)).eval()
    image = np.random.default_rng(7).random((SIDE, SIDE, 1)).astype(np.float32)
    params = {"samples": 4, "seed": 1}
    run = heatkit.explain(net, image, ["grad"], progress=False, settings={
        "input_size": [SIDE, SIDE], "faithfulness.curves": True, "faithfulness.random_draws": 0,
        **{f"monotonicity.{key}": value for key, value in params.items()}})
    attribution = run.maps["grad"]
    values = faithfulness.pixel_values(params, SIDE * SIDE)
    visited = np.argsort(np.abs(attribution / np.abs(attribution).max()).reshape(1, -1), axis=1)[0]
    draws = iter([np.array([value]) for pixel in visited for value in values[pixel]])
    original = np.random.uniform
    monkeypatch.setattr(np.random, "uniform", lambda *args, **kwargs: next(draws) if kwargs.get("size") == 1
                        else original(*args, **kwargs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = quantus.MonotonicityCorrelation(nr_samples=4, disable_warnings=True)(
            model=net, x_batch=image.transpose(2, 0, 1)[None], y_batch=np.array([run.result.target]),
            a_batch=attribution[None, None], channel_first=True, softmax=True, device="cpu")[0]
    assert run.scores["grad"]["monotonicity"] == pytest.approx(expected, abs=1e-6) and abs(expected) > 0.1


def test_monotonicity_knows_the_center_pixel_model(small_model_path):
    """Only the center changes the probability, so only its variance is above 0: a map largest at the
    center, and tied below (occlusion), correlates positively; its negative's |a| is the same."""
    image = np.random.default_rng(2).random((SIDE, SIDE, 1))
    run = heatkit.explain(str(small_model_path), image, ["occlusion", "grad"], progress=False,
                          settings={"occlusion.patch": 1, "faithfulness.curves": True, "faithfulness.random_draws": 0,
                                    "monotonicity.samples": 3})
    assert run.scores["occlusion"]["monotonicity"] > run.scores["grad"]["monotonicity"]
    assert heatkit.explain(str(small_model_path), image, ["grad"], progress=False, settings={
        "faithfulness.curves": True, "faithfulness.random_draws": 0}).scores["grad"]["monotonicity"] is None


def test_road_equals_quantus_without_noise_and_imputes_a_linear_image_exactly():
    """Noisy linear imputation fills a removed pixel with the weighted mean of its neighbours: on an
    image that is a plane it puts back removed values away from its edges exactly (neighbouring
    ones too, solved together). ROAD's mean over the percentages
    equals the mean of Quantus's curve (noise 0, a map without ties), on a PyTorch network built here."""
    import quantus
    import torch

    from heatkit.metrics import road

    rows, cols = np.mgrid[:SIDE, :SIDE]
    plane = (0.02 * rows + 0.03 * cols + 0.1)[..., None]
    removed = np.array([17, 18, 33, 112, 113, 128])
    filled = road.impute(plane, removed, np.zeros((len(removed), 1)))
    np.testing.assert_allclose(filled, plane, atol=1e-12)

    torch.manual_seed(7)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 3)).eval()
    image = np.random.default_rng(8).random((SIDE, SIDE, 1)).astype(np.float32)
    percentages = [5, 20, 40, 60, 80, 95]
    run = heatkit.explain(net, image, ["grad"], progress=False, settings={
        "input_size": [SIDE, SIDE], "faithfulness.curves": True, "faithfulness.random_draws": 0,
        "road.percentages": percentages, "road.noise": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curve = quantus.ROAD(percentages=percentages, noise=0.0, disable_warnings=True)(
            model=net, x_batch=image.transpose(2, 0, 1)[None], y_batch=np.array([run.result.target]),
            a_batch=run.maps["grad"][None, None], channel_first=True, device="cpu")  # percentage -> accuracy
    found = run.scores["grad"]["road"]
    assert list(curve) == percentages and found == pytest.approx(np.mean(list(curve.values()))) and 0 < found < 1


def test_sufficiency_equals_quantus_and_leaves_out_pixels_that_never_vary():
    """Six seeded maps and a PyTorch network built here that predicts their images: equal to
    Quantus's Sufficiency; with a pixel that is 0 in every map added, Quantus divides by its variance
    of 0 and finds no map alike (0 everywhere), ours leaves the pixel out and is unchanged."""
    import quantus
    import torch

    from heatkit.metrics.sufficiency import sufficiency

    torch.manual_seed(8)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, 3)).eval()
    rng = np.random.default_rng(10)
    images = rng.random((6, 1, SIDE, SIDE)).astype(np.float32)
    maps = rng.normal(size=(6, SIDE, SIDE)) * np.array([1, 1, 1, 5, 5, 5])[:, None, None]
    predicted = net(torch.tensor(images)).argmax(1).numpy()
    params = {"threshold": 0.6}

    def quantus_sufficiency(attributions):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantus.Sufficiency(disable_warnings=True)(
                model=net, x_batch=images, y_batch=predicted, a_batch=attributions[:, None], channel_first=True,
                device="cpu")

    ours = sufficiency(list(maps), predicted, params)
    assert ours == pytest.approx(quantus_sufficiency(maps)) and len(set(ours)) > 1
    with_constant = maps.copy()
    with_constant[:, 0, 0] = 0.0
    assert sufficiency(list(with_constant), predicted, params) == pytest.approx(
        sufficiency(list(maps[:, :, :].reshape(6, -1)[:, 1:]), predicted, params))
    assert quantus_sufficiency(with_constant) == [0.0] * 6


def test_a_run_of_several_images_grades_them_together(small_model_path):
    images = [np.random.default_rng(seed).random((SIDE, SIDE, 1)) for seed in range(3)]
    run = heatkit.explain(str(small_model_path), images, ["grad", "occlusion"], progress=False)
    for key in ("grad", "occlusion"):
        maps = [item.results[0].maps[key] for item in run.items]
        predicted = np.array([item.results[0].predicted for item in run.items])
        expected = REGISTRY["sufficiency"].function(maps, predicted, run.settings["sufficiency"])
        assert [item.results[0].scores()[key]["sufficiency"] for item in run.items] == expected
    one = heatkit.explain(str(small_model_path), images[0], ["grad"], progress=False)
    assert "sufficiency" not in one.scores["grad"]
