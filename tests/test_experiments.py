"""Sanity checks, the growing patch and sweeps, on small models with known answers."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

import heatkit
from conftest import SMALL, break_occlusion, run_cli, image_scores
from heatkit.base import frameworks
from heatkit.base.data import center_pixel_images
from heatkit.methods import gradient, occlusion
from heatkit.model import Model
from heatkit.pipeline import variants
from heatkit.pipeline.scores import center_scores
from heatkit.base.similarity import ms_ssim, similarities

OCCLUSION = {"patch": 1, "stride": 1, "fill": 0.0, "mask": None}


def rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_every_metric_of_a_map_with_itself_is_one_and_of_a_constant_map_undefined(rng):
    for attribution in (rng.normal(size=(15, 15)), rng.normal(size=(64, 48))):
        assert all(value == pytest.approx(1.0) for value in similarities(attribution, attribution).values())
        assert ms_ssim(attribution, attribution) == pytest.approx(1.0)
    for constant, other in ((np.zeros((9, 9)), np.zeros((9, 9))), (np.zeros((9, 9)), rng.normal(size=(9, 9)))):
        found = similarities(constant, other)
        assert all(np.isnan(value) for key, value in found.items() if key != "undefined")
        assert "constant" in found["undefined"]


def test_randomizing_the_dense_layer_destroys_the_center(small_model):
    image = center_pixel_images(1, SMALL, 256, seed=2)[0]
    target = int(small_model.probabilities(image[None])[0].argmax())
    before = occlusion.attribute(small_model, image, target, OCCLUSION)
    assert center_scores(before, 5)["center_rank"] == 1
    change = variants.reinitializer(["dense"], "truncated_normal", 0.05, seed=0)
    randomized = variants.variant(small_model, change)
    after = occlusion.attribute(randomized, image, target, OCCLUSION)
    assert center_scores(after, 5)["center_rank"] > 1


@pytest.mark.parametrize("initializer", ["layer", "truncated_normal"])
def test_gradient_of_the_randomized_model_is_its_new_weight_column(linear_model, initializer):
    image = center_pixel_images(1, SMALL, 256, seed=2)[0]
    randomized = variants.variant(linear_model, variants.reinitializer(["dense"], initializer, 0.05, 1))
    kernel = randomized.keras.weights("dense")[0]
    original = linear_model.keras.weights("dense")[0]
    assert not np.allclose(kernel, original)
    for target in (0, 100):
        np.testing.assert_allclose(gradient.on_keras(randomized, image, target, {}),
                                   kernel[:, target].reshape(SMALL, SMALL), rtol=1e-6)
    np.testing.assert_array_equal(linear_model.keras.weights("dense")[0], original)  # the original is untouched
    np.testing.assert_array_equal(Model(linear_model.path).keras.weights("dense")[0], original)


def test_layer_initializers_redraw_batchnorm_inside_a_nested_backbone(tmp_path):
    """A float32 Keras model whose conv layer and BatchNorm sit in a nested model: the sanity
    check names them outer/inner, BatchNorm's own initializers give gamma 1 and beta 0, and its
    moving statistics, which it does not learn, stay (as PyTorch's buffers do)."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    backbone = tf.keras.Sequential([tf.keras.Input((8, 8, 1)),
                                    layers.Conv2D(2, 3, kernel_initializer=init.GlorotNormal(seed=1), name="conv"),
                                    layers.BatchNormalization(name="bn")], name="backbone")
    inputs = tf.keras.Input((8, 8, 1))
    logits = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(backbone(inputs)))
    keras_model = tf.keras.Model(inputs, layers.Activation("softmax")(logits))
    backbone.get_layer("bn").set_weights([np.array([2.0, 1.5]), *(np.full(2, value) for value in (0.5, 0.3, 4.0))])
    keras_model.save(tmp_path / "nested.h5")
    model = Model(tmp_path / "nested.h5")
    assert variants.weighted_layers(model) == ["logits", "backbone/bn", "backbone/conv"]
    change = variants.reinitializer(["backbone/bn", "backbone/conv"], "layer", 0.01, seed=5)
    altered = variants.variant(model, change)
    gamma, beta, mean, variance = altered.keras.weights("backbone/bn")
    assert [list(gamma), list(beta)] == [[1, 1], [0, 0]]
    np.testing.assert_allclose([mean, variance], [[0.3, 0.3], [4.0, 4.0]], rtol=1e-7)
    assert not np.allclose(altered.keras.weights("backbone/conv")[0], model.keras.weights("backbone/conv")[0])
    for before, after in zip(model.keras.weights("logits"), altered.keras.weights("logits")):
        np.testing.assert_array_equal(before, after)
    noised = variants.variant(model, variants.noiser(1.0, seed=0))
    gamma, _, mean, variance = noised.keras.weights("backbone/bn")
    assert not np.allclose(gamma, [2.0, 1.5])
    np.testing.assert_allclose([mean, variance], [[0.3, 0.3], [4.0, 4.0]], rtol=1e-7)  # a variance stays positive


