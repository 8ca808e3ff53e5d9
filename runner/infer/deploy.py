"""Deploy nets: a trained net's NetParameter made into the net that runs on images, and loaded.

`deploy_net` is Caffe's train_val -> deploy edit as a pure function on a NetParameter: the data
top of each data layer becomes an `Input` blob of a given shape, the label goes, loss layers go,
and so does every layer that depends on a removed blob; an input that only loss layers read
(a deploy file's `label`) goes with them. Nets that branch and join run as they are.
The result is a NetParameter like any other (a Caffe export writes it as deploy.prototxt).

`load_for_inference` turns a `.model` file (or a `.caffemodel`, runner/files/caffe_model.py) into an
`InferenceModel`: the deploy net with the trained weights, its input and output blobs, its
upscaling factor and the geometry the tiled runner (`runner/infer/tiles.py`) needs: how the output
lines up with the input and how far its receptive field reaches.
"""
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from runner.config import loading, schema
from runner.errors import UserError, stored_in
from runner.files import caffe_model
from runner.imaging import matlab
from runner.net import builder, devices, fast_paths, feeds, structure
from runner.net.layers import registry

# Probe sizes for measuring how the output size follows the input size.
PROBE_SIZES = (32, 40)


def is_loss(layer):
    """True for a layer that contributes to the objective (a loss type, or a loss_weight)."""
    layer_class = registry.LAYERS.get(layer.type)
    return any(layer.loss_weight) or bool(layer_class and layer_class.is_loss)


def deploy_net(net_param, phase="TEST", source="<net>", input_size=structure.DEFAULT_INPUT_SIZE,
               channels=1):
    """The deploy form of one phase of a net: each data layer's first top (Caffe's order: data,
    then label) becomes an Input of shape 1 x channels x H x W; its other tops (the label), loss
    layers and every layer that depends on a removed blob are dropped. Input layers stay, with
    only the tops a kept layer reads."""
    shape = schema.BlobShape(dim=[1, channels, *input_size])
    kept, available = [], set()
    for layer in structure.phase_layers(net_param, phase, source):
        if layer.type == "Input":
            kept.append(replace(layer, include=[], exclude=[]))
            available.update(layer.top)
        elif layer.type in feeds.FED_LAYERS:
            kept.append(schema.LayerParameter(name=layer.name, type="Input", top=layer.top[:1],
                                              input_param=schema.InputParameter(shape=[shape])))
            available.add(layer.top[0])
        elif not is_loss(layer) and all(bottom in available for bottom in layer.bottom):
            kept.append(replace(layer, include=[], exclude=[]))
            available.update(layer.top)
    if not any(layer.type not in feeds.FED_LAYERS for layer in kept):
        raise UserError(source, "the net has no layer left once data and loss layers are "
                        "removed")
    read = {bottom for layer in kept for bottom in layer.bottom}
    kept = [_read_tops_only(layer, read) if layer.type == "Input" else layer for layer in kept]
    return schema.NetParameter(name=net_param.name,
                               layer=[layer for layer in kept if layer.top])


def _read_tops_only(input_layer, read):
    """An Input layer with only the tops in `read` (and their shapes)."""
    shapes = list(input_layer.input_param.shape)
    keep = [index for index, top in enumerate(input_layer.top) if top in read]
    if len(shapes) == len(input_layer.top) and len(shapes) > 1:
        shapes = [shapes[index] for index in keep]
    return replace(input_layer, top=[input_layer.top[index] for index in keep],
                   input_param=schema.InputParameter(shape=shapes))


def output_blob(deploy_param):
    """The network's output: the top written last that no later layer reads."""
    read = set()
    for layer in reversed(deploy_param.layer):
        unread = [top for top in layer.top if top not in read]
        if unread:
            return unread[-1]
        read.update(layer.bottom)
    raise UserError(deploy_param.name or "<net>", "the net has no output blob")


def input_blob(deploy_param, source="<net>"):
    """The single input of a deploy net (super-resolution nets take one image)."""
    inputs = [top for layer in deploy_param.layer if layer.type == "Input" for top in layer.top]
    if len(inputs) != 1:
        raise UserError(source, f"a deploy net needs exactly one input blob, this one has "
                        f"{len(inputs)} ({', '.join(inputs) or 'none'})")
    return inputs[0]


