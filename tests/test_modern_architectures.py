"""LRP and DeepLIFT on the architectures trained today. LRP (heatkit/methods/_attnlrp.py): equal
to lxt 2.1, the AttnLRP authors' implementation, on a torchvision ViT, with AttnLRP's attention
rule and with CP-LRP's; and conserving the logit exactly on bias-free ViT, Swin, ConvNeXt,
EfficientNet and MobileNetV3 networks, through LayerNorm, GELU, SiLU, hard-swish, attention and
squeeze-excitation's gates. DeepLIFT (heatkit/methods/_deeplift_rules.py): complete on the same
networks, biases and all."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import heatkit
import lxt_reference
from conftest import he_scaled
from heatkit.base import frameworks
from heatkit.methods._entry import REFUSED
from heatkit.methods.guided_backprop import SMOOTH_RULE
from heatkit.methods.registry import REGISTRY

QUIET = {"faithfulness.curves": False}


@pytest.fixture(scope="module")
def lxt_maps(tmp_path_factory):
    out = tmp_path_factory.mktemp("lxt") / "maps.npz"
    done = subprocess.run([sys.executable, str(Path(lxt_reference.__file__)), str(out)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    return dict(np.load(out))


def as_tensor(image):
    torch = frameworks.torch()
    return torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32)


@pytest.mark.parametrize("attention", ["cp", "attnlrp"])
@pytest.mark.parametrize("key", ["lrp.z", "lrp.epsilon"])
def test_lrp_equals_lxt_on_a_vit(lxt_maps, attention, key):
    """lxt computes LRP-0 through the linear layers; lrp.epsilon's 1e-7 changes the map by less
    than 1e-4 of its largest value."""
    net, image, target = lxt_reference.tiny_vit_case()
    run = heatkit.explain(net, as_tensor(image), [key], target=target, progress=False,
                          settings={**QUIET, "lrp.attention": attention})
    theirs = lxt_maps[attention]
    assert np.abs(theirs).max() > 0
    np.testing.assert_allclose(run.maps[key], theirs, rtol=0, atol=1e-4 * np.abs(theirs).max())


def test_the_two_attention_rules_differ(lxt_maps):
    """AttnLRP passes relevance through the softmax to the queries and keys; CP-LRP holds the
    weights constant: on the same ViT the maps differ."""
    difference = np.abs(lxt_maps["attnlrp"] - lxt_maps["cp"]).max()
    assert difference > 0.01 * np.abs(lxt_maps["cp"]).max()


def bias_free(net):
    """The network at He et al.'s scale (so that its logits are far from 0 untrained) with every
    additive constant zero: biases, BatchNorm's shift and running mean, a ViT's class token and
    position embedding. What each rule passes on then sums to the logit."""
    torch = frameworks.torch()
    generator = torch.Generator().manual_seed(3)
    he_scaled(net, generator)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 1.5, generator=generator)
        for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
            if name.endswith(("bias", "running_mean", "class_token", "pos_embedding")) and tensor.is_floating_point():
                tensor.zero_()
    return net.double().eval()


def architectures() -> dict:
    """Reduced-width torchvision networks of each family, at 32 x 32 (Swin at 64 x 64: its windows)."""
    from torchvision.models import convnext, efficientnet, mobilenetv3, swin_transformer, vision_transformer

    return {
        "ViT": lambda: vision_transformer.VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=5),
        "Swin": lambda: swin_transformer.SwinTransformer([4, 4], 16, [2, 2], [2, 4], [4, 4], num_classes=5),
        "ConvNeXt": lambda: convnext.ConvNeXt([convnext.CNBlockConfig(16, 32, 1), convnext.CNBlockConfig(32, None, 1)],
                                              num_classes=5),
        "EfficientNet": lambda: efficientnet.EfficientNet(
            [efficientnet.MBConvConfig(1, 3, 1, 16, 16, 1, 1, 1), efficientnet.MBConvConfig(4, 3, 2, 16, 24, 1, 1, 1)],
            0.2, num_classes=5, last_channel=64),
        "MobileNetV3": lambda: mobilenetv3.mobilenet_v3_small(num_classes=5, width_mult=0.25),
    }


@pytest.mark.parametrize("name", ["ViT", "Swin", "ConvNeXt", "EfficientNet", "MobileNetV3"])
def test_a_bias_free_network_keeps_the_logit_whole(name):
    """LRP-0 under CP-LRP (the attention weights constant) on the bias-free network: the map sums
    to the explained logit, to 1e-5 of it, in float64; input x gradient does not."""
    torch = frameworks.torch()
    torch.manual_seed(1)
    net = bias_free(architectures()[name]())
    side = 64 if name == "Swin" else 32
    image = np.random.default_rng(2).standard_normal((side, side, 3))
    inputs = torch.tensor(image.transpose(2, 0, 1)[None])
    with torch.no_grad():
        logits = net(inputs)[0]
    target = int(logits.argmax())
    logit = float(logits[target])
    assert abs(logit) > 0.1
    kept = {attention: heatkit.explain(net, inputs, ["lrp.z"], target=target, progress=False, settings={
        **QUIET, "lrp.attention": attention}).maps["lrp.z"].sum(dtype=np.float64) for attention in ("cp", "attnlrp")}
    assert kept["cp"] == pytest.approx(logit, rel=1e-5)
    # AttnLRP's softmax rule keeps a share back, where there is attention
    assert (abs(kept["attnlrp"] - logit) > 0.1 * abs(logit)) == (name in ("ViT", "Swin"))
    inputs.requires_grad_()
    (gradient,) = torch.autograd.grad(net(inputs)[0, target], inputs)
    assert abs(float((inputs.detach() * gradient).sum()) - logit) > 0.1 * abs(logit)  # what the rules change


@pytest.mark.parametrize("name", ["ViT", "Swin", "ConvNeXt", "EfficientNet", "MobileNetV3"])
def test_deeplift_is_complete(name):
    """DeepLIFT's map sums to logit(x) - logit(baseline), to 1e-6 of the change, in float64, with
    the networks' biases; two images in one call, each explaining its own class."""
    torch = frameworks.torch()
    torch.manual_seed(1)
    net = bias_free(architectures()[name]())
    with torch.no_grad():
        for name_, tensor in net.named_parameters():
            if name_.endswith("bias"):
                tensor.normal_(0, 0.1)
    side = 64 if name == "Swin" else 32
    rng = np.random.default_rng(5)
    inputs = torch.tensor(rng.standard_normal((2, 3, side, side)))
    with torch.no_grad():
        logits = net(inputs)
    targets = [int(row.argmax()) for row in logits]
    run = heatkit.explain(net, inputs, ["deeplift"], target=targets, progress=False,
                          settings={**QUIET, "deeplift.baseline": 0.25})
    first = run.items[0].results[0]
    assert "deeplift" in first.maps, (first.skipped, first.failures)
    pixel = torch.tensor(run.model.input_value(0.25))[None, :, None, None]  # the baseline as the model takes it
    with torch.no_grad():
        reference = net(pixel.expand_as(inputs[:1]).contiguous())[0]
    for index, (maps, target) in enumerate(zip(run.stack("deeplift"), targets)):
        change = float(logits[index, target] - reference[target])
        assert abs(change) > 0.01
        assert maps.sum(dtype=np.float64) == pytest.approx(change, rel=1e-6)