@pytest.fixture(scope="module")
def ignored_layer_model(tmp_path_factory):
    """Flatten, then a Dense 'head' to the logits, plus a branch the output ignores: Dense 'ignored'
    (ReLU) into Dense 'dead', whose kernel is zero."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((SMALL, SMALL, 1))
    flat = layers.Flatten()(inputs)
    hidden = layers.Dense(6, activation="relu", name="ignored", kernel_initializer=init.GlorotNormal(seed=1))(flat)
    dead = layers.Dense(3, name="dead", kernel_initializer="zeros", bias_initializer="zeros")(hidden)
    head = layers.Dense(3, name="head", kernel_initializer=init.GlorotNormal(seed=2))(flat)
    path = tmp_path_factory.mktemp("ignored") / "model.h5"
    tf.keras.Model(inputs, layers.Activation("softmax")(layers.Add()([head, dead]))).save(path)
    return path


def test_randomizing_a_layer_the_output_ignores_changes_nothing(ignored_layer_model, tmp_path):
    assert run_cli("-mp", ignored_layer_model, "--sanity", "independent", "-hm", "grad", "occlusion", "shapley",
                   "-op", tmp_path, "-q", "--set", "shapley.samples=2",
                   "--set", "sanity.initializer='truncated_normal'", "--set", "sanity.std=0.5") == 0
    [folder] = tmp_path.iterdir()
    table = rows(folder / "sanity_independent.csv")
    ignored = [row for row in table if row["changed"] == "ignored"]
    assert len(ignored) == 3
    for row in ignored:
        assert all(float(row[metric]) == pytest.approx(1.0) for metric in ("spearman", "spearman_abs", "ssim", "hog"))
    # Re-drawing the zero kernel of 'dead' makes the branch reach the output: every map changes
    dead = [row for row in table if row["changed"] == "dead"]
    assert sorted(row["method"] for row in dead) == ["grad", "occlusion", "shapley"]
    for row in dead:
        assert float(row["spearman"]) < 0.99 and float(row["ssim"]) < 0.99


def test_cascading_sanity_run_writes_figures_and_curves(small_model_path, tmp_path):
    assert run_cli("-mp", small_model_path, "--sanity", "cascading", "-hm", "grad", "occlusion", "-op", tmp_path,
                   "-q") == 0
    [folder] = tmp_path.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["run.json", "sanity_cascading.csv", "sanity_cascading.png",
                                                        "sanity_cascading_curves.png", "scores.json"]
    table = rows(folder / "sanity_cascading.csv")
    assert [row["changed"] for row in table if row["method"] == "occlusion"] == ["original", "dense"]
    last = next(row for row in table if row["method"] == "occlusion" and row["changed"] == "dense")
    mprt = image_scores(folder)["methods"]["occlusion"]["mprt"]  # the last step's Spearman of |a|
    assert mprt == pytest.approx(float(last["spearman_abs"]))


def test_zero_noise_changes_no_map(small_model_path, tmp_path):
    assert run_cli("-mp", small_model_path, "--sanity", "noise", "--set", "sanity.noise_levels=[0.0, 1.0]",
                   "-hm", "grad", "occlusion", "-op", tmp_path, "-q") == 0
    [folder] = tmp_path.iterdir()
    table = rows(folder / "sanity_noise.csv")
    unchanged = [row for row in table if row["changed"] == "noise 0"]
    assert len(unchanged) == 2 and all(float(row["ssim"]) == pytest.approx(1.0) for row in unchanged)
    noisy = [row for row in table if row["changed"] == "noise 1" and row["method"] == "grad"]
    assert float(noisy[0]["spearman"]) < 0.99


def test_a_method_that_fails_on_one_variant_is_reported_and_leaves_a_gap(small_model_path, tmp_path, monkeypatch,
                                                                         capsys):
    def diverge():
        raise RuntimeError("diverged")

    break_occlusion(monkeypatch, 2, diverge)
    assert run_cli("-mp", small_model_path, "--sanity", "noise", "--set", "sanity.noise_levels=[0.5, 1.0]",
                   "-hm", "grad", "occlusion", "-op", tmp_path, "-q") == 1
    assert "Occlusion (occlusion) failed at noise 0.5: RuntimeError: diverged" in capsys.readouterr().out
    [folder] = tmp_path.iterdir()
    table = rows(folder / "sanity_noise.csv")
    occlusion_rows = {row["changed"]: row for row in table if row["method"] == "occlusion"}
    assert sorted(occlusion_rows) == ["noise 0.5", "noise 1", "original"]
    assert occlusion_rows["noise 0.5"]["error"] == "RuntimeError: diverged" and occlusion_rows["noise 0.5"]["ssim"] == ""
    # noise 1 saturates the 1e10 logits: the occlusion map is constant, and its similarity undefined
    assert occlusion_rows["noise 1"]["error"] == "" and "constant" in occlusion_rows["noise 1"]["undefined"]
    assert [row["changed"] for row in table if row["method"] == "grad"] == ["original", "noise 0.5", "noise 1"]
    curves = np.asarray(Image.open(folder / "sanity_noise_curves.png").convert("RGB"))
    assert len(np.unique(curves.reshape(-1, 3), axis=0)) > 8  # drawn: axes, text and the two methods' curves


@pytest.mark.parametrize("experiment, table", [
    (["--sanity", "noise", "--set", "sanity.noise_levels=[0.5]"], "sanity_noise"),
    (["--growing-patch", "--set", "growing_patch.sizes=[2]"], "growing_patch")])
def test_a_method_that_does_not_apply_is_reported_as_a_heatmap_run_reports_it(experiment, table, mlp_path, tmp_path,
                                                                             capsys):
    """Meaningful Perturbation on a Keras-only model: named with its reason, the other method kept."""
    assert run_cli("-mp", mlp_path, *experiment, "-hm", "grad", "mp", "-op", tmp_path, "-q") == 0
    assert "Meaningful Perturbation (mp) not applicable: mp runs on torch" in capsys.readouterr().out
    [folder] = tmp_path.iterdir()
    found = rows(folder / f"{table}.csv")
    [mp_row] = [row for row in found if row["method"] == "mp"]
    assert mp_row["error"].startswith("not applicable: mp runs on torch")
    assert len([row for row in found if row["method"] == "grad"]) == 2


def test_sweeping_the_same_value_twice_gives_identical_maps(small_model_path, tmp_path):
    assert run_cli("-mp", small_model_path, "--sweep", "shapley.seed=3,3,4", "--sweep", "occlusion.patch=3,3",
                   "-hm", "shapley", "occlusion", "-op", tmp_path, "-q", "--set", "shapley.samples=3") == 0
    [folder] = tmp_path.iterdir()
    table = rows(folder / "sweep.csv")
    same = [row for row in table if row["value_a"] == row["value_b"]]
    assert len(same) == 2
    for row in same:
        assert float(row["ssim"]) == pytest.approx(1.0) and float(row["spearman"]) == pytest.approx(1.0)


def test_growing_patch_leaves_the_center_pixel_models_probabilities_alone(small_model_path, tmp_path):
    assert run_cli("-mp", small_model_path, "--growing-patch", "--set", "growing_patch.sizes=[1, 3, 6]",
                   "-hm", "occlusion", "grad", "-op", tmp_path, "-q") == 0
    [folder] = tmp_path.iterdir()
    table = rows(folder / "growing_patch.csv")
    assert {row["patch"] for row in table} == {"0", "1", "3", "6"}
    probabilities = [float(row["explained_probability"]) for row in table]
    assert max(probabilities) - min(probabilities) < 1e-9  # no patch reaches the center (the model's own bound)
    assert all(float(row["ms_ssim"]) == pytest.approx(1.0) for row in table if row["method"] == "occlusion")


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "sg.noise_scale"], "write METHOD.SETTING=V1,V2"),
    (["--sweep", "sg.noise_scale=0.1,-1", "-hm", "sg"], "sg.noise_scale must be"),
    (["--sweep", "lime.seed=1,2", "-hm", "grad"], "none of the chosen methods reads the lime settings"),
    (["--sanity", "noise", "--growing-patch"], "one experiment"),
    (["--growing-patch", "--set", "growing_patch.sizes=[40]"], "leaves the 15x15 image"),
])
def test_experiment_arguments_that_make_no_sense_are_one_line(small_model_path, tmp_path, capsys, argv, message):
    assert run_cli("-mp", small_model_path, *argv, "-op", tmp_path, "-q") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not any(tmp_path.iterdir())


def test_an_experiment_says_its_cost_first_and_each_step_as_it_ends(small_model_path, capsys):
    """Before its steps, the cost they will take at the first maps' cost (past warn_seconds); then a
    line a step, which a log keeps."""
    heatkit.sanity(small_model_path, None, ["grad"], mode="noise", progress=True,
                   settings={"sanity.noise_levels": [0.1, 0.2], "perturbation.warn_seconds": 1e-9})
    err = capsys.readouterr().err
    assert "sanity noise: about" in err and "(2 steps, each recomputing the maps" in err
    assert "sanity noise: step 1 of 2 (noise 0.1)" in err and "sanity noise: step 2 of 2 (noise 0.2)" in err
    heatkit.sanity(small_model_path, None, ["grad"], mode="noise", progress=False,
                   settings={"sanity.noise_levels": [0.1], "perturbation.warn_seconds": 0})
    assert capsys.readouterr().err == ""


def test_an_interrupt_between_sanity_steps_keeps_the_finished_ones(ignored_layer_model, tmp_path, monkeypatch):
    """Ctrl-C while the next variant was built discarded every finished step ("nothing was
    written"): the steps done are kept, and the folder says it is incomplete."""
    made = variants.variant
    calls = []

    def interrupted_at_the_second(model, change):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return made(model, change)

    monkeypatch.setattr(variants, "variant", interrupted_at_the_second)
    found = heatkit.sanity(str(ignored_layer_model), center_pixel_images(1, SMALL, 256, seed=1)[0], ["grad"],
                           settings={"faithfulness.curves": False}, progress=False)
    assert found.interrupted and [row["changed"] for row in found.rows] == ["original", "dead"]  # from the top
    folder = found.save(tmp_path)
    assert json.loads((folder / "run.json").read_text())["incomplete"] is True
    assert len(rows(folder / "sanity_cascading.csv")) == 2


def test_a_resnets_sanity_steps_are_its_blocks_with_their_batchnorms():
    """torchvision's ResNet-18 has 41 weighted modules (every conv and BatchNorm apart); Adebayo et
    al. randomise it by block: the stem (conv1 with bn1), the eight blocks (a downsample with its
    block), and fc: ten steps, from the output down."""
    from heatkit.pipeline import variants

    torch = frameworks.torch()
    import torchvision

    torch.manual_seed(0)
    model = heatkit.load_model(torchvision.models.resnet18(num_classes=10), settings={"input_size": [32, 32]})
    units = variants.blocks(model)
    assert [name for name, _ in units] == ["fc", "layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1", "layer2.0",
                                           "layer1.1", "layer1.0", "conv1"]
    assert dict(units)["conv1"] == ["conv1", "bn1"]
    assert dict(units)["layer2.0"] == ["layer2.0.conv1", "layer2.0.bn1", "layer2.0.conv2", "layer2.0.bn2",
                                       "layer2.0.downsample.0", "layer2.0.downsample.1"]
    assert sum(len(layers) for _, layers in units) == len(variants.weighted_layers(model)) == 41
    assert [name for name, _ in variants.blocks(model, "layer")] == variants.weighted_layers(model)


def test_keras_blocks_are_found_by_their_names(tmp_path):
    tf = frameworks.tensorflow()
    layers = tf.keras.layers
    inputs = tf.keras.Input((8, 8, 3))
    hidden = layers.Conv2D(4, 3, name="conv1_conv")(inputs)
    hidden = layers.BatchNormalization(name="conv1_bn")(hidden)
    for name in ("conv2_block1_1_conv", "conv2_block1_1_bn", "conv2_block1_2_conv", "conv2_block2_1_conv"):
        hidden = (layers.BatchNormalization if name.endswith("bn") else layers.Conv2D)(
            *(() if name.endswith("bn") else (4, 1)), name=name)(hidden)
    logits = layers.Dense(3, name="predictions")(layers.GlobalAveragePooling2D()(hidden))
    tf.keras.Model(inputs, layers.Activation("softmax")(logits)).save(tmp_path / "blocks.h5")
    from heatkit.pipeline import variants

    units = variants.blocks(heatkit.load_model(tmp_path / "blocks.h5"))
    assert units == [("predictions", ["predictions"]), ("conv2_block2", ["conv2_block2_1_conv"]),
                     ("conv2_block1", ["conv2_block1_1_conv", "conv2_block1_1_bn", "conv2_block1_2_conv"]),
                     ("conv1_conv", ["conv1_conv", "conv1_bn"])]
