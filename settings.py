"""Settings of create_model.py, heatmap_script.py and heatkit's Python API.

Edit a value here, or override it for one run:

    python heatmap_script.py --set sg.noise_scale=0.2 --set ig.steps=128
    heatkit.explain(..., settings={"sg.noise_scale": 0.2})

Global settings are plain names (`--set seed=3`); each method reads its dict (`--set
lrp.epsilon=0.01`). Every value is checked against its rule before a run starts: the global
ones' in heatkit/pipeline/config.py, each method dict's in the module of its method, where its
defaults and meaning are declared too (the method dicts below are generated from there).
"""

# ---- The center-pixel model (create_model.py) -------------------------------------
image_size = 227  # side of the square grayscale input; odd, so that one pixel is the center
num_classes = 256  # class j is the gray level j / (num_classes - 1): 256 gives the 8-bit value
model_path = "models/center_pixel.h5"  # default -mp; the PyTorch twin is the same stem with .pt
weights = None  # the weights of a model given as code (net.py:factory) or by name (torchvision:resnet50); --weights
custom_objects = None  # a Python file defining a Keras model's custom layers (its code runs); --custom-objects

center_pixel = dict(
    alpha=10.0,  # confidence: logit_j = alpha * (2*p*j - j^2) + (terms equal for every class)
    relu=True,  # a ReLU after the Dense layer; a positive bias keeps it from ever clipping
    weight_seed=0,  # seed of the random non-center weights
    noise_weight_scale=1.0,  # std of the non-center weights, in units of alpha * 255^2
    verify_per_class=10,  # verification images per class (10 x 256 = 2,560)
    verify_seed=1,  # seed of the verification images
    # the region model (create_model.py --model region): the class is set by the mean of a square of
    # this side, centered a quarter of the way down and across the image, instead of the center pixel
    region_side=5,
    # the two-pixel models (--model two_pixels_and, two_pixels_xor): logit_1 - logit_0 = k (rule - 1/2)
    two_pixels_sharpness=40.0,
)

# The digits CNN (create_model.py --model digits): trained on scikit-learn's 8 x 8 digits.
digits = dict(
    image_size=32,  # the digits are upsampled (bilinear) to this side
    channels=16,  # filters of conv1; conv2 and conv3 have twice as many
    epochs=30,
    batch_size=32,
    learning_rate=0.01,  # the peak, annealed to zero by a cosine over the epochs
    held_out=0.2,  # share of the digits kept out of training, for the accuracy check
    min_accuracy=0.95,  # the build fails below this held-out accuracy
    seed=0,  # initializers, the split and the batch order
)

# ---- Runs (heatmap_script.py) ------------------------------------------------------
seed = 0  # seed of the random input image used when no -ip is given (--seed overrides)
max_image_pixels = 50_000_000  # larger images are refused before they are decoded (decompression bombs)
# An image of -ip that cannot be read refuses the run (False), or is skipped with a note (True);
# --skip-bad-images. The dataset mode always keeps going: a bad image is a row with its error.
skip_bad_images = False
# [height, width] of the input of a PyTorch model that does not fix it (a fully convolutional
# net); None: probed, the first side of 224, 227, 32, 28, 64, 128, 256, 299 that runs. Keras
# models and create_model.py's twins declare theirs. --input-size
input_size = None
# The classifier's element of a PyTorch model that returns several outputs: an index of a tuple
# (0) or a key of a dict ("logits"); None: the first tensor of a tuple, a dict's "logits" or
# first tensor. run.json records which.
output = None
out_path = "results"  # default -op
# Framework of the gradient family: keras (innvestigate), torch (captum), or auto: Keras where the
# model has a Keras version, else PyTorch; --backend
backend = "auto"
# Framework behind probabilities (perturbation methods, the predicted class): "auto" takes the
# PyTorch twin where the model has one (1.7x faster for PDA on a CPU; verified equal to 1e-9 when built).
evaluate_with = "auto"

