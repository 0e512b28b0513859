"""Vision transformers at reduced size, two blocks, built as users build them (timm's and
torchvision's classes): attention rollout and Chefer et al.'s gradient-weighted attention against
the papers' formulas on attention computed here by hand, and Grad-CAM on a token layer against
pytorch-grad-cam's reshape_transform."""
import numpy as np
import pytest

import heatkit
from conftest import random_image
from heatkit.base import frameworks
from heatkit.methods import _attention, _layers, attention
from heatkit.methods.registry import REGISTRY

SIDE, PATCH, TARGET = 32, 8, 3
GRID = SIDE // PATCH
PLAIN = {"input_size": [SIDE, SIDE], "preprocess.mean": [0, 0, 0], "preprocess.std": [1, 1, 1]}


@pytest.fixture(scope="module")
def timm_vit():
    torch = frameworks.torch()
    import timm

    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=SIDE, patch_size=PATCH, depth=2,
                            num_classes=10).eval()
    with torch.no_grad():
        net.head.weight.normal_(0, 0.5)  # timm starts its head at zero
    return net


def torchvision_vit(layers: int):
    """torchvision's ViT at reduced size, seeded, and heatkit's model of it."""
    torch = frameworks.torch()
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(image_size=SIDE, patch_size=PATCH, num_layers=layers, num_heads=2, hidden_dim=16,
                            mlp_dim=32, num_classes=10).eval()
    with torch.no_grad():
        net.heads.head.weight.normal_(0, 0.5)  # torchvision starts its head at zero
    return net, heatkit.load_model(net, settings=PLAIN)


@pytest.fixture(scope="module")
def image():
    return random_image(SIDE, seed=4)


def by_hand(net, image):
    """The timm ViT's forward written out: the logits, and each block's attention softmax(q k^T / sqrt(d))."""
    torch = frameworks.torch()
    inputs = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32))
    tokens = net._pos_embed(net.patch_embed(inputs))
    maps = []
    for block in net.blocks:
        batch, count, width = tokens.shape
        heads = block.attn.num_heads
        q, k, v = block.attn.qkv(block.norm1(tokens)).reshape(batch, count, 3, heads, -1).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) / np.sqrt(width // heads)).softmax(-1)
        maps.append(weights)
        tokens = tokens + block.attn.proj((weights @ v).transpose(1, 2).reshape(batch, count, width))
        tokens = tokens + block.mlp(block.norm2(tokens))
    logits = net.head(net.norm(tokens)[:, 0])
    np.testing.assert_allclose(logits.detach().numpy(), net(inputs).detach().numpy(), rtol=1e-5, atol=1e-6)
    gradients = torch.autograd.grad(logits[0, TARGET], maps)
    return [m[0].detach().numpy() for m in maps], [g[0].numpy() for g in gradients]


def on_the_grid(flow):
    return _layers.upsample(flow[0, 1:].reshape(GRID, GRID), (SIDE, SIDE))


def test_rollout_is_the_product_of_the_blocks_attention_mixed_with_the_identity(timm_vit, image):
    model = heatkit.load_model(timm_vit, settings=PLAIN)
    maps, _ = by_hand(timm_vit, image)
    flow = np.eye(GRID * GRID + 1)
    for weights in maps:
        mixed = 0.5 * weights.mean(0) + 0.5 * np.eye(len(flow))
        flow = mixed / mixed.sum(-1, keepdims=True) @ flow
    ours = attention.rollout(model, image, TARGET, {"head_fusion": "mean"})
    np.testing.assert_allclose(ours, on_the_grid(flow), rtol=1e-5, atol=1e-7)
    assert np.ptp(ours) > 1e-3


def test_chefer_accumulates_the_positive_gradient_weighted_attention(timm_vit, image):
    model = heatkit.load_model(timm_vit, settings=PLAIN)
    maps, gradients = by_hand(timm_vit, image)
    relevance = np.eye(GRID * GRID + 1)
    for weights, gradient in zip(maps, gradients):
        relevance = relevance + np.maximum(weights * gradient, 0).mean(0) @ relevance
    ours = attention.gradient_weighted(model, image, TARGET, {})
    np.testing.assert_allclose(ours, on_the_grid(relevance), rtol=1e-4, atol=1e-7)
    other = attention.gradient_weighted(model, image, TARGET + 1, {})
    assert np.abs(other - ours).max() > 1e-3 * np.abs(ours).max()  # it depends on the class


def test_torchvisions_multihead_attention_is_read_as_torch_computes_it(image):
    """The attention written out gives the module's own logits, and its matrix equals
    nn.MultiheadAttention's need_weights output, per head."""
    torch = frameworks.torch()
    net, model = torchvision_vit(layers=2)
    inputs = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32))
    blocks, theirs = [layer.self_attention for layer in net.encoder.layers], []
    hooks = [block.register_forward_pre_hook(lambda module, args: theirs.append(
        module.forward(args[0], args[0], args[0], need_weights=True, average_attn_weights=False)[1][0].numpy()))
        for block in blocks]
    with torch.no_grad():
        logits = net(inputs)
    for hook in hooks:
        hook.remove()
    recorded = _attention.record(model, image, TARGET)
    assert recorded.grid == (GRID, GRID) and recorded.prefix == 1 and len(recorded.calls) == len(theirs)
    for call, reference in zip(recorded.calls, theirs):
        np.testing.assert_allclose(call.weights[0], reference, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.logits(image[None]), logits.numpy(), rtol=1e-5, atol=1e-6)
    assert "forward" not in vars(blocks[0])  # the module's own forward is back


