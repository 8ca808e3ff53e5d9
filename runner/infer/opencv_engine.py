"""The OpenCV engine: a trained model run by OpenCV's dnn module on the CPU, without torch, so
that `runner predict` starts without `import torch` (1.3 to 5 s of CPU on our machine).

The deploy net (runner/infer/deploy.py) and the model's weights are written as Caffe's prototxt
and caffemodel in memory (runner/files/caffe_model.py) and read by `cv2.dnn.readNetFromCaffe`.
A final stride-s Deconvolution goes in as its sub-pixel convolution (runner/net/subpixel.py, the
arithmetic torch's fast path uses: OpenCV's own FSRCNN is slow in its deconvolution), and the
pixel shuffle and the crop follow `forward` in numpy. Only layer types tested to give the torch
engine's output within 1e-5 are run here (SUPPORTED_TYPES, tests/test_opencv_engine.py); the
geometry is measured as the torch engine measures it, by this engine's own output sizes.
"""
import contextlib
import copy
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from google.protobuf import text_format

from runner.config import caffe_proto, schema
from runner.errors import UserError
from runner.files import caffe_model
from runner.imaging.images import native_stderr_silenced
from runner.infer import deploy
from runner.net import structure, subpixel

ENGINE = "opencv"
# Caffe layer types run here, each tested equal to the torch engine (the final Deconvolution
# only in its sub-pixel form: `final_deconvolution`)
SUPPORTED_TYPES = frozenset({"Input", "Convolution", "Deconvolution", "ReLU", "PReLU", "TanH",
                             "Eltwise", "Concat", "Split", "Pooling", "BatchNorm", "Scale"})


def _deconvolution_axes(layer):
    """(kernel, stride, pad, dilation) of a Deconvolution layer, each (h, w)."""
    param, where = layer.convolution_param, "convolution_param"
    return tuple(structure.spatial(param, key, key, default, minimum, where)
                 for key, default, minimum in (("kernel_size", None, 1), ("stride", 1, 1),
                                               ("pad", 0, 0), ("dilation", 1, 1)))


def final_deconvolution(deploy_param):
    """The net's last layer when it is a Deconvolution with a sub-pixel form (no dilation, pad
    within the kernel) writing the output; None otherwise."""
    last = deploy_param.layer[-1]
    if last.type != "Deconvolution" or last.top[0] != deploy.output_blob(deploy_param):
        return None
    kernel, stride, pad, dilation = _deconvolution_axes(last)
    if dilation != (1, 1) or subpixel.convolution_plan(kernel, stride, pad) is None:
        return None
    return last


def _as_tested(layer):
    """False for the forms of supported types that the tests do not cover: a Scale of its
    second bottom or over other axes than the channels, a Concat along another axis."""
    if layer.type == "Scale":
        param = layer.scale_param
        return len(layer.bottom) == 1 and (param.axis, param.num_axes) == (1, 1)
    if layer.type == "Concat":
        return layer.concat_param.axis == 1 and layer.concat_param.concat_dim is None
    return True


def unsupported_layer(deploy_param):
    """The first layer of a deploy net this engine does not run, None when it runs them all;
    the last layer when the output is not its first top (`forward` gives that one)."""
    final = final_deconvolution(deploy_param)
    unsupported = [layer for layer in deploy_param.layer
                   if layer.type not in SUPPORTED_TYPES or not _as_tested(layer)
                   or (layer.type == "Deconvolution" and layer is not final)]
    last = deploy_param.layer[-1]
    if last.top[:1] != [deploy.output_blob(deploy_param)]:
        unsupported.append(last)
    return unsupported[0] if unsupported else None