device = "auto"  # where the PyTorch path runs: cpu, cuda, or auto (cuda when available); --device
# Seconds the dataset mode waits for a Dask scheduler (--scheduler) to answer before it gives up
scheduler_timeout = 60

# How image pixels in [0, 1] become the model's input (--preprocess sets these for a named scheme).
# Every reference, baseline and fill below (ig.reference, occlusion.fill, faithfulness.fill, ...)
# is a pixel of the image as you see it, 0 black and 1 white, or "mean" (the mean color given here,
# mid-gray without one): a run converts it to the model's input once and records both in run.json.
preprocess = dict(
    range="unit",  # "unit": [0, 1]; "byte": [0, 255]
    mean=None,  # per-channel mean subtracted after scaling, e.g. [0.485, 0.456, 0.406]; None: none
    std=None,  # per-channel std divided by after that, e.g. [0.229, 0.224, 0.225]; None: none
    # an image of another aspect than the model's input: "squash" resizes it to the input, distorted;
    # "center_crop" resizes it to cover the input and keeps the center, as torchvision's transforms do
    resize="squash",
    # a resize that changes an image's aspect ratio, or enlarges it, by more than this factor says
    # so in a note (a 1 x 5000 strip, or a 1 x 1 image, made 227 x 227)
    max_stretch=4.0,
    channel_order="rgb",  # "bgr": the channels reversed first (keras.applications' "caffe" models)
)

# The perturbation engine that every perturbation and sampling method evaluates through.
perturbation = dict(
    fast=True,  # exact incremental evaluation where the first layer is affine (False: full passes)
    memory_mb=1024,  # bound on what one chunk of perturbed inputs may allocate
    max_fast_fraction=0.5,  # edits that change more of the input than this take full passes
    # the windowed path (convolutional networks) is taken where a window's change costs this many
    # times fewer multiply-adds than a full pass; below, full passes are faster. 0: wherever it applies
    min_flop_ratio=1.1,
    # 0: the windowed path is exact. Krypton's approximate mode (opt-in), a fraction in (0, 1]: each
    # convolution and pooling recomputes at most this fraction of its output's side around the
    # change, dropping the rest of it: faster, not exact (bench/windowed.py reports its error)
    approximate=0.0,
    workers=0,  # threads for the fast path's chunks; 0: one per CPU core
    # a method whose model evaluations, timed as they start, will take longer than this says so
    # first, with the settings that make it cheaper; 0: never
    warn_seconds=120,
    # what occlusion, Shapley, LIME, KernelSHAP and RISE see change: the explained class's
    # "probability", or its "logit" (as captum lets the forward function return either), which
    # still moves where a confident model's probability is 1.0 to float32's precision. PDA and the
    # metrics grade probabilities whatever this says.
    output="probability",
)

figure = dict(
    crop=5,  # side of the center crop shown in row 2 and used by crop_share; odd
    # the row of center crops: "auto" shows it where the model declares a ground truth about its
    # center (the center-pixel models), True always, False never
    crop_row="auto",
    # "auto": maps with both signs on the diverging colormap, symmetric about 0; maps of one sign
    # over their own range (white to red, or blue to white); "symmetric": every map about 0
    scale="auto",
    column_width=2.1,  # inches per panel column
    maps_per_row=8,  # maps in one row of the figure before it wraps; 0: all in one row
    dpi=120,
    cmap="RdBu_r",  # diverging blue-white-red, symmetric about 0
    top_k=5,  # classes listed in the right margin
    # each full map drawn over the photo in gray, as opaque as the map is strong: "auto" on models that
    # declare no ground truth (photos), True, False; the raw maps are in heatmaps.npz either way
    overlay="auto",
    overlay_alpha=0.6,  # the opacity of the map's strongest pixels
    max_images=8,  # up to this many images share one figure (a row pair each); more get one figure each
)

