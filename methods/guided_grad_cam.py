"""Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times Grad-CAM, pixel by pixel, for
each of Grad-CAM's layers (settings `gradcam.layers`)."""
from heatkit.base.contract import Several
from heatkit.methods import grad_cam, guided_backprop
from heatkit.methods._entry import Method, Needs


def keras(model, image, target, params):
    return _guided(guided_backprop.keras(model, image, target, {}), grad_cam.GRAD_CAM["keras"](model, image, target, params))


def torch(model, image, target, params):
    return _guided(guided_backprop.torch(model, image, target, {}), grad_cam.GRAD_CAM["torch"](model, image, target, params))


def _guided(guided, cam):
    return Several({layer: guided * value for layer, value in cam.maps.items()}) if isinstance(cam, Several) \
        else guided * cam


METHOD = Method("guided_gradcam", "Guided Grad-CAM", grad_cam.PAPER, Needs.CONV_LAYER, {"keras": keras, "torch": torch},
                grad_cam.SETTINGS)