def receptive_width(net):
    """An upper bound, in input pixels, on the width of input that one output pixel depends on,
    over every layer of a built net that reads a window (whatever branch it is on): a
    convolution or pooling adds its kernel extent less one (in input pixels at its resolution);
    an upsampling layer (deconvolution, pixel shuffle) its kernel extent over its stride, plus
    one. Strides > 1 change the resolution."""
    width, resolution = 0.0, 1.0      # resolution: blob pixels per input pixel
    for _, module in net.layer_modules():
        window = module.window()
        if window is None:
            continue
        extent, stride, upsamples = window
        if upsamples:
            width += ((extent - 1) / stride + 1) / resolution
            resolution *= stride
        else:
            width += (extent - 1) / resolution
            resolution /= stride
    return math.ceil(width)


def use_threads(count):
    """Compute on `count` threads: torch's (the net) and OpenCV's (colour, resizing)."""
    torch.set_num_threads(count)
    cv2.setNumThreads(count)


def receptive_reach(net):
    """How far, in input pixels, an output pixel's receptive field reaches on either side of
    it in a built Net: half the width, one pixel for a deconvolution's output phases not being
    centred, and one for rounding (tiles/tests check that tiles of this overlap are seamless)."""
    return receptive_width(net) // 2 + 2


@dataclass(frozen=True)
class Geometry:
    """How a deploy net's output follows its input along each axis: out = factor * in - shrink,
    starting `structure.offset_in_footprint(shrink)` HR pixels into the input's footprint (the
    surplus cut half before and half after it, the odd pixel of an odd shrink after).

    A net that shrinks (unpadded convolutions: the authors' 11x11 recipe, SRCNN) is fed its
    input with `padding` edge pixels repeated on each side and its output cropped by `cropped`,
    so that out = factor * in, lined up with the input."""

    factor: int
    shrink: int
    padding: int
    context: int      # tile overlap in input pixels on each side: the receptive field's reach

    @property
    def crop_start(self):
        """Output pixels before the input's footprint when the input is padded."""
        return self.factor * self.padding - structure.offset_in_footprint(self.shrink)

    @property
    def crop_end(self):
        """Output pixels after the input's footprint when the input is padded."""
        return 2 * self.factor * self.padding - self.shrink - self.crop_start

    def cropped(self, output):
        """The net's output on a `padding`-padded input (an array or tensor, H and W last) cut
        to factor x the input."""
        height, width = output.shape[-2:]
        return output[..., self.crop_start:height - self.crop_end,
                      self.crop_start:width - self.crop_end]


def _output_size(deploy_net_module, output_name, input_shapes):
    """(height, width) of the output blob for the given input shapes."""
    rows = deploy_net_module.output_shapes(input_shapes)
    shapes = {top: shape for (_, _, top_shapes, _), layer
              in zip(rows, deploy_net_module.layer_params)
              for top, shape in zip(layer.top, top_shapes)}
    return tuple(shapes[output_name][2:])


def measure_geometry(deploy_param, module, source, channels=1):
    """The Geometry of a built deploy net, measured from its shapes at two input sizes."""
    input_name, output_name = input_blob(deploy_param, source), output_blob(deploy_param)
    small, large = (_output_size(module, output_name, {input_name: (1, channels, size, size)})
                    for size in PROBE_SIZES)
    if small[0] != small[1] or large[0] != large[1]:
        raise UserError(source, "the net treats height and width differently; only square "
                        "kernels, strides and pads are supported for images")
    growth, remainder = divmod(large[0] - small[0], PROBE_SIZES[1] - PROBE_SIZES[0])
    shrink = growth * PROBE_SIZES[0] - small[0]
    if remainder or growth < 1 or shrink < 0:
        raise UserError(source, f"the net's output ({small[0]} for {PROBE_SIZES[0]} input "
                        f"pixels, {large[0]} for {PROBE_SIZES[1]}) is not a multiple of its "
                        "input less a fixed number of pixels")
    # enough edge pixels that the cut before the footprint, the larger one, is not negative
    padding = math.ceil(structure.offset_in_footprint(shrink) / growth)
    return Geometry(growth, shrink, padding, receptive_reach(module))