# Faithfulness curves of every map (heatkit/metrics/curves.py): the explained class's
# probability as the map's top-ranked regions are deleted (set to the baseline), or inserted into
# the baseline image, step by step; and MoRF AOPC. A seeded random ranking is scored beside them.
faithfulness = dict(
    # "auto": the curves (and the metrics that evaluate the model) where they cost no more model passes
    # than the maps, or the model's first layer is affine; True, False: always, never (--curves,
    # --no-curves). Heatmap runs only: experiments never draw them
    curves="auto",
    patch=1,  # side of the square regions ranked and switched together; 1: pixels
    regions_per_step=0,  # regions switched per step; 0: 1% of them (about 100 steps)
    ranking="signed",  # "signed": largest attribution first; "absolute": largest magnitude first
    baseline="constant",  # "constant" (fill), "blur" (Gaussian, blur_sigma) or "mean" (the image's, per channel)
    fill=0.0,  # the constant baseline's pixels: 0 black, 1 white, "mean"
    blur_sigma=5.0,  # pixels
    random_draws=5,  # random rankings scored beside the maps (mean and standard deviation)
    seed=0,
)

# Which metric can be believed (heatmap_script.py --evaluate-metrics): every method on known-answer
# models, each metric's ranking of the methods against the ground truth's (Kendall's tau).
evaluate_metrics = dict(
    # known-answer models, built at image_size for the evaluation
    models=["center_pixel", "region", "two_pixels_and", "two_pixels_xor"],
    image_size=31,  # their side (odd); the 227 x 227 models cost about 50 times more
    images=4,  # images a model and seed, each with a random true class
    seeds=[0, 1],  # each seeds the images and every method's draws
    resamples=1000,  # bootstrap resamples of a mean tau's interval
    noisy_copies=10,  # draws for the robustness metrics and Monotonicity here (their `samples` elsewhere)
)

# ---- Experiments (heatmap_script.py --sanity, --growing-patch, --sweep) ---------------
# Sanity checks (Adebayo et al. 2018): re-initialize layers (--sanity cascading / independent)
# or add Gaussian noise to every weight (--sanity noise), then recompute the maps.
sanity = dict(
    # a step re-initializes a "block" (as Adebayo et al. do: a ResNet's layer1.0, a BatchNorm with
    # its block; 10 steps on a ResNet-18) or a "layer" (every weighted module: 41 on a ResNet-18)
    steps="block",
    initializer="layer",  # "layer": each layer's own initializers, seeded; or "truncated_normal"
    std=0.01,  # standard deviation of the truncated normal
    noise_levels=[0.1, 0.5, 1.0, 2.0],  # noise std, relative to each weight array's std
    seed=0,
)

# The growing patch (Bansal et al. 2020): a square of `fill` grows over `sizes` at `position`.
growing_patch = dict(
    # sides in pixels; None: a pixel, then 2.2%, 4.8%, 9.3%, 18% and 35.7% of the input's smaller
    # side (on 227 x 227: 1, 5, 11, 21, 41, 81)
    sizes=None,
    position=None,  # [row, column] of the patch's top-left pixel; None: the top-left corner
    fill=0.5,  # gray, in [0, 1] before preprocessing
)

# ---- Methods: one dict per method, generated from the methods' modules by `python -m heatkit.generated` ----
# sg: SmoothGrad (Smilkov et al. 2017): the mean gradient over noisy copies of the input, or
# captum's NoiseTunnel variants of it.
sg = dict(
    augment_by_n=64,  # number of noisy copies
    noise_scale=0.1,  # noise std as a fraction of the input's range (max - min), as in the paper
    # the copies' gradients' mean ("smoothgrad"), mean absolute value ("smoothgrad_abs"), mean
    # square ("smoothgrad_sq", SmoothGrad-Squared) or variance ("vargrad", Adebayo et al. 2018),
    # channels then summed
    type='smoothgrad',
    seed=0,  # seed of the noise
)

# ig: Integrated Gradients (Sundararajan et al. 2017): (x - reference) times the path integral of
# the gradient, by a quadrature rule that both backends apply alike (captum's names).
ig = dict(
    # the reference image's pixels: 0 black, 1 white, "mean" the preprocessing's mean color
    # (converted to the model's input)
    reference=0.0,
    steps=64,  # points on the path
    # gausslegendre (captum's default) or riemann_left/right/middle/trapezoid; captum's
    # riemann_trapezoid weights sum to 1 - 1/steps, which breaks completeness by 1/steps
    rule='gausslegendre',
)

