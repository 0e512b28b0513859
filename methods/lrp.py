"""Layer-wise Relevance Propagation (Bach et al. 2015), four rules, starting from the target logit.

Keras: innvestigate 2.1.2. PyTorch: zennit 0.5.1 (heatkit/methods/_zennit.py), which handles
residual additions and BatchNorms; on a model zennit's rules do not reach (LayerNorm, attention,
gates, smooth activations: ViTs, Swin, ConvNeXt, EfficientNet), LRP-Z and LRP-epsilon take
AttnLRP's rules (heatkit/methods/_attnlrp.py). LRP-Z and LRP-epsilon divide each contribution
z_ij = x_i w_ij by z_j (with a zero z_j replaced by 1e-7) or by z_j + epsilon sign(z_j).

The alpha-beta rule splits the contributions by sign, R_i = sum_j (alpha z_ij+ / z_j+ -
beta z_ij- / z_j-) R_j, and `lrp.alpha_beta_bias` says where the bias goes: "split", as Bach et
al. 2015 define it, z_j+ = sum_i z_ij+ + b_j+ and z_j- = sum_i z_ij- + b_j-; or "whole", as
innvestigate 2.1.2 computes it, z_j+- = sum_i z_ij+- + b_j, the whole bias in both (tests pin both).
"""
from heatkit.base import frameworks
from heatkit.base.rules import Choice, Float
from heatkit.base.errors import NotApplicable
from heatkit.methods import _attnlrp, _innvestigate, _keras_rules, _zennit, channel_sum
from heatkit.methods._entry import REFUSED, Method, Needs, Paper, Setting, Settings, one_image


def z_keras(model, image, target, params):
    return keras_lrp(model, image, target, "lrp.z")


def epsilon_keras(model, image, target, params):
    return keras_lrp(model, image, target, "lrp.epsilon", epsilon=params["epsilon"])


def alpha1beta0_keras(model, image, target, params):
    return _keras_alpha_beta(model, image, target, 1.0, 0.0, params["alpha_beta_bias"])


def alpha2beta1_keras(model, image, target, params):
    return _keras_alpha_beta(model, image, target, 2.0, 1.0, params["alpha_beta_bias"])


def _torch_batch(rule: str):
    """The rule's function of a batch of images and their targets, on PyTorch: zennit's where its
    graph rules apply, else (LRP-Z and LRP-epsilon) AttnLRP's."""
    def function(model, images, targets, params):
        epsilon = params.get("epsilon", 1e-7)
        if rule in ATTNLRP and isinstance(_zennit.prepared(model), NotApplicable):
            return channel_sum(_attnlrp.relevance(model, images, targets, epsilon if rule == "epsilon" else 0.0,
                                                  params.get("attention", "attnlrp")))
        rules = _zennit.rules(epsilon, params.get("alpha_beta_bias", "split"))
        return channel_sum(_zennit.relevance(model, images, targets, rules[rule]))
    return function


ATTNLRP = ("z", "epsilon")  # the rules AttnLRP defines
ZENNIT = "zennit's rules, conserving without biases"
ZENNIT_ONLY = {"ReLU CNNs": ZENNIT, **dict.fromkeys(("gated CNNs", "ConvNeXt", "ViT", "Swin"),
                                                    f"{REFUSED} (no such rule through gates, norms, attention)")}
ATTNLRP_FAMILIES = {"ReLU CNNs": ZENNIT,
                    **dict.fromkeys(("gated CNNs", "ConvNeXt"), "AttnLRP, conserving without biases"),
                    **dict.fromkeys(("ViT", "Swin"), "AttnLRP, conserving without biases under lrp.attention='cp'")}


TORCH = {rule: _torch_batch(rule) for rule in ("z", "epsilon", "alpha1beta0", "alpha2beta1")}


def keras_lrp(model, image, target, analyzer="lrp", **kwargs):
    """innvestigate's `analyzer` with its settings, refused where no LRP rule conserves relevance."""
    _keras_rules.refuse(model.keras, "LRP", guided=False)
    return channel_sum(_innvestigate.analyze(model, analyzer, image[None], target, **kwargs)[0])


def _keras_alpha_beta(model, image, target, alpha, beta, bias):
    from innvestigate.analyzer.relevance_based import relevance_rule

    whole = {1.0: relevance_rule.Alpha1Beta0Rule, 2.0: relevance_rule.Alpha2Beta1Rule}[alpha]
    # BatchNorm layers take the z-rule, as on PyTorch (see _zennit.relevance)
    return keras_lrp(model, image, target, rule=whole if bias == "whole" else split_bias_rule(alpha, beta),
                     bn_layer_rule="Z")


def split_bias_rule(alpha: float, beta: float):
    """innvestigate's reverse mapping of a layer with a kernel under the alpha-beta rule of Bach et
    al. 2015: the positive part of the bias joins z+, the negative part z-. Cached per (alpha,
    beta), so that the analyzer's cache key stays the same from call to call."""
    return _SPLIT_BIAS_RULES.get((alpha, beta)) or _SPLIT_BIAS_RULES.setdefault((alpha, beta),
                                                                              _make_split_bias_rule(alpha, beta))


