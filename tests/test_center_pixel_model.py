"""The center-pixel model is a measuring instrument: its known answers, checked on the built files."""
import json

import numpy as np
import pytest

import create_model
from conftest import SMALL, dense_weights
from heatkit.base.data import center_pixel_images
from heatkit.model import Model
from heatkit.testmodels.center_pixel import build_weights
from heatkit.testmodels.verify import center_pixel_checks


def test_small_twin_passes_every_check(small_model):
    checks = center_pixel_checks(small_model.keras, small_model.torch, 256, alpha=10.0, per_class=10, seed=1)
    assert [c.name for c in checks if not c.passed] == []
    card = json.loads(small_model.path.with_suffix(".json").read_text())
    assert card["ground_truth"] == "center_pixel" and card["input_shape"] == [SMALL, SMALL, 1]


def test_probabilities_depend_on_the_center_alone_but_logits_on_every_pixel(small_model, rng):
    images = center_pixel_images(8, SMALL, 256, seed=5)
    edited = images.copy()
    edited[:, :SMALL // 2] = rng.integers(0, 256, edited[:, :SMALL // 2].shape) / 255  # rows above the center
    for net in (small_model.keras, small_model.torch):
        assert np.abs(net.probabilities(edited) - net.probabilities(images)).max() <= 1e-9
        assert np.abs(net.logits(edited) - net.logits(images)).min() > 1.0


def test_predicted_class_is_the_center_gray_level(small_model):
    centers = np.arange(0, 256, 17)
    images = center_pixel_images(centers.size, SMALL, 256, seed=9, centers=centers)
    assert small_model.probabilities(images).argmax(1).tolist() == centers.tolist()
    assert [small_model.true_label(image) for image in images] == centers.tolist()


def test_relu_never_clips(small_model, rng):
    kernel, bias = dense_weights(small_model)
    worst = np.minimum(kernel, 0).sum(0) + bias  # every pixel at the value that lowers the logit most
    assert worst.min() > 0


def test_same_settings_give_identical_weights():
    first = build_weights(SMALL, 256, 10.0, True, weight_seed=0, noise_weight_scale=1.0)
    again = build_weights(SMALL, 256, 10.0, True, weight_seed=0, noise_weight_scale=1.0)
    other = build_weights(SMALL, 256, 10.0, True, weight_seed=1, noise_weight_scale=1.0)
    assert np.array_equal(first.kernel, again.kernel) and np.array_equal(first.bias, again.bias)
    assert not np.array_equal(first.kernel, other.kernel)


def test_saved_files_hold_the_built_weights(small_model):
    weights = build_weights(SMALL, 256, 10.0, True, weight_seed=0, noise_weight_scale=1.0)
    kernel, bias = dense_weights(small_model)
    assert np.array_equal(kernel, weights.kernel) and np.array_equal(bias, weights.bias)
    linear = small_model.torch.module[1]  # Flatten, Dense (, ReLU)
    assert np.array_equal(linear.weight.detach().numpy().T, weights.kernel)


def test_linear_variant_passes_too(linear_model):
    checks = center_pixel_checks(linear_model.keras, linear_model.torch, 256, alpha=10.0, per_class=2, seed=1)
    assert all(c.passed for c in checks)


def test_failed_verification_saves_nothing(tmp_path, capsys, monkeypatch):
    """A twin that lost its center weights fails the checks on any CPU, and nothing is saved."""
    from heatkit.model import twins

    make_twin = twins.twin_of

    def without_center(keras_model):
        twin, arguments = make_twin(keras_model)
        dense = twin[1]
        dense.weight.data[:, dense.in_features // 2] = 0.0
        return twin, arguments

    monkeypatch.setattr(twins, "twin_of", without_center)
    assert create_model.main(["--image-size", "5", "--out", str(tmp_path)]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("FAIL")]
    assert any("PyTorch top-1" in line for line in failed) and any("agree" in line for line in failed)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["--image-size", "4"], ["--set", "center_pixel.alpha=-1"]])
