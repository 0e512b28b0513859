# %% [markdown]
# # heatkit in a PyTorch notebook
#
# A torchvision ResNet-50, a batch of images as tensors, four methods, and the maps back as one
# tensor each. Run it cell by cell (VS Code and Jupyter read the `# %%` markers), or whole:
# `python examples/notebook_torch.py`. It downloads nothing: give your own weights to
# `load_state_dict` where the comment says.

# %%
import numpy as np
import torch
import torchvision
from PIL import Image

import heatkit

SIDE = 224
net = torchvision.models.resnet50().eval()
# net.load_state_dict(torch.load("resnet50.pth", weights_only=True))  # your weights

# %% [markdown]
# The images as the model takes them: pixels in [0, 1], normalised by ImageNet's mean and std,
# NCHW. heatkit takes tensors as they are (already preprocessed, as captum does); numpy arrays
# and image files are pixels, which it preprocesses as torchvision's models expect.

# %%
mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
photos = [Image.open(f"images/{name}.png").convert("RGB").resize((SIDE, SIDE)) for name in ("chelsea", "astronaut")]
pixels = torch.stack([torch.from_numpy(np.asarray(photo) / 255.0).permute(2, 0, 1).float() for photo in photos])
inputs = (pixels - mean) / std

# %% [markdown]
# Explain each image's predicted class (or give `target=torch.tensor([...])`, one per image).
# The run says what it will cost first; occlusion's window is sized to the input.

# %%
run = heatkit.explain(net, inputs, ["grad", "gradcam", "ig", "occlusion"], settings={"ig.steps": 32})
saliency = run.stack("grad", as_tensors=True)  # (2, 224, 224), as captum's Saliency(net).attribute(inputs).sum(1)
print(saliency.shape, [run.class_names[item.results[0].target] for item in run.items])

# %% [markdown]
# The figure (each map over its photo), the scores, and the folder with report.html.

# %%
figure = run.figure()  # a notebook shows it
print(run.summary())
folder = run.save("results")
print(folder / "report.html")
