"""Attention found from the graph, where no attention class is known: Swin's shifted windows in
torchvision and timm (each window's weights placed on the grid as the block's own code partitions
it, checked by recomputing the block's output from them), and a hand-written module that calls
F.scaled_dot_product_attention; rollout and Chefer et al.'s method there against a slow, obvious
re-implementation with dense token-to-token matrices."""
import numpy as np
import pytest

import heatkit
from heatkit.base import frameworks
from heatkit.methods import _attention, _layers, attention

PLAIN = {"preprocess.mean": [0, 0, 0], "preprocess.std": [1, 1, 1], "faithfulness.curves": False}


def torchvision_swin():
    from torchvision.models.swin_transformer import SwinTransformer

    frameworks.torch().manual_seed(0)
    return SwinTransformer([4, 4], 16, [2, 2], [2, 2], [4, 4], num_classes=6).eval()


def timm_swin():
    import timm

    frameworks.torch().manual_seed(0)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=40, window_size=4,
                             embed_dim=16, depths=(2, 2), num_heads=(2, 2), num_classes=6).eval()


def attention_sites(net):
    """Per attention call: the module computing q, k, v and the output projection, and where its
    input and its output (before the residual) are read."""
    from timm.models.swin_transformer import SwinTransformerBlock
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    sites = []
    for module in net.modules():
        if isinstance(module, ShiftedWindowAttention):
            sites.append((module, module, module))
        elif isinstance(module, SwinTransformerBlock):
            sites.append((module.attn, module.norm1, module.drop_path1))
    return sites


@pytest.mark.parametrize("build, side", [(torchvision_swin, 32), (torchvision_swin, 40), (timm_swin, 40)],
                         ids=["torchvision", "torchvision-padded", "timm-padded"])
def test_each_windows_weights_recompute_the_blocks_output_on_the_grid(build, side):
    """Placed on the grid, every call's window weights times the values of all tokens (a padding
    position's value is its projection of zeros, the bias) give the block's attention output at
    every token: the shift, the padding and the partition order are the block's own."""
    torch = frameworks.torch()
    net = build()
    model = heatkit.load_model(net, settings={**PLAIN, "input_size": [side, side]})
    inputs, outputs = [], []
    hooks = []
    for _, entry, exit_ in attention_sites(net):
        hooks.append(entry.register_forward_hook(lambda m, args, out: inputs.append(out)) if entry is not exit_
                     else entry.register_forward_hook(lambda m, args, out: inputs.append(args[0])))
        hooks.append(exit_.register_forward_hook(lambda m, args, out: outputs.append(out)))
    image = np.random.default_rng(0).random((side, side, 3))
    recorded = _attention.record(model, image, None)
    for hook in hooks:
        hook.remove()
    sites = attention_sites(net)
    inputs, outputs = inputs[:len(sites)], outputs[:len(sites)]  # the recorded pass, before the token grid's
    assert len(recorded.calls) == len(sites) == 4
    assert any(np.any(call.tokens < 0) for call in recorded.calls) == (side == 40)
    for call, (module, _, _), x, y in zip(recorded.calls, sites, inputs, outputs):
        height, width, channels = x.shape[1:]
        assert call.grid == (height, width)
        heads = call.weights.shape[1]
        tokens = height * width
        dense = np.zeros((heads, tokens + 1, tokens + 1))  # the last row and column: padding
        for window, index in zip(call.weights, call.tokens):
            np.add.at(dense, (slice(None), index[:, None], index[None, :]), window)
        qkv = module.qkv(torch.cat([x.reshape(tokens, channels), torch.zeros(1, channels)]))
        values = qkv[:, 2 * channels:].reshape(tokens + 1, heads, -1).transpose(0, 1).detach().numpy()
        mixed = np.einsum("hij,hjd->ihd", dense, values).reshape(tokens + 1, channels)[:tokens]
        expected = module.proj(torch.from_numpy(mixed).float()).detach().numpy()
        np.testing.assert_allclose(expected, y.reshape(tokens, channels).detach().numpy(), rtol=1e-4, atol=1e-5)


