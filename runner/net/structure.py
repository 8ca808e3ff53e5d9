"""Which layers a phase of a net file has (Caffe's FilterNet; legacy forms were upgraded when the
file was read, runner/config/upgrade.py), which are losses, the upscaling factor a net encodes,
how its output lines up with its input, how far its receptive field reaches, the input size
its deploy form is built for, and which blobs a run of layers keeps to itself. It imports no torch: `runner inspect --help` reads it, and the
OpenCV engine (runner/infer/opencv_engine.py) knows a net's geometry without building it."""
import math

from runner.errors import UserError

# The H x W a deploy net is built and checked for (runner/infer/deploy.py, `runner inspect`);
# it runs on any image size at run time.
DEFAULT_INPUT_SIZE = (32, 32)


# Layer types that weigh their top 1 in the objective unless a loss_weight says otherwise.
LOSS_TYPES = ("EuclideanLoss",)


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


def spatial(param, key, prefix, default, minimum, where):
    """An image-axes setting as (h, w), given the way Caffe reads it: `key` holding one value
    (or, for a convolution, H and W), or `<prefix>_h` and `<prefix>_w`; `default` when neither
    is set (None: required). `where` names the parameter message in errors."""
    value = getattr(param, key)
    values = list(value) if isinstance(value, list) else [] if value is None else [value]
    if value == default and not isinstance(value, list):
        values = []
    separate = [getattr(param, f"{prefix}_{axis}", None) for axis in "hw"]
    if any(separate):
        if values:
            raise ValueError(f"{where}: give {key} or {prefix}_h and {prefix}_w, not both")
        if not all(separate) and prefix != "pad":
            raise ValueError(f"{where}: {prefix}_h and {prefix}_w go together")
        values = [number or 0 for number in separate]
    if not values:
        if default is None:
            raise ValueError(f"{where}.{key} is required")
        return (default, default)
    if len(values) > 2:
        raise ValueError(f"{where}.{key}: give one value, or H and W; got {values}")
    if min(values) < minimum:
        raise ValueError(f"{where}.{key} must be at least {minimum}, got {values}")
    return (values[0], values[-1])


def window(layer):
    """(kernel extent, stride, upsamples) along the image axes of a layer that reads a
    neighbourhood of pixels, for the receptive field; None for a layer that does not."""
    if layer.type in ("Convolution", "Deconvolution"):
        param, where = layer.convolution_param, "convolution_param"
        kernels = spatial(param, "kernel_size", "kernel", None, 1, where)
        dilations = spatial(param, "dilation", "dilation", 1, 1, where)
        extent = max(dilation * (kernel - 1) + 1 for kernel, dilation in zip(kernels, dilations))
        return extent, max(spatial(param, "stride", "stride", 1, 1, where)), \
            layer.type == "Deconvolution"
    if layer.type == "Pooling" and not layer.pooling_param.global_pooling:
        param, where = layer.pooling_param, "pooling_param"
        return (max(spatial(param, "kernel_size", "kernel", None, 1, where)),
                max(spatial(param, "stride", "stride", 1, 1, where)), False)
    if layer.type == "PixelShuffle":
        factor = layer.pixel_shuffle_param.upscale_factor
        return factor, factor, True
    return None


def receptive_width(net_param):
    """An upper bound, in input pixels, on the width of input that one output pixel depends on,
    over every layer of a (deploy) net that reads a window (whatever branch it is on): a
    convolution or pooling adds its kernel extent less one (in input pixels at its resolution);
    an upsampling layer (deconvolution, pixel shuffle) its kernel extent over its stride, plus
    one. Strides > 1 change the resolution."""
    width, resolution = 0.0, 1.0      # resolution: blob pixels per input pixel
    for layer in net_param.layer:
        layer_window = window(layer)
        if layer_window is None:
            continue
        extent, stride, upsamples = layer_window
        if upsamples:
            width += ((extent - 1) / stride + 1) / resolution
            resolution *= stride
        else:
            width += (extent - 1) / resolution
            resolution /= stride
    return math.ceil(width)


def last_reads(layers):
    """{blob name: index of the last of `layers` (LayerParameters in order) that reads it}."""
    return {name: index for index, layer in enumerate(layers) for name in layer.bottom}


def inner_blobs_private(layers, first, last, kept, reads):
    """Whether layers first..last may be computed as one: no blob they write before the last
    is in `kept` or read after it (`reads`: last_reads(layers)); a name the last layer writes
    again, in place, is its output."""
    output = layers[last].top[0]
    return all(layer.top[0] == output
               or (layer.top[0] not in kept and reads.get(layer.top[0], -1) <= last)
               for layer in layers[first:last])
