"""The models researchers have: torchvision and timm architectures by name with their weights
files, and ONNX files, each run through every method and checked against references (autograd,
captum's Occlusion, zennit called directly, a hand Grad-CAM, completeness), or reported not
applicable with a reason that is true. Real architectures at a small input, 32 x 32, 10 classes."""
import json

import numpy as np
import pytest

import heatkit
from conftest import nchw, random_image, run_cli, trained_looking
from heatkit.base import frameworks
from heatkit.base.errors import UsageError
from heatkit.base.images import IMAGENET
from heatkit.methods.registry import REGISTRY

SIDE = 32
CHEAP = {"faithfulness.curves": False, "input_size": [SIDE, SIDE], "pda.levels": 2, "shapley.samples": 1,
         "lime.num_samples": 20, "shap.nsamples": 20, "rise.num_masks": 20, "mp.iterations": 2, "mp.mask_size": 5,
         "ig.steps": 16, "sg.augment_by_n": 2, "occlusion.patch": 8, "occlusion.stride": 8}
ATTNLRP = ("lrp.z", "lrp.epsilon")  # where zennit's rules do not apply, these take AttnLRP's
# name -> the methods that do not apply to it, each with a piece of its true reason
CNN = {"rollout": "computes no attention", "chefer": "computes no attention", "legrad": "VisionTransformer"}
ZOO = {
    "torchvision:resnet18": CNN,
    "torchvision:vgg11": {**CNN, "cam": "reads no global average"},
    "torchvision:mobilenet_v2": CNN,
    "torchvision:efficientnet_b0": {**CNN, "lrp": "product of two activations"},
    "torchvision:vit_b_16(image_size=32)": {"gb": "attention", "deconvnet": "attention", "guided_gradcam": "attention",
                                            "lrp": "LayerNorm",
                                            "cam": "reads no global average"},
    "timm:resnet10t": CNN,  # timm's three-convolution stem and average-pooled shortcuts
    "timm:vit_tiny_patch16_224(img_size=32)": {"gb": "attention", "deconvnet": "attention", "guided_gradcam": "attention",
                                               "lrp": "layer_norm",
                                               "cam": "reads no global average"},
}
# One evaluation per input element (6,144 for PDA, 3,073 for a Shapley walk) costs 9 to 30 s on these
# full-width networks (EfficientNet's squeeze-and-excitation keeps it off the windowed path); they take
# the engine's paths that occlusion, run on them, takes too. Score-CAM and Ablation-CAM take a full pass
# per channel of the layer (512 to 1,280 here): they run on the ResNets.
PER_CHANNEL = ["scorecam", "ablationcam"]
EXPENSIVE = {"torchvision:vgg11": ["pda", "shapley", *PER_CHANNEL], "torchvision:mobilenet_v2": PER_CHANNEL,
             "torchvision:efficientnet_b0": ["pda", *PER_CHANNEL],
             "timm:vit_tiny_patch16_224(img_size=32)": ["pda", *PER_CHANNEL],
             "torchvision:vit_b_16(image_size=32)": ["pda", "shapley", *PER_CHANNEL]}


def built(name: str):
    """The architecture built here, as a user builds it, with 10 classes and seeded weights."""
    torch = frameworks.torch()
    from heatkit.model import zoo

    torch.manual_seed(0)
    named = zoo.parse(name)
    return trained_looking(zoo._construct(named, {**named.arguments, "num_classes": 10}))


@pytest.fixture(scope="module")
def image():
    return random_image(SIDE, seed=3)


def normalised(net, image):
    """The image as the zoo's network takes it, normalised by its mean and standard deviation."""
    return (image - net.mean) / net.std