_SPLIT_BIAS_RULES: dict = {}


def _make_split_bias_rule(alpha: float, beta: float):
    tf = frameworks.tensorflow()
    import innvestigate.backend as ibackend
    import innvestigate.backend.graph as igraph

    class SplitBiasAlphaBeta(igraph.ReverseMappingBase):
        def __init__(self, layer, _state):
            # Computed in the graph from the layer's own variables (_innvestigate keeps them symbolic):
            # as constants, four copies of the center-pixel model's 105 MB kernel made its first map
            # 8.8 s instead of 0.5 s; as arrays, each copy is a variable assigned in a session call.
            kernel, *bias = layer.weights
            positive, negative = tf.maximum(kernel, 0), tf.minimum(kernel, 0)

            def copy(name, weights, keep_bias):
                return igraph.copy_layer_wo_activation(layer, keep_bias=keep_bias, name_template=f"{name}_%s",
                                                       weights=weights)
            self.positive_with_bias = copy("positive_b", [positive, *[tf.maximum(b, 0) for b in bias]], True)
            self.negative_with_bias = copy("negative_b", [negative, *[tf.minimum(b, 0) for b in bias]], True)
            self.positive, self.negative = copy("positive", [positive], False), copy("negative", [negative], False)

        def apply(self, Xs, _Ys, Rs, _state):
            positive_inputs, negative_inputs = [tf.maximum(x, 0) for x in Xs], [tf.minimum(x, 0) for x in Xs]

            def relevance(on_positive, on_negative):
                """Relevance over z = on_positive(x+) + on_negative(x-), shared by the contributions."""
                first, second = ibackend.apply(on_positive, positive_inputs), ibackend.apply(on_negative, negative_inputs)
                ratios = [ibackend.safe_divide(r, a + b) for r, a, b in zip(Rs, first, second)]
                first_grads = ibackend.gradients(positive_inputs, first, ratios)
                second_grads = ibackend.gradients(negative_inputs, second, ratios)
                return [xp * gp + xn * gn for xp, gp, xn, gn in
                        zip(positive_inputs, first_grads, negative_inputs, second_grads)]

            activators = relevance(self.positive_with_bias, self.negative)  # x+ w+ + x- w- + b+
            inhibitors = relevance(self.negative_with_bias, self.positive)  # x+ w- + x- w+ + b-
            return [alpha * a - beta * b for a, b in zip(activators, inhibitors)]

    return SplitBiasAlphaBeta


PAPER = Paper("Bach et al. 2015",
              "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation",
              "https://doi.org/10.1371/journal.pone.0130140")
SETTINGS = Settings("lrp", "lrp: Layer-wise Relevance Propagation (Bach et al. 2015), its rules and its composites "
                           "(lrp_composites.py); lrp.z reads lrp.attention alone.", {
    "epsilon": Setting(1e-7, Float(min=0.0, exclusive_min=True),
                       "stabilizer of lrp.epsilon and of the composites' linear layers: z + epsilon * sign(z) in "
                       "each denominator"),
    "gamma": Setting(0.25, Float(min=0.0),
                     "the gamma rule's extra weight of positive contributions (lrp.epsilon_gamma_box)"),
    "attention": Setting("attnlrp", Choice(("attnlrp", "cp")),
                         'the attention softmax, where lrp.z and lrp.epsilon take AttnLRP\'s rules (a model with '
                         'LayerNorm, attention, gates or smooth activations): "attnlrp", its gradient (Achtibat et al. '
                         '2024), or "cp", the attention weights held constant (CP-LRP, Ali et al. 2022)'),
    "alpha_beta_bias": Setting("split", Choice(("split", "whole")),
                               'where the alpha-beta rules put a layer\'s bias b: "split", as Bach et al. 2015 define '
                               "them (b+ in the positive denominator z+, b- in z-), or \"whole\", as innvestigate 2.1.2 "
                               "computes them (all of b in both z+ and z-)"),
})
METHODS = [
    Method(f"lrp.{rule}", name, PAPER, Needs.GRADIENTS, {"keras": keras, "torch": one_image(TORCH[rule])},
           settings, batched={"torch": TORCH[rule]}, families=ATTNLRP_FAMILIES if rule in ATTNLRP else ZENNIT_ONLY)
    for rule, name, keras, settings in (("z", "LRP-Z", z_keras, SETTINGS),
                                        ("epsilon", "LRP-Epsilon", epsilon_keras, SETTINGS),
                                        ("alpha1beta0", "LRP-Alpha1Beta0", alpha1beta0_keras, SETTINGS),
                                        ("alpha2beta1", "LRP-Alpha2Beta1", alpha2beta1_keras, SETTINGS))
]
