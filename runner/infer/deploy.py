"""Deploy nets: a trained net's NetParameter made into the net that runs on images, and loaded.

`deploy_net` is Caffe's train_val -> deploy edit as a pure function on a NetParameter: the data
top of each data layer becomes an `Input` blob of a given shape, the label goes, loss layers go,
and so does every layer that depends on a removed blob; an input that only loss layers read
(a deploy file's `label`) goes with them. Nets that branch and join run as they are.
The result is a NetParameter like any other (a Caffe export writes it as deploy.prototxt).

An `InferenceModel` is what each engine (runner/infer/engines.py) makes of a `.model` file (or a
`.caffemodel`, runner/files/caffe_model.py): the deploy net with the trained weights, its input and
output blobs, its upscaling factor and the geometry the tiled runner (`runner/infer/tiles.py`)
needs: how the output lines up with the input and how far its receptive field reaches. All of it
is known here without torch, so that an engine without torch imports none.
"""
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from runner.config import loading, schema
from runner.errors import UserError, stored_in
from runner.files import caffe_model
from runner.imaging import matlab
from runner.net import feeds, structure

# Probe sizes for measuring how the output size follows the input size.
PROBE_SIZES = (32, 40)


def is_loss(layer):
    """True for a layer that contributes to the objective (a loss type, or a loss_weight)."""
    return any(layer.loss_weight) or layer.type in structure.LOSS_TYPES


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


def receptive_reach(deploy_param):
    """How far, in input pixels, an output pixel's receptive field reaches on either side of
    it: half the width, one pixel for a deconvolution's output phases not being centred, and
    one for rounding (tiles/tests check that tiles of this overlap are seamless)."""
    return structure.receptive_width(deploy_param) // 2 + 2


@dataclass(frozen=True)
class Geometry:
    """How a deploy net's output follows its input along each axis: out = factor * in - shrink,
    starting `structure.offset_in_footprint(shrink)` HR pixels into the input's footprint (the
    surplus cut half before and half after it, the odd pixel of an odd shrink after).

    A net that shrinks (unpadded convolutions: the authors' 11x11 recipe, SRCNN) is fed its
    input with `padding` pixels mirrored on each side (`padded`) and its output cropped by
    `cropped`, so that out = factor * in, lined up with the input."""

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

    def padded(self, plane):
        """A 2-D plane with `padding` pixels mirrored around it, the edge pixel included
        (MATLAB's 'symmetric', as its imresize extends an image). On the held-out images whole,
        mirroring scores 0.007 to 0.013 dB above repeating the edge for every shipped
        FSRCNN(56,12,4) and within 0.002 for SRCNN and FSRCNN-s (results/README.md)."""
        return np.pad(plane, self.padding, mode="symmetric") if self.padding else plane

    def cropped(self, output):
        """The net's output on a `padding`-padded input (an array or tensor, H and W last) cut
        to factor x the input."""
        height, width = output.shape[-2:]
        return output[..., self.crop_start:height - self.crop_end,
                      self.crop_start:width - self.crop_end]


def measure_geometry(deploy_param, output_size, source):
    """The Geometry of a deploy net, measured from the (height, width) that `output_size`, a
    function of a square input's side, gives at two input sizes (each engine measures its
    own)."""
    small, large = (output_size(size) for size in PROBE_SIZES)
    if small[0] != small[1] or large[0] != large[1]:
        raise UserError(source, "the net treats height and width differently; only square "
                        "kernels, strides and pads are supported for images")
    growth, remainder = divmod(large[0] - small[0], PROBE_SIZES[1] - PROBE_SIZES[0])
    shrink = growth * PROBE_SIZES[0] - small[0]
    if remainder or growth < 1 or shrink < 0:
        raise UserError(source, f"the net's output ({small[0]} for {PROBE_SIZES[0]} input "
                        f"pixels, {large[0]} for {PROBE_SIZES[1]}) is not a multiple of its "
                        "input less a fixed number of pixels")
    # enough pixels around the input that the cut before the footprint, the larger one, is not
    # negative
    padding = math.ceil(structure.offset_in_footprint(shrink) / growth)
    return Geometry(growth, shrink, padding, receptive_reach(deploy_param))


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


def inference_scale(path, model, geometry, scale=None):
    """The upscaling factor of a model whose net has `geometry`: the net's own factor, which
    `scale` must equal when given; a net of factor 1 (SRCNN: its scale lives in its data) runs
    at `scale`, else at the scale its file records."""
    if geometry.factor > 1 and scale not in (None, geometry.factor):
        raise UserError(path, f"is a x{geometry.factor} model, but --scale {scale} was asked")
    if geometry.factor == 1 and scale is None:
        if not model.scale:
            raise UserError(path, "this net works on a bicubic-upscaled input (no final "
                            "Deconvolution) and the file does not say its scale: give --scale")
        return model.scale
    return scale or geometry.factor


@dataclass
class InferenceModel:
    """What every engine's model is: a trained net ready to super-resolve a plane. The tiled
    runner (runner/infer/tiles.py) takes `network_input` of a plane, then each tile through the
    engine's `run`: the net's output, factor x the tile's size (float32), lined up with it."""

    input_name: str
    output_name: str
    scale: int            # the upscaling factor of the whole model
    geometry: Geometry    # of the net itself (factor 1 for SRCNN: it gets a bicubic input)
    name: str             # the net's name (e.g. FSRCNN-56_12_4), else the file's stem
    path: Path
    iteration: int

    # whether `run` may be called from several threads at once (a video's frames and a
    # folder's images then go through the net side by side: runner/infer/side_by_side.py)
    concurrent_runs = False

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

    def run(self, plane):
        """The net on one float32 network-input plane: its output, factor x the plane's size
        (float32), lined up with it (pixels mirrored around the input of a net that shrinks,
        its surplus cropped, as Geometry says). The engine's `forward` maps a 2-D plane to the
        output blob's."""
        return self.geometry.cropped(self.forward(self.geometry.padded(plane)))