@dataclass
class InferenceModel:
    """A trained net ready to super-resolve a plane (see runner/infer/tiles.py)."""

    net: builder.Net
    input_name: str
    output_name: str
    scale: int            # the upscaling factor of the whole model
    geometry: Geometry    # of the net itself (factor 1 for SRCNN: it gets a bicubic input)
    name: str             # the net's name (e.g. FSRCNN-56_12_4), else the file's stem
    path: Path
    iteration: int
    device: torch.device

    @property
    def upsamples_first(self):
        """True for an SRCNN-style net: its input is the bicubic-upscaled image."""
        return self.geometry.factor == 1 and self.scale > 1

    def network_input(self, plane):
        """A float32 plane in the net's units (0..1) as the net takes it: bicubic-upscaled first
        (MATLAB imresize, in float32) for an SRCNN-style net, as it was trained."""
        plane = np.asarray(plane, dtype=np.float32)
        if self.upsamples_first:
            return matlab.imresize(plane, self.scale, dtype=np.float32)
        return plane

    @torch.no_grad()
    def run(self, plane):
        """The net on one float32 network-input plane: its output, factor x the plane's size
        (float32), lined up with it (edge pixels repeated around the input of a net that
        shrinks, its surplus cropped as Geometry says)."""
        geometry = self.geometry
        if geometry.padding:
            plane = np.pad(plane, geometry.padding, mode="edge")
        tensor = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None]
        output = self.net({self.input_name: tensor.to(self.device)},
                          keep=(self.output_name,))[self.output_name][0, 0]
        return geometry.cropped(output).cpu().numpy()


def model_net(path, model=None):
    """The NetParameter a .model file was trained with (its stored net text); errors in that
    text name the model file."""
    model = model or caffe_model.read_model(path)
    if not model.net_text:
        raise UserError(path, "holds no net description (not made by runner train?)")
    source = model.net_source or "net.yaml"
    # a .model stores its net's text; a .caffemodel's net is the prototxt beside it
    stored = [source] if Path(path).suffix != caffe_model.SUFFIX else []
    with stored_in(path, stored):
        return loading.parse_config(schema.NetParameter, model.net_text, source)


def trained_deploy_net(path, model):
    """(trained NetParameter, its deploy NetParameter, the deploy Net holding the model's
    weights), every parameter blob checked to be in the file with the net's shape before it
    is read."""
    trained = model_net(path, model)
    deploy = deploy_net(trained, source=str(path))
    module = builder.Net(deploy, "TEST", source=str(path))
    blobs = model.read_blobs(module.blobs_by_layer(), path)
    copied = module.copy_from({layer: [torch.from_numpy(blob) for blob in layer_blobs]
                               for layer, layer_blobs in blobs.items()}, path)
    missing = sorted(set(module.blobs_by_layer()) - set(copied))
    if missing:
        raise UserError(path, f"holds no weights for layer {missing[0]!r}")
    return trained, deploy, module


def load_for_inference(model_path, device="cpu", scale=None):
    """An InferenceModel from a `.model` file. `scale`, when given, must be the model's; a net
    without a final Deconvolution (SRCNN) needs it, since its scale lives in its data."""
    path = Path(model_path)
    model = caffe_model.read_model(path)
    trained, deploy, module = trained_deploy_net(path, model)
    geometry = measure_geometry(deploy, module, str(path))
    if geometry.factor > 1 and scale not in (None, geometry.factor):
        raise UserError(path, f"is a x{geometry.factor} model, but --scale {scale} was asked")
    if geometry.factor == 1 and scale is None:
        if not model.scale:
            raise UserError(path, "this net works on a bicubic-upscaled input (no final "
                            "Deconvolution) and the file does not say its scale: give --scale")
        scale = model.scale
    module.eval().requires_grad_(False)
    device = devices.torch_device(device)
    fast_paths.keep_freed_memory()
    module = fast_paths.preferred_layout(module.to(device), device)
    return InferenceModel(module, input_blob(deploy, str(path)), output_blob(deploy),
                          scale or geometry.factor, geometry, trained.name or path.stem, path,
                          model.iteration, device)
