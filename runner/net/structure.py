"""Which layers a phase of a net file has (Caffe's FilterNet; legacy forms were upgraded when the
file was read, runner/config/upgrade.py), and the upscaling factor a net encodes."""
from runner.errors import UserError


def included(layer, phase, source):
    """Caffe's Net::FilterNet: with include rules a layer needs one that matches, otherwise
    any matching exclude rule drops it; a rule without a phase matches every phase."""
    if layer.include and layer.exclude:
        raise UserError(source, f"layer {layer.name!r}: give include or exclude rules, not both")

    def matches(rule):
        return rule.phase is None or rule.phase == phase

    if layer.include:
        return any(matches(rule) for rule in layer.include)
    return not any(matches(rule) for rule in layer.exclude)


def phase_layers(net_param, phase, source="<net>"):
    """The layers of `net_param` that exist in `phase`, in file order."""
    return [layer for layer in net_param.layer if included(layer, phase, source)]


def scale_of(net_param):
    """The upscaling factor a net encodes: the stride of its last convolution-like layer when
    that is a Deconvolution (FSRCNN). None for an SRCNN-style net, whose last layer is a
    Convolution (it works on a bicubic-upscaled input: the scale lives in the data), or for a
    stride that differs between H and W."""
    convolutions = [layer for layer in net_param.layer
                    if layer.type in ("Convolution", "Deconvolution")]
    if not convolutions or convolutions[-1].type != "Deconvolution":
        return None
    strides = set(convolutions[-1].convolution_param.stride or [1])
    return strides.pop() if len(strides) == 1 else None