def dense_product(recorded, step, prefix_row: bool):
    """The slow, obvious rollout: each call a dense (tokens x tokens) matrix, each patch merging a
    dense matrix of quarters, multiplied first to last; the readout row of the product."""
    grid, product = recorded.grid, None
    for call in recorded.calls:
        if call.grid != grid:
            merge = np.zeros((call.grid[0] * call.grid[1], grid[0] * grid[1]))
            for i in range(grid[0]):
                for j in range(grid[1]):
                    merge[(i // 2) * call.grid[1] + j // 2, i * grid[1] + j] = 1
            product, grid = (merge / merge.sum(1, keepdims=True)) @ product, call.grid
        tokens = recorded.prefix + grid[0] * grid[1]
        dense = np.eye(tokens + 1)
        matrices = step(call)
        for index in call.tokens:
            dense[index] = 0
        for matrix, index in zip(matrices, call.tokens):
            np.add.at(dense, (index[:, None], index[None, :]), matrix)
        dense = dense[:tokens, :tokens]
        product = dense if product is None else dense @ product
    return product[0] if prefix_row else product.mean(0)


@pytest.mark.parametrize("build", [torchvision_swin, timm_swin], ids=["torchvision", "timm"])
def test_rollout_and_chefer_on_swin_equal_the_dense_products(build):
    net = build()
    side = 40
    model = heatkit.load_model(net, settings={**PLAIN, "input_size": [side, side]})
    image = np.random.default_rng(1).random((side, side, 3))
    target = int(np.argmax(model.logits(image[None])[0]))
    recorded = _attention.record(model, image, target)
    assert recorded.prefix == 0 and recorded.grid == (10, 10) and recorded.calls[-1].grid == (5, 5)

    def mixed(call):
        fused = 0.5 * call.weights.mean(1) + 0.5 * np.eye(call.weights.shape[-1])
        return fused / fused.sum(-1, keepdims=True)

    def weighted(call):
        return np.eye(call.weights.shape[-1]) + np.maximum(call.gradients * call.weights, 0).mean(1)

    for method, step in [(attention.rollout, mixed), (attention.gradient_weighted, weighted)]:
        ours = method(model, image, target, {"head_fusion": "mean"})
        expected = _layers.upsample(dense_product(recorded, step, False).reshape(10, 10), (side, side))
        assert np.ptp(ours) > 0
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max())


def test_attention_a_module_writes_with_scaled_dot_product_attention_is_found():
    """No attention class, one F.scaled_dot_product_attention over a convolution's tokens and a
    class token of its own: the weights are softmax(q k^T / sqrt(d)), as computed here."""
    torch = frameworks.torch()
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.qkv, self.head = nn.Conv2d(3, 8, 4, stride=4), nn.Linear(8, 24), nn.Linear(8, 3)
            self.cls = nn.Parameter(torch.randn(1, 1, 8))

        def tokens(self, x):
            return torch.cat([self.cls.expand(len(x), 1, 8), self.embed(x).flatten(2).transpose(1, 2)], 1)

        def forward(self, x):
            tokens = self.tokens(x)
            q, k, v = self.qkv(tokens).reshape(len(x), -1, 3, 2, 4).permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(len(x), -1, 8)
            return self.head((tokens + attended)[:, 0])

    torch.manual_seed(0)
    net = Net().eval()
    model = heatkit.load_model(net, settings={**PLAIN, "input_size": [16, 16]})
    image = np.random.default_rng(2).random((16, 16, 3))
    recorded = _attention.record(model, image, 1)
    q, k, _ = net.qkv(net.tokens(torch.from_numpy(image.transpose(2, 0, 1)[None]).float())).reshape(
        1, -1, 3, 2, 4).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) / 2).softmax(-1)[0].detach().numpy()
    assert recorded.prefix == 1 and recorded.grid == (4, 4) and len(recorded.calls) == 1
    np.testing.assert_allclose(recorded.calls[0].weights[0], weights, rtol=1e-5, atol=1e-7)
    flow = 0.5 * weights.mean(0) + 0.5 * np.eye(17)
    expected = _layers.upsample((flow / flow.sum(1, keepdims=True))[0, 1:].reshape(4, 4), (16, 16))
    np.testing.assert_allclose(attention.rollout(model, image, 1, {"head_fusion": "mean"}), expected, rtol=1e-5)
