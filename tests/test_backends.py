"""DeepLIFT, Meaningful Perturbation, and the gradient family on both twins."""

import numpy as np
import pytest

from conftest import SMALL, default_params, run_cli, image_maps, image_scores
from heatkit.base.contract import WithExtras
from heatkit.base.data import center_pixel_images
from heatkit.methods import deeplift, meaningful_perturbation
from heatkit.methods.registry import REGISTRY, Needs, comparable, expand
from heatkit.model import Model
from heatkit.base.similarity import agreement

MP = {"mask_size": 5, "blur_sigma": 3.0, "l1_coeff": 0.01, "tv_coeff": 0.2, "tv_beta": 3.0, "learning_rate": 0.1,
      "iterations": 60, "optimizer": "adam", "mask_init": "ones", "noise": 0.0, "seed": 0}


def image_and_class(model, seed=3):
    image = center_pixel_images(1, SMALL, 256, seed)[0]
    return image, int(model.probabilities(image[None])[0].argmax())


@pytest.mark.parametrize("key", [k for k in comparable() if REGISTRY[k].needs is Needs.GRADIENTS])
def test_twins_agree_on_every_deterministic_method(small_model, key):
    """Keras (innvestigate) and the PyTorch twin (captum) give the same map to 1e-6 of its maximum."""
    method = REGISTRY[key]
    image, target = image_and_class(small_model)
    params = default_params(method)
    keras, torch = (method.function(b)(small_model, image, target, params) for b in ("keras", "torch"))
    assert agreement(keras, torch)["max_abs_diff_relative"] <= 1e-6



@pytest.mark.parametrize("backend", ["keras", "torch"])
@pytest.mark.parametrize("baseline", [0.0, 0.3])
def test_deeplift_sums_to_the_logit_difference(small_model, backend, baseline):
    image, target = image_and_class(small_model)
    attribution = deeplift.METHOD.function(backend)(small_model, image, target, {"baseline": baseline})
    logits = small_model.logits(np.stack([image, np.full_like(image, baseline)]))[:, target]
    assert attribution.astype(np.float64).sum() == pytest.approx(logits[0] - logits[1], rel=1e-6)


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_deeplift_of_a_linear_model_is_x_minus_baseline_times_w(linear_model, backend):
    image, target = image_and_class(linear_model)
    kernel = linear_model.keras.weights("dense")[0]
    expected = ((image.reshape(-1) - 0.2) * kernel[:, target]).reshape(SMALL, SMALL)
    np.testing.assert_allclose(deeplift.METHOD.function(backend)(linear_model, image, target, {"baseline": 0.2}),
                               expected, rtol=1e-6)


def test_keras_deeplift_sums_to_the_logit_difference_where_relus_clip(mlp_path):
    """The MLP's hidden ReLUs clip between the image and the baseline, so the secants matter."""
    model = Model(mlp_path)
    image = center_pixel_images(1, SMALL, 256, seed=4)[0]
    kernel, bias = model.keras.weights(model.keras.model.layers[2].name)
    z, z0 = image.reshape(-1) @ kernel + bias, np.full(SMALL * SMALL, 0.5) @ kernel + bias
    assert ((z > 0) != (z0 > 0)).any()  # some unit is on for one input and off for the other
    for target in range(3):
        attribution = deeplift.on_keras(model, image, target, {"baseline": 0.5})
        logits = model.logits(np.stack([image, np.full_like(image, 0.5)]))[:, target]
        assert attribution.astype(np.float64).sum() == pytest.approx(logits[0] - logits[1], rel=1e-6)


@pytest.fixture(scope="module")
def mp_runs(small_model):
    image, target = image_and_class(small_model)
    seeded = {**MP, "mask_init": "random", "noise": 0.01}
    return (image, target, meaningful_perturbation.attribute(small_model, image, target, MP),
            meaningful_perturbation.attribute(small_model, image, target, seeded),
            meaningful_perturbation.attribute(small_model, image, target, seeded),
            meaningful_perturbation.attribute(small_model, image, target, {**seeded, "seed": 1}))


def test_meaningful_perturbation_deletes_the_class(mp_runs, small_model):
    image, target, result, *_ = mp_runs
    assert isinstance(result, WithExtras)
    before = small_model.probabilities(image[None])[0, target]
    after = small_model.probabilities(result.extras["perturbed"][None])[0, target]
    assert before > 0.999 and after < 0.5
    assert result.extras["probability"][-1] < result.extras["probability"][0]


