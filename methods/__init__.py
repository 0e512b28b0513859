"""Attribution methods, one module each, all behind one contract:

    function(model, image, target, params) -> float32 array (H, W)

`model` is a core.model.Model, `image` one preprocessed input (H, W, C) in the model's
input scale, `target` the class explained, `params` the method's settings dict. The map is
raw: normalizing is for plotting only. methods/registry.py lists them all.
"""