# gradshap: GradientSHAP (Lundberg & Lee 2017, captum's GradientShap): the mean of (input -
# baseline) times the gradient at a random point between them, over random baselines and noisy
# copies of the input.
gradshap = dict(
    samples=64,  # gradients averaged (captum's n_samples)
    # "uniform": images uniform over the input's range; "reference": the constant image `reference`
    baselines='uniform',
    num_baselines=16,  # images in the baselines' set, for baselines "uniform"
    # the constant baseline's pixels, for baselines "reference": 0 black, 1 white, "mean" the
    # preprocessing's mean color
    reference=0.0,
    # std of the noise added to the input, as a fraction of its range (captum's stdevs, relative)
    noise_scale=0.0,
    seed=0,  # seed of every draw
)

# deeplift: DeepLIFT (Shrikumar et al. 2017), Rescale rule, explaining the logit.
deeplift = dict(
    # the baseline image's pixels: 0 black, 1 white, "mean" the preprocessing's mean color
    # (converted to the model's input)
    baseline=0.0,
)

# gradcam: the conv layers the CAM family explains (Grad-CAM, Selvaraju et al. 2017, and its
# variants, Score-CAM, Ablation-CAM, Eigen-CAM, Guided Grad-CAM), by their Keras names or PyTorch
# module paths; several give one map each. CAM (Zhou et al. 2016) always uses the layer before the
# global average pooling.
gradcam = dict(
    layers=None,  # None: the last conv layer; or a list, e.g. ["conv2", "conv3"]
)

# lrp: Layer-wise Relevance Propagation (Bach et al. 2015), its rules and its composites
# (lrp_composites.py); lrp.z reads lrp.attention alone.
lrp = dict(
    # stabilizer of lrp.epsilon and of the composites' linear layers: z + epsilon * sign(z) in each
    # denominator
    epsilon=1e-07,
    gamma=0.25,  # the gamma rule's extra weight of positive contributions (lrp.epsilon_gamma_box)
    # the attention softmax, where lrp.z and lrp.epsilon take AttnLRP's rules (a model with
    # LayerNorm, attention, gates or smooth activations): "attnlrp", its gradient (Achtibat et al.
    # 2024), or "cp", the attention weights held constant (CP-LRP, Ali et al. 2022)
    attention='attnlrp',
    # where the alpha-beta rules put a layer's bias b: "split", as Bach et al. 2015 define them (b+
    # in the positive denominator z+, b- in z-), or "whole", as innvestigate 2.1.2 computes them
    # (all of b in both z+ and z-)
    alpha_beta_bias='split',
)

# rollout: attention rollout (Abnar & Zuidema 2020) on a vision transformer.
rollout = dict(
    head_fusion='mean',  # how a block's heads are fused: the paper's mean, or their max or min
)

# legrad: LeGrad (Bousselham et al. 2024) on a vision transformer.
legrad = dict(
    blocks=0,  # how many of the last blocks' maps are averaged; 0 for all of them
)

# occlusion: Zeiler & Fergus 2014. A pixel's relevance is the drop of the explained class's
# probability when a patch covering it is set to `fill`, averaged over the patches covering it; or,
# with a mask, when its region is.
occlusion = dict(
    # side of the square patch, in pixels (1: every pixel alone); None: every pixel alone on a model
    # whose first layer is affine, else 16 at 224 x 224, the same share of other sizes
    patch=None,
    # step between patch positions (the last row and column of patches are always included); None:
    # half the patch
    stride=None,
    fill=0.0,  # the pixels a patch is set to: 0 black, 1 white, "mean"
    # None: the sliding patches above; or regions filled one at a time, "pixels", "patch:N" (a grid
    # of N x N squares) or "superpixels" (SLIC)
    mask=None,
)

