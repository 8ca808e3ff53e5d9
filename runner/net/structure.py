"""Which layers a phase of a net file has (Caffe's FilterNet, with the legacy net inputs upgraded
to an Input layer), and the upscaling factor a net encodes."""
from runner.config import schema
from runner.errors import UserError


def legacy_input_layer(net_param, source):
    """The deprecated NetParameter `input` + `input_shape`/`input_dim`, upgraded to the Input
    layer Caffe's UpgradeNetInput makes of them (None when the net has no such inputs)."""
    if not net_param.input:
        return None
    count = len(net_param.input)
    if net_param.input_shape:
        shapes = [shape.dim for shape in net_param.input_shape]
    else:
        dims = net_param.input_dim
        shapes = [dims[index:index + 4] for index in range(0, len(dims), 4)]
    if len(shapes) != count or (net_param.input_dim and len(net_param.input_dim) != 4 * count):
        raise UserError(source, f"{count} net inputs need {count} input_shape entries or "
                        f"{4 * count} input_dim values")
    return schema.LayerParameter(
        name="input", type="Input", top=list(net_param.input),
        input_param=schema.InputParameter(shape=[schema.BlobShape(dim=list(shape))
                                                 for shape in shapes]))


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
    """The layers of `net_param` that exist in `phase`, legacy inputs first, in file order."""
    legacy = legacy_input_layer(net_param, source)
    layers = ([legacy] if legacy else []) + list(net_param.layer)
    return [layer for layer in layers if included(layer, phase, source)]


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