def test_bad_arguments_exit_2(tmp_path, argv, capsys):
    assert create_model.main([*argv, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_full_size_model_passes_every_check(full_model_path):
    """The one 227 x 227 build: 2,560 images per twin, every check of the core issue, by its value."""
    checks = json.loads(full_model_path.with_suffix(".json").read_text())["verification"]
    assert checks.pop("Keras top-1 = center value") == checks.pop("PyTorch top-1 = center value") == 1.0
    assert checks.pop("lowest top-1 probability") >= 0.999
    for name in ("probabilities = softmax(-alpha (j - p)^2)", "Keras and PyTorch probabilities agree",
                 "Keras: non-center pixels leave probabilities unchanged",
                 "PyTorch: non-center pixels leave probabilities unchanged"):
        assert 0 <= checks.pop(name) <= 1e-9, name
    assert checks == {}
    assert Model(full_model_path).input_shape == (227, 227, 1)


def test_the_region_model_depends_on_its_square_alone(tmp_path, rng):
    """create_model.py --model region: the class is the mean level of a 3 x 3 square a quarter of the
    way in, whatever the other pixels, while every logit moves with them; the card names the square."""
    from heatkit.base import data

    assert create_model.main(["--model", "region", "--image-size", "13", "--set", "center_pixel.region_side=3",
                              "--out", str(tmp_path)]) == 0
    model = Model(tmp_path / "region.h5")
    assert model.ground_truth == data.region_ground_truth(2, 2, 3)  # 13 // 4 - 3 // 2
    levels = np.array([0, 40, 99, 255])
    images = center_pixel_images(4, 13, 256, seed=2, centers=levels, ground_truth=model.ground_truth)
    images[:, 2:5, 2:5, 0] += np.array([-1, 0, 1])[None, :, None] / 255 * (levels[:, None, None] % 255 > 0)
    mask = data.ground_truth_mask(model.ground_truth, (13, 13))
    outside = images.copy()
    outside[:, ~mask] = rng.random((4, int((~mask).sum()), 1))
    for net in (model.keras, model.torch):
        assert net.probabilities(images).argmax(1).tolist() == levels.tolist()  # the mean, not any one pixel
        assert np.abs(net.probabilities(outside) - net.probabilities(images)).max() <= 1e-9
        assert np.abs(net.logits(outside) - net.logits(images)).min() > 1.0
    assert [model.true_label(image) for image in images] == levels.tolist()


def test_a_region_that_does_not_fit_is_one_line(tmp_path, capsys):
    assert create_model.main(["--model", "region", "--image-size", "9", "--set", "center_pixel.region_side=5",
                              "--out", str(tmp_path)]) == 2
    assert "region_side=5 does not fit" in capsys.readouterr().err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["and", "xor"])
def test_the_two_pixel_models_depend_on_their_two_pixels_alone(kind, tmp_path, rng):
    """create_model.py --model two_pixels_and / _xor: verified at build (the closed-form Shapley
    values among the checks); the class is the rule's on pixels A and B, every logit moves with the
    other pixels while the probabilities do not."""
    from heatkit.base import data
    from heatkit.testmodels.two_pixels import decides, pixels

    assert create_model.main(["--model", f"two_pixels_{kind}", "--image-size", "13", "--out", str(tmp_path)]) == 0
    model = Model(tmp_path / f"two_pixels_{kind}.h5")
    (row_a, col_a), (row_b, col_b) = pixels(13)
    assert model.ground_truth == data.two_pixels_ground_truth(kind, (row_a, col_a), (row_b, col_b))
    images = data.center_pixel_images(6, 13, 2, seed=3, centers=np.array([0, 1, 0, 1, 1, 0]),
                                      ground_truth=model.ground_truth)
    mask = data.ground_truth_mask(model.ground_truth, (13, 13))
    outside = images.copy()
    outside[:, ~mask] = rng.random((6, int((~mask).sum()), 1))
    expected = decides(kind, images[:, row_a, col_a, 0], images[:, row_b, col_b, 0]).tolist()
    assert expected == [0, 1, 0, 1, 1, 0] == [model.true_label(image) for image in images]
    for net in (model.keras, model.torch):
        assert net.probabilities(images).argmax(1).tolist() == expected
        assert np.abs(net.probabilities(outside) - net.probabilities(images)).max() <= 1e-9
        assert np.abs(net.logits(outside) - net.logits(images)).min() > 0.01


def test_shapley_values_of_two_players_in_closed_form():
    """AND at (1, 1) from a baseline of 0: the two pixels are symmetric, so each gets half of the
    change; XOR at (1, 0): A alone makes the class, B alone does nothing but spoil it."""
    from heatkit.testmodels.two_pixels import shapley_values

    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    a, b = shapley_values("and", 40.0, 1.0, 1.0, 0.0, 1)
    assert a == pytest.approx(b) and a + b == pytest.approx(sigmoid(20) - sigmoid(-20))
    a, b = shapley_values("xor", 40.0, 1.0, 0.0, 0.0, 1)
    assert a == pytest.approx(sigmoid(20) - sigmoid(-20)) and b == pytest.approx(0.0)
