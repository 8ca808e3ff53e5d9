"""Which layers a phase of a net file has (Caffe's FilterNet; legacy forms were upgraded when the
file was read, runner/config/upgrade.py), the upscaling factor a net encodes, how its output lines
up with its input, and the input size its deploy form is built for. It imports no torch:
`runner inspect --help` reads it."""
from runner.errors import UserError

# The H x W a deploy net is built and checked for (runner/infer/deploy.py, `runner inspect`);
# it runs on any image size at run time.
DEFAULT_INPUT_SIZE = (32, 32)


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
    """The upscaling factor a net encodes, read from its last resampling layer when that one
    upsamples: a Deconvolution's stride (FSRCNN) or a PixelShuffle's factor (ESPCN). None for a
    net whose last one is a Convolution (SRCNN, VDSR: it works on a bicubic-upscaled input, so
    the scale lives in the data), or for a stride that differs between H and W."""
    resampling = [layer for layer in net_param.layer
                  if layer.type in ("Convolution", "Deconvolution", "PixelShuffle")]
    if not resampling:
        return None
    last = resampling[-1]
    if last.type == "PixelShuffle":
        return last.pixel_shuffle_param.upscale_factor
    if last.type == "Convolution":
        return None
    param = last.convolution_param
    strides = {param.stride_h, param.stride_w} if param.stride_h else set(param.stride or [1])
    return strides.pop() if len(strides) == 1 else None


def offset_in_footprint(shrink):
    """Where the output of a net starts inside its input's HR footprint (factor x the input)
    when it is `shrink` pixels shorter than that footprint: half the shrink, rounded up. An
    even shrink is centred; an odd one (a 9x9 deconvolution at an even stride gives one) leaves
    its extra pixel at the end, where prep puts a label's pixel beyond lr_size * scale
    (prep/subimages.py), so that training and inference line up the same way."""
    return (shrink + 1) // 2