FAMILY = {"ViT": "ViT", "Swin": "Swin", "ConvNeXt": "ConvNeXt", "EfficientNet": "gated CNNs",
          "MobileNetV3": "gated CNNs", "ResNet": "ReLU CNNs"}


@pytest.mark.parametrize("name", list(FAMILY))
def test_each_family_gets_what_the_method_table_says(name):
    """The methods whose rules depend on the architecture run, or say why not, as the registry
    declares for the network's family (the README's architectures column); Guided Backprop notes
    its rule for smooth activations where it takes it."""
    import torchvision

    torch = frameworks.torch()
    torch.manual_seed(1)
    builders = {**architectures(), "ResNet": lambda: torchvision.models.resnet18(num_classes=5)}
    net, family = builders[name]().eval(), FAMILY[name]
    declared = {key: method.families[family] for key, method in REGISTRY.items() if method.families}
    side = 64 if name == "Swin" else 32
    run = heatkit.explain(net, torch.randn(1, 3, side, side), list(declared), progress=False, settings=QUIET)
    assert not run.result.failures
    assert set(run.result.skipped) == {key for key, verdict in declared.items() if verdict.startswith(REFUSED)}
    noted = any("took the guided rule" in note for note in run.notes)
    assert noted == declared["gb"].startswith(SMOOTH_RULE)


def norms_and_fused_attention(bias: bool):
    """GroupNorm, SiLU, RMSNorm, F.scaled_dot_product_attention and F.normalize, as users write them."""
    torch = frameworks.torch()
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.GroupNorm(2, 8)
            self.rms, self.qkv, self.head = nn.RMSNorm(8), nn.Linear(8, 24, bias=bias), nn.Linear(8, 4, bias=bias)
            if not bias:
                nn.init.zeros_(self.norm.bias)

        def forward(self, x):
            tokens = F.silu(self.norm(self.conv(x))).flatten(2).transpose(1, 2)
            q, k, v = self.qkv(self.rms(tokens)).chunk(3, -1)
            attended = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
            return self.head(3 * F.normalize(tokens + attended, dim=-1).mean(1))
    return Net()


@pytest.mark.parametrize("bias", [False, True])
def test_group_and_rms_norms_and_fused_attention_keep_both_answers(bias):
    """One step past the torchvision blocks: the other normalizations and the fused attention
    function, written out by the rules. LRP-0 under CP-LRP keeps the logit on the bias-free net,
    DeepLIFT sums to the logit's change from the mean color with biases or without."""
    torch = frameworks.torch()
    torch.manual_seed(0)
    net = norms_and_fused_attention(bias).double().eval()
    inputs = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        logits = net(inputs)[0]
    target = int(logits.argmax())
    run = heatkit.explain(net, inputs, ["lrp.z", "deeplift"], target=target, progress=False,
                          settings={**QUIET, "lrp.attention": "cp", "deeplift.baseline": "mean"})
    assert set(run.maps) == {"lrp.z", "deeplift"}, run.result.skipped
    pixel = torch.tensor(run.model.input_value("mean"))[None, :, None, None]
    with torch.no_grad():
        change = float(logits[target] - net(pixel.expand_as(inputs).contiguous())[0, target])
    assert abs(change) > 1e-3
    assert run.maps["deeplift"].sum(dtype=np.float64) == pytest.approx(change, rel=1e-5)
    if not bias:
        assert run.maps["lrp.z"].sum(dtype=np.float64) == pytest.approx(float(logits[target]), rel=1e-5)

