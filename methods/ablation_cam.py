"""Ablation-CAM (Desai & Ramaswamy 2020): each of a conv layer's maps A_k is set to 0 in turn and
the rest of the network run on; the target logit's relative drop, w_k = (y - y_k) / y, weighs it:
sum_k w_k A_k, rectified and upsampled (methods/_layers.cam_method). One forward pass per map,
through the perturbation engine. As the paper; pytorch-grad-cam 1.5 agrees where the layer's
smallest activation is 0 (after a ReLU) and otherwise sets a map to its minimum minus 1e7.

PyTorch only: the ablation is a forward hook on the layer's module (a Keras twin goes through its
PyTorch twin); a TorchScript module calls no hooks.
"""
import numpy as np

from heatkit.base import frameworks
from heatkit.base.errors import NotApplicable
from heatkit.methods._entry import Method, Needs, Paper
from heatkit.methods._layers import AtLayer, cam_method, module_named
from heatkit.methods._recording import NO_HOOKS
from heatkit.methods.grad_cam import SETTINGS


def ablationcam(at: AtLayer) -> np.ndarray:
    torch = frameworks.torch()
    net = at.model.torch
    if net.scripted:
        raise NotApplicable(NO_HOOKS)
    module = module_named(at.model, at.name)

    def ablated_logits(start, stop):
        def zero_one_map_each(_, __, output):
            output = output.clone()
            rows, channels = torch.arange(stop - start), torch.arange(start, stop)
            if output.dim() == 3:  # a transformer's tokens: the channel in every token
                output[rows, :, channels] = 0
            else:
                output[rows, channels] = 0
            return output

        hook = module.register_forward_hook(zero_one_map_each)
        try:
            with torch.no_grad():
                # copies in the net's own layout (an expanded tensor's made max pooling ten times slower)
                copies = net.tensor(np.broadcast_to(at.image, (stop - start, *at.image.shape)))
                return net.array(net.forward(copies))[:, at.target]
        finally:
            hook.remove()

    logit = net.logits(at.image[None])[0, at.target]
    if logit == 0:
        raise NotApplicable("Ablation-CAM divides by the target's logit, which is 0 here")
    drops = logit - at.model.engine(at.image, at.target).passes(at.activations.shape[-1], ablated_logits, "ablationcam")
    return at.activations @ (drops / logit)


METHOD = Method("ablationcam", "Ablation-CAM", Paper(
    "Desai & Ramaswamy 2020", "Ablation-CAM: Visual Explanations for Deep Convolutional Network via Gradient-free "
    "Localization", "https://openaccess.thecvf.com/content_WACV_2020/papers/Desai_Ablation-CAM_Visual_Explanations_for_"
    "Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.pdf"),
    Needs.CONV_LAYER, cam_method(ablationcam, ("torch",)), SETTINGS, cheaper="choose a layer with fewer channels in "
                                                                           "gradcam.layers",
    passes=lambda model, params: None)  # a pass a channel of the layer
