"""AttnLRP's and CP-LRP's relevance on a small torchvision ViT, as lxt 2.1 (the AttnLRP authors'
package) computes them: its efficient rules patched into torchvision's classes, gradient x input.
Run in a process of its own, since the patches change torch.nn's classes for the whole process:

    python tests/lxt_reference.py OUT.npz

writes, for the image and class of tiny_vit_case(), "cp" (lxt's own map for torchvision's ViT:
GELU and LayerNorm by the identity rule, the attention weights constant) and "attnlrp" (the same
with the attention written out as lxt's wrapper for attention functions does: the query's and
key's gradients divided by 4, the value's by 2).

lxt's package __init__ imports the patches of its language models, which import transformers,
installed without (make install puts lxt in without its dependencies); the modules the vision
transformer needs import none of it, and are loaded here on their own.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np

SIDE = 32


def tiny_vit_case():
    """(a seeded torchvision ViT of 2 blocks at 32 x 32, float32, an image of its input, a class)."""
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(image_size=SIDE, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                            num_classes=5).eval()
    with torch.no_grad():
        net.heads.head.weight.normal_(0, 0.5)  # torchvision starts its head at zero
    return net, np.random.default_rng(0).standard_normal((SIDE, SIDE, 3)), 3


def lxt_modules():
    """lxt.efficient's rules, patches and torchvision ViT map, without the package's __init__."""
    root = Path(importlib.util.find_spec("lxt").origin).parent
    for name, folder in {"lxt": root, "lxt.efficient": root / "efficient",
                         "lxt.efficient.models": root / "efficient" / "models"}.items():
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    return (importlib.import_module("lxt.efficient.rules"), importlib.import_module("lxt.efficient.patches"),
            importlib.import_module("lxt.efficient.models.vit_torch"))


def attnlrp_attention(rules):
    """nn.MultiheadAttention's batch-first self-attention written out, with lxt's AttnLRP wrapper's
    gradient divisions on the query, key and value."""
    import torch.nn.functional as F

    def forward(self, query, key, value, need_weights=False, **kwargs):
        batch, tokens, width = query.shape
        q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).reshape(
            batch, tokens, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = rules.divide_gradient(q, 4), rules.divide_gradient(k, 4), rules.divide_gradient(v, 2)
        weights = (q @ k.transpose(-2, -1) / math.sqrt(width // self.num_heads)).softmax(-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(batch, tokens, width)), None
    return forward


def relevance(net, image, target):
    import torch

    inputs = torch.tensor(image.transpose(2, 0, 1)[None], dtype=torch.float32, requires_grad=True)
    net(inputs)[0, target].backward()
    return (inputs * inputs.grad)[0].sum(0).detach().numpy()


def main(out: str) -> None:
    import torch

    rules, patches, vit_torch = lxt_modules()
    net, image, target = tiny_vit_case()
    for cls, patch in vit_torch.cp_LRP.items():
        patch(cls)
    maps = {"cp": relevance(net, image, target)}
    torch.nn.MultiheadAttention.forward = attnlrp_attention(rules)  # this process ends here
    maps["attnlrp"] = relevance(net, image, target)
    np.savez(out, **maps)


if __name__ == "__main__":
    main(sys.argv[1])