@pytest.mark.parametrize("name", ZOO)
def test_a_zoo_model_by_name_runs_every_method_or_says_why_not(name, image, tmp_path):
    torch = frameworks.torch()
    net = built(name)
    weights = tmp_path / ("weights.safetensors" if name.startswith("timm") else "weights.pth")
    if weights.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(net.state_dict(), str(weights))
    else:
        torch.save(net.state_dict(), weights)
    model = heatkit.load_model(name, weights=weights, settings=CHEAP)
    assert model.num_classes == 10 and model.input_shape == (SIDE, SIDE, 3)  # the classes read from the weights
    family = net.pretrained_cfg if name.startswith("timm") else IMAGENET  # the mean and std its family expects
    assert model.preprocess.mean == tuple(family["mean"]) and model.preprocess.std == tuple(family["std"])
    methods = [key for key in REGISTRY if key not in EXPENSIVE.get(name, [])]
    run = heatkit.explain(model, image, methods, settings=CHEAP, progress=False)
    expected = {key: reason for family, reason in ZOO[name].items() for key in REGISTRY
                if (key == family or key.startswith(family + ".")) and key not in ATTNLRP}
    assert not run.result.failures
    assert set(run.result.skipped) == set(expected), run.result.skipped
    for key, reason in expected.items():
        assert reason in run.result.skipped[key], (key, run.result.skipped[key])
    # autograd's gradient, at the input as the family prepares it (ImageNet's mean and std, or timm's cfg)
    net.mean, net.std = np.asarray(model.preprocess.mean), np.asarray(model.preprocess.std)
    inputs = nchw(normalised(net, image)).requires_grad_()
    logits = net(inputs)
    target = run.result.target
    (gradient,) = torch.autograd.grad(logits[0, target], inputs)
    np.testing.assert_allclose(run.maps["grad"], gradient[0].sum(0).numpy(),  # the model input's gradient
                               rtol=1e-4, atol=1e-6 * float(gradient.abs().max()))
    if "deeplift" not in expected:  # complete where it applies
        with torch.no_grad():
            baseline = net(nchw(normalised(net, np.zeros_like(image))))[0, target]  # DeepLIFT's baseline: black pixels
        change = float(logits[0, target].detach() - baseline)
        assert run.maps["deeplift"].sum(dtype=np.float64) == pytest.approx(change, rel=1e-4, abs=1e-5)


def test_resnet18_matches_captum_zennit_and_a_hand_grad_cam(image, tmp_path):
    torch = frameworks.torch()
    import zennit.composites
    import zennit.layer
    import zennit.rules
    import zennit.torchvision
    import zennit.types
    from captum.attr import Occlusion
    from skimage.transform import resize

    net = built("torchvision:resnet18")
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    settings = {**CHEAP, "occlusion.patch": 8, "occlusion.stride": 4}
    run = heatkit.explain("torchvision:resnet18", image, ["occlusion", "lrp.epsilon", "gradcam"], target=4,
                          settings={**settings, "weights": str(tmp_path / "r18.pth")}, progress=False)
    net.mean, net.std = np.asarray(run.model.preprocess.mean), np.asarray(run.model.preprocess.std)
    inputs = nchw(normalised(net, image))
    occluded = Occlusion(lambda x: torch.softmax(net(x), -1)).attribute(  # occlusion.fill 0: black pixels
        inputs, target=4, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4), baselines=nchw(normalised(net, np.zeros_like(image))))
    np.testing.assert_allclose(run.maps["occlusion"], occluded[0].mean(0).numpy(), rtol=0, atol=2e-6)
    composite = zennit.composites.LayerMapComposite(
        [(zennit.types.Activation, zennit.rules.Pass()), (zennit.types.AvgPool, zennit.rules.Norm(stabilizer=1e-12)),
         (zennit.layer.Sum, zennit.rules.Norm(stabilizer=1e-12)),  # the residual additions ResNetCanonizer makes
         (zennit.types.Convolution, zennit.rules.Epsilon(1e-7)), (zennit.types.Linear, zennit.rules.Epsilon(1e-7))],
        canonizers=[zennit.torchvision.ResNetCanonizer()])
    inputs.requires_grad_()
    with composite.context(net) as modified:
        output = modified(inputs)
        seed = torch.zeros_like(output)
        seed[0, 4] = output[0, 4]
        (relevance,) = torch.autograd.grad(output, inputs, grad_outputs=seed)
    expected = relevance[0].sum(0).detach().numpy()
    # zennit's merged BatchNorm keeps a variance of 1 where ours is the identity, eps / 2 off a BatchNorm: 1.2e-4 of
    # the map's largest value here (9e-8 with every eps 0). Norm's stabilizer is near ours, not its default 1e-6
    np.testing.assert_allclose(run.maps["lrp.epsilon"], expected, rtol=0, atol=5e-4 * np.abs(expected).max())
    # the default layer: the last block whose output is a grid, layer3[-1] at 32 x 32 (layer4's is 1 x 1)
    captured = {}
    hook = net.layer3[1].register_forward_hook(lambda _, __, output: captured.setdefault("a", output))
    logit = net(inputs.detach())[0, 4]
    hook.remove()
    (grads,) = torch.autograd.grad(logit, captured["a"])
    cam = torch.relu((grads[0].mean((1, 2))[:, None, None] * captured["a"][0]).sum(0))  # 2 x 2, upsampled bilinearly
    expected = resize(cam.detach().numpy(), (SIDE, SIDE), order=1, mode="edge", preserve_range=True)
    np.testing.assert_allclose(run.maps["gradcam"], expected, rtol=1e-5, atol=1e-6 * expected.max())