# pda: Prediction Difference Analysis (Zintgraf et al. 2017). A window of the input is replaced by
# draws from a prior; relevance = log2-odds(p'(c | x)) - log2-odds(mean over draws of p'(c | x with
# the window replaced)), with the Laplace correction p' = (p * N + 1) / (N + K); a pixel gets the
# mean over the windows that hold it. Zintgraf et al. use windows of several pixels and the data's
# marginal (a folder of images here); the default, single pixels and a uniform prior over the 8-bit
# levels, is exact on the center-pixel models, whose classes are those levels.
pda = dict(
    train_samples=256000,  # N of the Laplace correction
    levels=256,  # uniform prior, window 1: gray values tried at each input element (256: every 8-bit value)
    window=1,  # side of the square window, in pixels
    # "uniform" (8-bit levels), "image" (windows from random positions of the image itself), or a
    # folder of images (the same window from random images in it)
    prior='uniform',
    samples=10,  # draws per window, except for the uniform prior with window 1, which tries every level
    seed=0,  # seed of the draws
)

# shapley: Shapley value sampling (Castro et al. 2009; Strumbelj & Kononenko 2010): the mean change
# of the probability when a feature is switched from the baseline to the input, over random orders
# of all features.
shapley = dict(
    samples=25,  # random permutations (captum's ShapleyValueSampling default)
    baseline=0.0,  # a pixel before it is switched to the input's: 0 black, 1 white, "mean"
    # the features: "pixels" (each with its channels), "patch:N" (a grid of N x N squares) or
    # "superpixels" (SLIC)
    mask='pixels',
    seed=0,
)

# lime: LIME (Ribeiro et al. 2016) from the lime package on quickshift superpixels. The map paints
# each superpixel with its signed weight for the explained class.
lime = dict(
    # quickshift's; None: scaled to the input, 4 (lime's own, for 224 x 224) times its side / 224,
    # at least 1 (4 on a 32 x 32 digit made 2 superpixels; 1 makes 12)
    kernel_size=None,
    max_dist=200,  # quickshift
    ratio=0.2,  # quickshift
    num_samples=1000,  # perturbed samples
    # the pixels of a hidden superpixel: 0 black, 1 white, "mean"; None hides it with its own mean
    # color
    hide_color=0.0,
    num_features=1000,  # superpixels given a weight, strongest first; the rest are 0
    seed=0,  # seeds the segmentation and lime's sampler
)

# shap: KernelSHAP (Lundberg & Lee 2017) from the shap package over SLIC superpixels or square
# patches, explaining the explained class's probability.
shap = dict(
    # the features: "superpixels" (SLIC, the three settings below) or "patch:N" (N x N squares)
    mask='superpixels',
    n_segments=50,  # SLIC
    compactness=0.1,  # SLIC (gray values in [0, 1])
    sigma=1.0,  # SLIC pre-smoothing
    nsamples=1000,  # coalitions evaluated
    background=0.0,  # the pixels of a superpixel left out: 0 black, 1 white, "mean"
    l1_reg=0,  # shap's feature selection; 0 estimates every superpixel
    seed=0,  # shap samples with numpy's global generator: seeded for the call, then restored
)

# rise: RISE (Petsiuk et al. 2018): the mean of random smooth masks weighted by the class
# probability of the input multiplied by each mask.
rise = dict(
    num_masks=4000,
    cell_size=7,  # grid cells per side of the low-resolution mask (s in the paper)
    keep_probability=0.5,
    batch_size=256,  # masked images per forward pass at most (the memory budget may lower it)
    seed=0,
)

# mp: Meaningful Perturbation (Fong & Vedaldi 2017) on the PyTorch twin. A low-resolution mask m,
# upsampled to the image, keeps the image where m = 1 and shows a blurred copy where m = 0; it is
# optimized to lower the explained class's probability with a small, smooth deletion: loss =
# l1_coeff * mean|1 - m| + tv_coeff * TV_beta(m) + p(class). The map is 1 - m.
mp = dict(
    mask_size=29,  # mask cells per side; odd, so that one cell is centered on the center pixel
    blur_sigma=10.0,  # Gaussian blur of the deletion image, in pixels of the input
    l1_coeff=0.01,
    tv_coeff=0.2,
    tv_beta=3.0,  # exponent of the total-variation term
    learning_rate=0.1,
    iterations=300,
    optimizer='adam',  # adam or sgd
    mask_init='ones',  # ones (nothing deleted) or random (seeded uniform)
    noise=0.0,  # std of seeded Gaussian noise added to the perturbed image at each step
    seed=0,
)

