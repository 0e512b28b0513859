"""Settings of create_model.py and heatmap_script.py.

Edit a value here, or override it for one run:

    python heatmap_script.py --set sg.noise_scale=0.2 --set ig.steps=128

Global settings are plain names (`--set seed=3`); each method reads the dict named
after it (`--set lrp.epsilon=0.01`). Every value is checked against its rule in
core/config.py (globals) or methods/registry.py (method dicts) before a run starts.
"""

# ---- The center-pixel model (create_model.py) -------------------------------------
image_size = 227  # side of the square grayscale input; odd, so that one pixel is the center
num_classes = 256  # class j is the gray level j / (num_classes - 1): 256 gives the 8-bit value
model_path = "models/center_pixel.h5"  # default -mp; the PyTorch twin is the same stem with .pt

center_pixel = dict(
    alpha=10.0,  # confidence: logit_j = alpha * (2*p*j - j^2) + (terms equal for every class)
    relu=True,  # a ReLU after the Dense layer; a positive bias keeps it from ever clipping
    weight_seed=0,  # seed of the random non-center weights
    noise_weight_scale=1.0,  # std of the non-center weights, in units of alpha * 255^2
    verify_per_class=10,  # verification images per class (10 x 256 = 2,560)
    verify_seed=1,  # seed of the verification images
)

# ---- Runs (heatmap_script.py) ------------------------------------------------------
seed = 0  # seed of the random input image used when no -ip is given (--seed overrides)
out_path = "results"  # default -op
backend = "keras"  # framework that runs the gradient family: keras (innvestigate)

figure = dict(
    crop=5,  # side of the center crop shown in row 2 and used by crop_share; odd
    column_width=2.1,  # inches per panel column
    dpi=120,
    cmap="RdBu_r",  # diverging blue-white-red, symmetric about 0
    top_k=5,  # classes listed in the right margin
)

# ---- Methods: one dict per method key, read by that method only --------------------
# sg: SmoothGrad (Smilkov et al. 2017): the mean gradient over noisy copies of the input.
sg = dict(
    augment_by_n=64,  # number of noisy copies
    noise_scale=0.1,  # noise std as a fraction of the input's range (max - min), as in the paper
    postprocess=None,  # None, "abs" or "square" (SmoothGrad-Squared), applied to each gradient
    seed=0,  # seed of the noise
)

# ig: Integrated Gradients (Sundararajan et al. 2017), innvestigate's path rule:
# the mean gradient at `steps` points evenly spaced from the reference to the input, both ends included.
ig = dict(
    reference=0.0,  # the reference image's value at every pixel (0.0 is black)
    steps=64,  # points on the path
)

# lrp: Layer-wise Relevance Propagation (Bach et al. 2015). Of the four rules only lrp.epsilon
# has a setting; lrp.z, lrp.alpha1beta0 and lrp.alpha2beta1 have none.
lrp = dict(
    epsilon=1e-7,  # stabilizer of lrp.epsilon: z + epsilon * sign(z) in each denominator
)