def test_shapley_over_patches_equals_captums_shapley_value_sampling_with_the_same_orders(image, tmp_path,
                                                                                         monkeypatch):
    torch = frameworks.torch()
    from captum.attr import ShapleyValueSampling
    from captum.attr._core import shapley_value

    from heatkit.methods import shapley

    net = built("torchvision:resnet18")
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    settings = {**CHEAP, "weights": str(tmp_path / "r18.pth"), "shapley.mask": "patch:8", "shapley.samples": 3}
    run = heatkit.explain("torchvision:resnet18", image, ["shapley"], target=4, settings=settings, progress=False)
    orders = shapley.permutations(16, {"samples": 3, "seed": 0})  # 4 x 4 squares of 8 x 8 pixels
    monkeypatch.setattr(shapley_value, "_perm_generator", lambda *_: (order.tolist() for order in orders))
    net.mean, net.std = np.asarray(run.model.preprocess.mean), np.asarray(run.model.preprocess.std)
    mask = torch.from_numpy((np.arange(SIDE)[:, None] // 8 * 4 + np.arange(SIDE)[None] // 8)[None, None])
    theirs = ShapleyValueSampling(lambda x: torch.softmax(net(x), -1)).attribute(
        nchw(normalised(net, image)), baselines=nchw(normalised(net, np.zeros_like(image))), target=4, feature_mask=mask, n_samples=3)
    assert (theirs[0] == theirs[0, :1]).all()  # a region's value at each of its elements
    np.testing.assert_allclose(run.maps["shapley"], theirs[0, 0].numpy(), rtol=0, atol=1e-6)
    assert np.ptp(run.maps["shapley"]) > 1e-4


def test_a_zoo_name_without_weights_says_they_are_random_and_records_none(tmp_path, capsys):
    assert run_cli("-mp", "torchvision:resnet18", "--input-size", SIDE, "-hm", "grad", "-op", tmp_path, "-q") == 0
    assert "random weights" in capsys.readouterr().err
    [folder] = tmp_path.iterdir()
    record = json.loads((folder / "run.json").read_text())["model"]
    assert record["name"] == "torchvision:resnet18" and record["weights"] is None
    assert run_cli("-mp", "torchvision:resnet81", "-op", tmp_path) == 2
    assert "did you mean resnet18" in capsys.readouterr().err


def test_layers_given_as_module_objects_are_the_named_layers(image):
    net = built("torchvision:resnet18")
    settings = {**CHEAP, "gradcam.layers": [net.layer2, net.layer3]}  # layer4's maps are 1 x 1 at 32 x 32
    by_object = heatkit.explain(net, image, ["gradcam"], target=1, settings=settings, progress=False)
    by_name = heatkit.explain(net, image, ["gradcam"], target=1,
                              settings={**CHEAP, "gradcam.layers": ["layer2", "layer3"]}, progress=False)
    assert sorted(by_object.maps) == ["gradcam@layer2", "gradcam@layer3"]
    for key in by_name.maps:
        np.testing.assert_array_equal(by_object.maps[key], by_name.maps[key])
    with pytest.raises(UsageError, match="not a layer of the model explained"):
        heatkit.explain(net, image, ["gradcam"], settings={**CHEAP, "gradcam.layers": [built("timm:resnet18").fc]},
                        progress=False)


# ---- ONNX ----
@pytest.mark.parametrize("opset", [17, 20])
def test_an_onnx_export_gives_the_maps_of_the_pytorch_model(opset, image, tmp_path):
    """PyTorch's exporter at opset 20 writes operations onnx2torch has no converter for (Identity-19):
    they take the older converter, checked against onnxruntime."""
    torch = frameworks.torch()
    net = built("torchvision:resnet18")
    path = tmp_path / "r18.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, SIDE, SIDE),), str(path), dynamo=False, opset_version=opset,
                      input_names=["image"], dynamic_axes={"image": {0: "batch"}})
    settings = {**CHEAP, "preprocess.mean": [0.485, 0.456, 0.406], "preprocess.std": [0.229, 0.224, 0.225]}
    methods = ["grad", "occlusion", "lrp.epsilon", "deeplift"]
    onnx_run = heatkit.explain(str(path), image, methods, target=2, settings=settings, progress=False)
    torch_run = heatkit.explain(net, image, methods, target=2, settings=settings, progress=False)
    assert "onnxruntime's to" in onnx_run.notes[0] and not onnx_run.result.failures
    for key in ("grad", "lrp.epsilon", "deeplift"):
        scale = np.abs(torch_run.maps[key]).max()
        np.testing.assert_allclose(onnx_run.maps[key], torch_run.maps[key], rtol=0, atol=1e-5 * scale, err_msg=key)
    np.testing.assert_allclose(onnx_run.maps["occlusion"], torch_run.maps["occlusion"], rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Converting a tensor")  # the exporter's tracer, on timm's shape checks
def test_an_onnx_vit_exported_with_a_batch_of_one_runs_one_image_at_a_time(image, tmp_path):
    """PyTorch's default export: opset 20 (Gelu, which onnx2torch lacks) and a fixed batch of 1 that
    the graph's class token holds, so the converted module fails on two images."""
    torch = frameworks.torch()
    net = built("timm:vit_tiny_patch16_224(img_size=32)")
    torch.onnx.export(net, (torch.zeros(1, 3, SIDE, SIDE),), str(tmp_path / "vit.onnx"), dynamo=False)
    settings = {**CHEAP, "preprocess.mean": [0.5] * 3, "preprocess.std": [0.5] * 3}
    onnx_run = heatkit.explain(str(tmp_path / "vit.onnx"), image, ["grad", "occlusion"], target=2, settings=settings,
                               progress=False)
    torch_run = heatkit.explain(net, image, ["grad", "occlusion"], target=2, settings=settings, progress=False)
    assert "one image at a time" in onnx_run.notes[0] and "onnxruntime's to" in onnx_run.notes[1]
    scale = np.abs(torch_run.maps["grad"]).max()
    np.testing.assert_allclose(onnx_run.maps["grad"], torch_run.maps["grad"], rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(onnx_run.maps["occlusion"], torch_run.maps["occlusion"], rtol=0, atol=1e-5)


def test_an_onnx_export_of_a_keras_model_runs_in_its_layout(tmp_path):
    """tf2onnx writes Keras models NHWC: the converted model gets a transpose, and gives Keras' maps."""
    tf = frameworks.tensorflow()
    import tf2onnx

    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((12, 12, 3), name="image")
    hidden = layers.Conv2D(4, 3, activation="relu", kernel_initializer=init.GlorotNormal(seed=1))(inputs)
    outputs = layers.Dense(5, activation="softmax", kernel_initializer=init.GlorotNormal(seed=2))(
        layers.GlobalAveragePooling2D()(hidden))
    model = tf.keras.Model(inputs, outputs)
    tf2onnx.convert.from_keras(model, input_signature=[tf.TensorSpec((None, 12, 12, 3), tf.float32, name="image")],
                               opset=13, output_path=str(tmp_path / "keras.onnx"))
    image = np.random.default_rng(4).random((12, 12, 3))
    onnx_run = heatkit.explain(str(tmp_path / "keras.onnx"), image, ["grad", "occlusion"], target=1,
                               settings={"faithfulness.curves": False}, progress=False)
    keras_run = heatkit.explain(model, image, ["grad", "occlusion"], target=1, settings={"faithfulness.curves": False},
                                progress=False)
    assert onnx_run.model.input_shape == (12, 12, 3) and onnx_run.model.head.activation == "softmax"
    scale = np.abs(keras_run.maps["grad"]).max()
    np.testing.assert_allclose(onnx_run.maps["grad"], keras_run.maps["grad"], rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(onnx_run.maps["occlusion"], keras_run.maps["occlusion"], rtol=0, atol=1e-5)


def test_an_onnx_operation_without_a_converter_is_named(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Frobnicate", ["image"], ["scores"], domain="example.custom")
    graph = helper.make_graph([node], "custom", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                               [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("example.custom", 1)]),
              str(tmp_path / "custom.onnx"))
    assert run_cli("-mp", tmp_path / "custom.onnx", "-op", tmp_path / "out", "-q") == 2
    err = capsys.readouterr().err
    assert "Frobnicate" in err and err.count("\n") == 1


def test_a_name_with_spaces_is_the_name_without_them():
    """-mp "timm: resnet18 " hung for 300 s and more with no output."""
    from heatkit.model import Model, zoo

    assert zoo.parse("timm: resnet18 ") == zoo.Named("timm", "resnet18")
    assert zoo.parse(" torchvision :resnet18(num_classes=3)") == zoo.Named("torchvision", "resnet18", {"num_classes": 3})
    assert Model("timm: resnet18 ").name == "timm:resnet18"