@dataclass(frozen=True)
class SubpixelOutput:
    """How a Deconvolution's output is made of its sub-pixel convolution's, per axis (h, w)."""

    kernel: tuple
    stride: tuple
    pad: tuple
    padding: tuple    # of the convolution, on each side
    starts: tuple     # of the Deconvolution's output in the shuffled one

    def assemble(self, phases):
        """The Deconvolution's output (C, H, W) from the convolution's (C * sh * sw, h, w):
        pixel-shuffled (depth to space), then cut to the Deconvolution's size."""
        stride_h, stride_w = self.stride
        channels, height, width = phases.shape
        shuffled = (phases.reshape(channels // (stride_h * stride_w), stride_h, stride_w,
                                   height, width)
                    .transpose(0, 3, 1, 4, 2)
                    .reshape(-1, height * stride_h, width * stride_w))
        # the Deconvolution's input: the convolution's output less its padding and taps
        (top, left), (rows, columns) = self.starts, [
            subpixel.transposed_size(size - 2 * padding + -(-kernel // stride) - 1, kernel,
                                     stride, pad)
            for size, padding, kernel, stride, pad
            in zip((height, width), self.padding, self.kernel, self.stride, self.pad)]
        return shuffled[:, top:top + rows, left:left + columns]


def subpixel_form(layer, blobs):
    """(Convolution layer, its blobs, SubpixelOutput) computing a Deconvolution layer."""
    kernel, stride, pad, _ = _deconvolution_axes(layer)
    padding, starts = subpixel.convolution_plan(kernel, stride, pad)
    param = layer.convolution_param
    weight, *bias = blobs
    order = subpixel.weight_order(weight.shape, stride, param.group)
    phases = stride[0] * stride[1]
    convolution = replace(layer, type="Convolution", convolution_param=schema.ConvolutionParameter(
        num_output=param.num_output * phases, bias_term=bool(bias), kernel_h=order.shape[2],
        kernel_w=order.shape[3], pad_h=padding[0], pad_w=padding[1], group=param.group))
    converted = [np.append(weight.ravel(), np.float32(0))[order],
                 *(np.repeat(values, phases) for values in bias)]
    return convolution, converted, SubpixelOutput(kernel, stride, pad, tuple(padding),
                                                  tuple(starts))


class OpenCVNet:
    """A deploy net with its weights in OpenCV's dnn, as a function from a 2-D float32 plane to
    the output blob's 2-D plane. A cv2.dnn.Net holds its blobs, so one forward pass at a time:
    `twin` reads the same net again for another thread."""

    def __init__(self, deploy_param, blobs, source):
        layers, self.subpixel = list(deploy_param.layer), None
        final = final_deconvolution(deploy_param)
        if final is not None:
            layers[-1], blobs[final.name], self.subpixel = subpixel_form(final, blobs[final.name])
        net_param = replace(deploy_param, layer=layers)
        self.input_name, self.source = deploy.input_blob(net_param, source), source
        self.files = (text_format.MessageToString(caffe_proto.from_schema(net_param)).encode(),
                      caffe_model.to_caffemodel(net_param, blobs))
        self.net = self._read()

    def _read(self):
        """A cv2.dnn.Net of the prototxt and caffemodel bytes in `files`."""
        prototxt, caffemodel = self.files
        if not hasattr(cv2.dnn, "readNetFromCaffe"):      # OpenCV 5 dropped Caffe's importer
            raise UserError(self.source, f"OpenCV {cv2.__version__} reads no Caffe nets "
                            "(srcaffe needs OpenCV 4.x): give --engine torch")
        try:
            with native_stderr_silenced():
                net = cv2.dnn.readNetFromCaffe(np.frombuffer(prototxt, np.uint8),
                                               np.frombuffer(caffemodel, np.uint8))
        except cv2.error as error:
            raise UserError(self.source, f"OpenCV cannot load its net: {_reason(error)}") from None
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        # Winograd's 3x3 convolutions (OpenCV's default, kept): 27% less CPU on a 1080p FSRCNN
        # plane, at up to 9.6e-6 from torch's output on Set5 against 1.4e-6 without, within the
        # tested 1e-5 (under a 16-bit level, a four-hundredth of an 8-bit one); `--engine torch`
        # is the closer reference
        net.enableWinograd(True)
        return net

    def twin(self):
        """The same net read again: blobs of its own, for a forward pass beside this one's."""
        twin = copy.copy(self)
        twin.net = self._read()
        return twin

    def __call__(self, plane):
        self.net.setInput(np.ascontiguousarray(plane, np.float32)[None, None], self.input_name)
        output = self.net.forward()[0]          # the last layer's first top: the output
        return (self.subpixel.assemble(output) if self.subpixel else output)[0]


class NetPool:
    """Twins of one OpenCVNet lent one per forward pass, so that passes run side by side (a
    band's tiles, a folder's images, a video's frames: runner/infer/side_by_side.py); a twin is
    made when every one is out, so there are as many as passes ever ran at once."""

    def __init__(self, net):
        self.first, self.idle, self.lock = net, [net], threading.Lock()

    @contextlib.contextmanager
    def lent(self):
        with self.lock:
            net = self.idle.pop() if self.idle else None
        if net is None:
            net = self.first.twin()     # reads only the bytes the twins share
        try:
            yield net
        finally:
            with self.lock:
                self.idle.append(net)


def _reason(error):
    """The line of a cv2.error that says what went wrong."""
    return str(error).strip().splitlines()[-1]


@dataclass
class OpenCVModel(deploy.InferenceModel):
    nets: NetPool

    engine = ENGINE
    device = "cpu"
    concurrent_runs = True      # each pass with a net of its own from the pool

    @staticmethod
    def use_threads(count):
        """Compute on `count` threads: OpenCV's (the net, colour, resizing)."""
        cv2.setNumThreads(count)

    @staticmethod
    def threads():
        return cv2.getNumThreads()

    def forward(self, plane):
        with self.nets.lent() as net:
            return net(plane)


def blob_shapes(deploy_param):
    """{layer name: [blob shapes]} in Caffe's layouts (runner/files/caffe_model.py) of a deploy
    net this engine runs, from the channels each blob carries: what the stored blobs are
    checked against before they are read, as the torch engine checks its built net's."""
    channels, shapes = {}, {}
    for layer in deploy_param.layer:
        bottoms = [channels[name] for name in layer.bottom]
        count = bottoms[0] if bottoms else None
        if layer.type == "Input":
            count = layer.input_param.shape[0].dim[1]
        elif layer.type in ("Convolution", "Deconvolution"):
            param, count = layer.convolution_param, layer.convolution_param.num_output
            kernel = structure.spatial(param, "kernel_size", "kernel", None, 1,
                                       "convolution_param")
            shapes[layer.name] = [(count, bottoms[0] // param.group, *kernel)
                                  if layer.type == "Convolution"
                                  else (bottoms[0], count // param.group, *kernel)]
            shapes[layer.name] += [(count,)] if param.bias_term else []
        elif layer.type == "PReLU":
            shapes[layer.name] = [(1,) if layer.prelu_param.channel_shared else (count,)]
        elif layer.type == "BatchNorm":
            shapes[layer.name] = [(count,), (count,), (1,)]
        elif layer.type == "Scale":
            shapes[layer.name] = [(count,)] * (2 if layer.scale_param.bias_term else 1)
        elif layer.type == "Concat":
            count = sum(bottoms)
        channels.update((top, count) for top in layer.top)
    return shapes


def net_blobs(deploy_param, stored):
    """{layer name: blobs} of the deploy net's layers as a net holding `stored` ({layer name:
    arrays}, a ModelFile's) has them: a blob shared by name (`param { name }`) holds what the
    last layer naming it stores, as copying the layers in order leaves it (Caffe's
    CopyTrainedLayersFrom, the torch engine's copy_from)."""
    blobs = {layer.name: list(stored[layer.name]) for layer in deploy_param.layer
             if layer.name in stored}
    sharers = [(layer.name, index, spec.name) for layer in deploy_param.layer
               for index, spec in enumerate(layer.param)
               if spec.name and index < len(blobs.get(layer.name, ()))]
    shared = {name: blobs[layer][index] for layer, index, name in sharers}
    for layer, index, name in sharers:
        blobs[layer][index] = shared[name]
    return blobs


def load_for_inference(path, model, deploy_param, scale=None):
    """An OpenCVModel of a read ModelFile whose deploy net this engine runs (`unsupported_layer`
    None). `scale` as for the torch engine (deploy.inference_scale)."""
    source = str(path)
    expected = blob_shapes(deploy_param)
    # shapes only (no memory): read_blobs checks each stored blob against them first
    stored = model.read_blobs({layer: [np.broadcast_to(np.float32(0), shape) for shape in blobs]
                               for layer, blobs in expected.items()}, path)
    missing = [layer for layer in expected if layer not in stored]
    if missing:
        raise UserError(path, f"holds no weights for layer {missing[0]!r}")
    net = OpenCVNet(deploy_param, net_blobs(deploy_param, stored), source)
    try:
        with native_stderr_silenced():      # OpenCV logs a failing layer's shapes there
            geometry = deploy.measure_geometry(
                deploy_param, lambda size: net(np.zeros((size, size), np.float32)).shape,
                source)
    except cv2.error as error:
        raise UserError(source, f"OpenCV cannot run its net: {_reason(error)}") from None
    return OpenCVModel(net.input_name, deploy.output_blob(deploy_param),
                       deploy.inference_scale(path, model, geometry, scale), geometry,
                       deploy_param.name or Path(path).stem, Path(path), model.iteration,
                       NetPool(net))