def test_meaningful_perturbation_points_at_the_center(mp_runs):
    _, _, result, *_ = mp_runs
    row, col = np.unravel_index(np.argmax(result.attribution), result.attribution.shape)
    assert abs(row - SMALL // 2) <= 2 and abs(col - SMALL // 2) <= 2
    np.testing.assert_allclose(result.attribution, 1 - result.extras["mask"], atol=1e-7)


def test_meaningful_perturbation_is_seeded(mp_runs):
    *_, first, again, other = mp_runs
    assert np.array_equal(first.attribution, again.attribution)
    assert not np.array_equal(first.attribution, other.attribution)


def test_torch_backend_writes_the_same_maps(small_model_path, tmp_path):
    """The same command on either backend: the same keys, and maps equal to 1e-6 of their maximum."""
    keys = [key for key in expand(["grad", "gb", "ig", "deeplift", "lrp"]) if key in comparable()]
    maps = {}
    for backend in ("keras", "torch"):
        out = tmp_path / backend
        assert run_cli("-mp", small_model_path, "-hm", *keys, "--backend", backend, "-op", out, "-q",
                       "--set", "ig.steps=8") == 0
        [folder] = out.iterdir()
        maps[backend] = image_maps(folder)
        scores = image_scores(folder)
        assert scores["backend"] == backend and {row["framework"] for row in scores["methods"].values()} == {backend}
    assert sorted(maps["keras"]) == sorted(maps["torch"])
    for key in maps["keras"]:
        assert agreement(maps["keras"][key], maps["torch"][key])["max_abs_diff_relative"] <= 1e-6, key


def test_compare_backends_reports_agreement(small_model_path, tmp_path, capsys):
    assert run_cli("-mp", small_model_path, "--compare-backends", "-hm", "grad", "lrp.epsilon", "-op", tmp_path,
                   "-q") == 0
    [folder] = tmp_path.iterdir()
    compared = image_scores(folder)["compare_backends"]
    assert set(compared["agreement"]) == {"grad", "lrp.epsilon"}
    for row in compared["agreement"].values():
        assert row["max_abs_diff_relative"] <= 1e-6 and row["pearson"] > 0.999999
    assert set(image_maps(folder)) == {"input", "grad", "lrp.epsilon", "torch/grad",
                                                           "torch/lrp.epsilon"}
    assert "keras vs torch" in capsys.readouterr().out


def test_compare_backends_refuses_single_framework_methods(small_model_path, tmp_path, capsys):
    assert run_cli("-mp", small_model_path, "--compare-backends", "-hm", "grad", "occlusion", "-op", tmp_path) == 2
    assert "drop occlusion" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_compare_backends_takes_a_groups_members_that_run_on_both():
    from heatkit.preparation import method_keys

    keras_too = [key for key in expand(["lrp"]) if key != "lrp.epsilon_gamma_box"]
    assert method_keys(["lrp"], compare_backends=True) == keras_too
    assert method_keys(["all"], compare_backends=True) == comparable()


def test_compare_backends_with_nothing_applicable_says_so(small_model_path, tmp_path, capsys):
    assert run_cli("-mp", small_model_path, "--compare-backends", "-hm", "cam", "-op", tmp_path, "-q") == 0
    [folder] = tmp_path.iterdir()
    assert image_scores(folder)["compare_backends"]["agreement"] == {}
    assert "nothing to compare" in capsys.readouterr().out


def test_mp_saves_its_panels(small_model_path, tmp_path):
    assert run_cli("-mp", small_model_path, "-hm", "mp", "-op", tmp_path, "-q", "--set", "mp.iterations=5",
                   "--set", "mp.mask_size=5") == 0
    [folder] = tmp_path.iterdir()
    assert sorted(p.name for p in (folder / "mp").iterdir()) == ["extras.npz", "panels.png"]
    assert set(np.load(folder / "mp" / "extras.npz").files) == {"mask", "blurred", "perturbed", "loss", "l1", "tv",
                                                                "probability"}


def test_torch_only_method_is_not_applicable_without_a_twin(mlp_path, tmp_path, capsys):
    assert run_cli("-mp", mlp_path, "-hm", "grad", "mp", "-op", tmp_path, "-q") == 0
    assert "mp runs on torch" in capsys.readouterr().out
