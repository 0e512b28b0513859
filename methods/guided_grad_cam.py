"""Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times Grad-CAM, pixel by pixel, for
each of Grad-CAM's layers (settings `gradcam.layers`)."""
from heatkit.base.contract import Several
from heatkit.methods import grad_cam, guided_backprop
from heatkit.methods._entry import Method, Needs


def _by(framework: str):
    """Guided Grad-CAM on `framework`: each of its parts on the same one."""
    guided_backprop_map, grad_cam_map = guided_backprop.METHOD.function(framework), grad_cam.GRAD_CAM[framework]

    def function(model, image, target, params):
        return _guided(guided_backprop_map(model, image, target, {}), grad_cam_map(model, image, target, params))
    return function


def _guided(guided, cam):
    return Several({layer: guided * value for layer, value in cam.maps.items()}) if isinstance(cam, Several) \
        else guided * cam


METHOD = Method("guided_gradcam", "Guided Grad-CAM", grad_cam.PAPER, Needs.CONV_LAYER,
                {framework: _by(framework) for framework in ("keras", "torch")}, grad_cam.SETTINGS,
                families=guided_backprop.GUIDED_FAMILIES)