def test_grad_cam_on_a_token_layer_equals_pytorch_grad_cams_reshape_transform(timm_vit, image):
    torch = frameworks.torch()
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = heatkit.load_model(timm_vit, settings=PLAIN)
    ours = REGISTRY["gradcam"].impl["torch"](model, image, TARGET, {"layers": None})  # default: blocks.1.norm1

    def reshape_transform(tokens):
        return tokens[:, 1:, :].reshape(tokens.shape[0], GRID, GRID, -1).permute(0, 3, 1, 2)

    inputs = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32))
    with GradCAM(timm_vit, [timm_vit.blocks[-1].norm1], reshape_transform=reshape_transform) as cam:
        theirs = cam(inputs, targets=[ClassifierOutputTarget(TARGET)])[0]
    scaled = (ours - ours.min()) / (ours.max() - ours.min() + 1e-7)
    assert np.ptp(ours) > 0
    np.testing.assert_allclose(scaled, theirs, rtol=0, atol=1e-4)


def test_the_attention_methods_repeat_bit_for_bit(timm_vit, image):
    runs = [heatkit.explain(timm_vit, image, ["rollout", "chefer", "gradcam"], target=TARGET,
                            settings={"input_size": [SIDE, SIDE]}, progress=False) for _ in range(2)]
    assert sorted(runs[0].maps) == ["chefer", "gradcam", "rollout"]
    for key, values in runs[0].maps.items():
        assert values.tobytes() == runs[1].maps[key].tobytes(), key


def test_attention_methods_on_a_cnn_say_why_not():
    torch = frameworks.torch()
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    run = heatkit.explain(net, np.random.default_rng(0).random((8, 8, 3)), ["rollout", "chefer", "legrad"],
                          settings={"input_size": [8, 8]}, progress=False)
    skipped = run.result.skipped
    assert "computes no attention" in skipped["rollout"] and "computes no attention" in skipped["chefer"]
    assert "torchvision's and timm's VisionTransformer" in skipped["legrad"] and not run.maps


def test_legrad_equals_torchcams_on_a_torchvision_vit(image):
    """torchcam 0.5's LeGrad, every block a target, its unnormalized map upsampled as ours is."""
    torch = frameworks.torch()
    from torchcam.methods import LeGrad

    net, model = torchvision_vit(layers=3)
    ours = attention.legrad(model, image, TARGET, {"blocks": 0})
    last_two = attention.legrad(model, image, TARGET, {"blocks": 2})
    inputs = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32))
    for blocks, mine in [(list(net.encoder.layers), ours), (list(net.encoder.layers)[-2:], last_two)]:
        with LeGrad(net, blocks) as extractor:
            scores = net(inputs)
            theirs = extractor(TARGET, scores, normalized=False)[0][0].numpy()
        assert np.ptp(theirs) > 0
        np.testing.assert_allclose(mine, _layers.upsample(theirs, (SIDE, SIDE)), rtol=1e-4,
                                   atol=1e-6 * np.abs(theirs).max())
    assert np.abs(ours - last_two).max() > 1e-3 * np.abs(ours).max()


def test_legrad_on_a_timm_vit_reads_each_block_with_the_models_head(timm_vit, image):
    """Each block's tokens averaged, through timm's final norm and head; the class score's gradient
    at that block's attention, its positive part averaged over heads and queries, the class
    token's key dropped, averaged over the blocks: computed here on the forward pass by hand."""
    torch = frameworks.torch()
    model = heatkit.load_model(timm_vit, settings=PLAIN)
    inputs = torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32))
    tokens, maps, scores = timm_vit._pos_embed(timm_vit.patch_embed(inputs)), [], []
    for block in timm_vit.blocks:
        heads = block.attn.num_heads
        q, k, v = block.attn.qkv(block.norm1(tokens)).reshape(1, -1, 3, heads, tokens.shape[-1] // heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) / np.sqrt(tokens.shape[-1] // heads)).softmax(-1)
        tokens = tokens + block.attn.proj((weights @ v).transpose(1, 2).reshape(tokens.shape))
        tokens = tokens + block.mlp(block.norm2(tokens))
        maps.append(weights)
        scores.append(timm_vit.head(timm_vit.norm(tokens.mean(1)))[0, TARGET])
    positive = [torch.autograd.grad(score, weights, retain_graph=True)[0][0].clamp_min(0).mean((0, 1))[1:]
                for score, weights in zip(scores, maps)]
    expected = _layers.upsample(torch.stack(positive).mean(0).reshape(GRID, GRID).numpy(), (SIDE, SIDE))
    ours = attention.legrad(model, image, TARGET, {"blocks": 0})
    assert np.ptp(ours) > 0
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