# ---- Metrics: one dict per family, generated from the metrics' modules ----
# Faithfulness Correlation (Bhatt et al. 2020): random pixel subsets set to a baseline, their map
# sums against the probability drops.
faithfulness_correlation = dict(
    runs=100,  # random subsets
    subset=224,  # pixels in a subset (at most all but one)
    baseline='black',  # what a subset becomes: the input's smallest value (Quantus's 'black'), its mean, or 0
    seed=0,
)

# Monotonicity (Nguyen & Martínez 2020): each pixel alone set to random values, the probability's
# mean squared change against |a|.
monotonicity = dict(
    samples=0,  # values a pixel takes, each an evaluation; 0 leaves the metric out (Quantus's default is 100)
    seed=0,
)

# ROAD (Rong et al. 2022): the most relevant pixels removed and filled by noisy linear imputation, a
# growing share at a time.
road = dict(
    # shares of the pixels removed, in percent, each an imputation and an evaluation; None leaves
    # the metric out (Quantus: 1, 3, ..., 99)
    percentages=None,
    noise=0.01,  # std of the noise added to the imputed values
    seed=0,
)

# Sufficiency (Dasgupta et al. 2022): images with alike maps should be predicted alike.
sufficiency = dict(
    threshold=0.6,  # alike: at most this share of the largest distance between the maps
)

# Max- and Avg-Sensitivity (Yeh et al. 2019): the method recomputed on noisy copies of the input.
sensitivity = dict(
    samples=0,  # noisy copies, each a map; 0 leaves both metrics out
    radius=0.2,  # noise drawn uniformly in [-radius, radius], in the model's input scale
    seed=0,
)

# Local Lipschitz Estimate (Alvarez-Melis & Jaakkola 2018): the method recomputed on noisy copies of
# the input.
lipschitz = dict(
    samples=0,  # noisy copies, each a map; 0 leaves the metric out
    std=0.1,  # Gaussian noise's standard deviation, in the model's input scale
    seed=0,
)

# Random Logit (Sixt et al. 2020): each map recomputed for a random other class.
random_logit = dict(
    enabled=False,  # recompute each map for another class (a map more each)
    seed=0,
)

# The Model Parameter Randomisation Test (Adebayo et al. 2018), scored by --sanity cascading.
mprt = dict(
    # how alike the original and the randomized model's maps are: Spearman's correlation of |a|
    # (Quantus's), of a, or SSIM
    similarity='spearman_abs',
)

# Completeness (Sundararajan et al. 2017): the map's sum against the explained logit's change from a
# baseline.
completeness = dict(
    # the baseline input: 0 everywhere (IG's default reference) or the input's smallest value
    # (Quantus's 'black')
    baseline='zero',
)

# Non-Sensitivity (Nguyen & Martínez 2020): pixels that change nothing must get nothing, and the
# others something.
non_sensitivity = dict(
    # set each pixel to the baseline alone (an evaluation a pixel: 50,176 ResNet passes at 224 x
    # 224)
    enabled=False,
    baseline='black',  # what a pixel is set to: the input's smallest value (Quantus's 'black') or 0
    eps=1e-05,  # below this a probability change, or a share of the largest |value|, counts as none
)

# Localisation metrics: how much of a map's relevance falls in a ground-truth mask (on models that
# declare one, or with a mask file).
localisation = dict(
    relevance='positive',  # what counts: the positive part (the papers), |a|, or a as it is
    # an image file, nonzero inside, resized to the map by nearest pixel; or a folder of them, each
    # image's at its own relative path (an image without one gets no localisation scores); None: the
    # model's own ground truth
    mask=None,
)
