"""The net: Caffe's layer registry (layer_factory.cpp) and a torch Module built from a NetParameter.

A `Net` is one phase (TRAIN or TEST) of a net file, built as Caffe's Net::Init builds it: layers
kept or dropped by their include/exclude rules, connected by bottom/top blob names in file order
(a top that repeats its bottom is computed in place), every layer's shapes checked once at build
time, and every parameter blob filled by its layer's filler from one generator, in layer order,
so a seed gives the same weights. Data layers (HDF5Data, Input) build no module: their tops are
fed to `forward` from outside (see runner/data.py); their shapes come from the caller, from the
Input layer, or from the first .h5 file an HDF5Data layer's source list names (Caffe's HDF5Data
setup reads that file too).
"""
import math
from dataclasses import dataclass

import h5py
import torch
import torch.nn.functional as F
from torch import nn

from runner import fast_paths, fillers, schema
from runner.data import read_source_list
from runner.errors import UserError


# --------------------------------------------------------------------------- layers

class Layer(nn.Module):
    """A computing layer: knows its own parameter blobs and the shapes of its tops."""

    bottom_count = 1      # exact numbers of bottoms and tops, as Caffe's Exact*Blobs()
    top_count = 1
    is_loss = False       # loss layers weigh their top 1 in the objective unless told otherwise

    def blobs(self):
        """Parameter blobs in Caffe's order (weights, then bias)."""
        return []

    def fillers(self):
        """The FillerParameter of each blob, in the same order."""
        return []

    def top_shapes(self, bottom_shapes):
        """Shapes of the tops for these bottom shapes; ValueError when they do not fit."""
        return list(bottom_shapes)


def _pair(values, key, default, minimum):
    """A one-value-or-H-and-W setting (kernel_size, stride, pad, dilation) as (h, w)."""
    if not values:
        if default is None:
            raise ValueError(f"convolution_param.{key} is required")
        return (default, default)
    if len(values) > 2:
        raise ValueError(f"convolution_param.{key}: give one value, or H and W; got {values}")
    if min(values) < minimum:
        raise ValueError(f"convolution_param.{key} must be at least {minimum}, got {values}")
    return (values[0], values[-1])


def _image_shape(shape):
    if len(shape) != 4:
        raise ValueError(f"needs an N x C x H x W bottom, got shape {shape}")
    return shape


class Convolution(Layer):
    """Caffe's Convolution: weights (out, in/group, kh, kw), then bias (out)."""

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.convolution_param
        if param.num_output is None:
            raise ValueError("convolution_param.num_output is required")
        self.kernel = _pair(param.kernel_size, "kernel_size", None, 1)
        self.stride = _pair(param.stride, "stride", 1, 1)
        self.pad = _pair(param.pad, "pad", 0, 0)
        self.dilation = _pair(param.dilation, "dilation", 1, 1)
        self.group = param.group
        channels = _image_shape(bottom_shapes[0])[1]
        for what, number in (("input channels", channels), ("num_output", param.num_output)):
            if number % self.group:
                raise ValueError(f"{what} ({number}) not divisible by group ({self.group})")
        self.in_channels, self.out_channels = channels, param.num_output
        self.weight = nn.Parameter(torch.empty(self.weight_shape()))
        self.bias = nn.Parameter(torch.empty(param.num_output)) if param.bias_term else None
        self.weight_filler, self.bias_filler = param.weight_filler, param.bias_filler

    def weight_shape(self):
        return (self.out_channels, self.in_channels // self.group, *self.kernel)

    def output_size(self, size, kernel_extent, stride, pad):
        return (size + 2 * pad - kernel_extent) // stride + 1

    def blobs(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def fillers(self):
        return [self.weight_filler, self.bias_filler][:len(self.blobs())]

    def top_shapes(self, bottom_shapes):
        batch, channels, *sizes = _image_shape(bottom_shapes[0])
        if channels != self.in_channels:
            raise ValueError(f"built for {self.in_channels} input channels, got {channels}")
        outputs = tuple(self.output_size(size, dilation * (kernel - 1) + 1, stride, pad)
                        for size, kernel, stride, pad, dilation
                        in zip(sizes, self.kernel, self.stride, self.pad, self.dilation))
        if min(outputs) < 1:
            raise ValueError(f"a {sizes[0]}x{sizes[1]} input gives no output "
                             f"({outputs[0]}x{outputs[1]})")
        return [(batch, self.out_channels, *outputs)]

    def forward(self, bottom):
        return (fast_paths.conv2d(bottom, self.weight, self.bias, self.stride, self.pad,
                                  self.dilation, self.group),)


class Deconvolution(Convolution):
    """Caffe's Deconvolution (a transposed convolution): weights (in, out/group, kh, kw) —
    PyTorch's ConvTranspose2d layout — then bias (out)."""

    def weight_shape(self):
        return (self.in_channels, self.out_channels // self.group, *self.kernel)

    def output_size(self, size, kernel_extent, stride, pad):
        # Caffe's DeconvolutionLayer::compute_output_shape; no output_padding exists there
        return stride * (size - 1) + kernel_extent - 2 * pad

    def forward(self, bottom):
        # the same result as F.conv_transpose2d, computed as a sub-pixel convolution
        return (fast_paths.conv_transpose2d(bottom, self.weight, self.bias, self.stride,
                                            self.pad, self.dilation, self.group),)


class PReLU(Layer):
    """Caffe's PReLU: one learned negative slope per channel, or one for all."""

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.prelu_param
        shape = bottom_shapes[0]
        if len(shape) < 2:
            raise ValueError(f"needs a bottom with a channel axis, got shape {shape}")
        self.channel_shared = param.channel_shared
        self.slope = nn.Parameter(torch.empty(1 if param.channel_shared else shape[1]))
        self.filler = param.filler

    def blobs(self):
        return [self.slope]

    def fillers(self):
        return [self.filler]

    def top_shapes(self, bottom_shapes):
        shape = bottom_shapes[0]
        if not self.channel_shared and (len(shape) < 2 or shape[1] != len(self.slope)):
            raise ValueError(f"built for {len(self.slope)} channels, got shape {shape}")
        return [shape]

    def forward(self, bottom):
        return (F.prelu(bottom, self.slope),)


class ReLU(Layer):
    """Caffe's ReLU: max(x, 0) + negative_slope * min(x, 0)."""

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        self.negative_slope = layer.relu_param.negative_slope

    def forward(self, bottom):
        if self.negative_slope:
            return (F.leaky_relu(bottom, self.negative_slope),)
        return (F.relu(bottom),)


class EuclideanLoss(Layer):
    """Caffe's EuclideanLoss: 1/(2N) * sum((a - b)^2), N the batch size, summed over C*H*W."""

    bottom_count = 2
    is_loss = True

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        self.bottom_names = list(layer.bottom)

    def top_shapes(self, bottom_shapes):
        first, second = bottom_shapes
        # Caffe's rule: same batch size and the same number of values per sample
        if first[:1] != second[:1] or math.prod(first[1:]) != math.prod(second[1:]):
            raise ValueError(f"bottoms {self.bottom_names[0]!r} {first} and "
                             f"{self.bottom_names[1]!r} {second} differ in size")
        return [()]

    def forward(self, prediction, label):
        squared = F.mse_loss(prediction, label.reshape(prediction.shape), reduction="sum")
        return (squared / (2 * prediction.shape[0]),)


# Caffe type name -> the layer class that builds it (Caffe's layer_factory)
LAYERS = {"Convolution": Convolution, "Deconvolution": Deconvolution, "PReLU": PReLU,
          "ReLU": ReLU, "EuclideanLoss": EuclideanLoss}


# --------------------------------------------------------------------------- fed layers

@dataclass(frozen=True)
class Feed:
    """A blob fed from outside the net: its shape and where that shape came from."""

    shape: tuple
    where: str            # the file that errors about this blob's shape name
    note: str = ""        # what the blob is there, e.g. "'label' is dataset 'Ground'"


def dataset_names(layer, source="<net>"):
    """The HDF5 dataset an HDF5Data layer reads for each of its tops (default: the top names,
    as in Caffe; `hdf5_data_param.dataset` maps them, e.g. top `data` to dataset `Input`)."""
    names = list(layer.hdf5_data_param.dataset) or list(layer.top)
    if len(names) != len(layer.top):
        raise UserError(source, f"layer {layer.name!r}: {len(layer.top)} tops but "
                        f"{len(names)} hdf5_data_param.dataset names")
    return names


def hdf5_feeds(layer, source, needed):
    """Feeds of an HDF5Data layer's `needed` tops: (batch_size, *sample shape) of each dataset
    in the first .h5 file of the source list (the files must agree; the feeder checks)."""
    param = layer.hdf5_data_param
    for key in ("source", "batch_size"):
        if getattr(param, key) is None:
            raise UserError(source, f"layer {layer.name!r}: hdf5_data_param.{key} is required")
    names = dict(zip(layer.top, dataset_names(layer, source)))
    if not needed:
        return {}
    path = read_source_list(param.source)[0]
    try:
        with h5py.File(path, "r") as h5:
            feeds = {}
            for top in needed:
                if names[top] not in h5:
                    raise UserError(path, f"no dataset {names[top]!r} (has: {', '.join(h5)})")
                feeds[top] = Feed((param.batch_size, *h5[names[top]].shape[1:]), str(path),
                                  f"{top!r} is dataset {names[top]!r}")
    except OSError as error:
        raise UserError(path, f"not a readable HDF5 file ({error})") from None
    return feeds


def train_data_file(net_param, source):
    """The first .h5 file the TRAIN phase's HDF5Data layer reads (None without one)."""
    for layer in phase_layers(net_param, "TRAIN", source):
        if layer.type == "HDF5Data":
            return read_source_list(layer.hdf5_data_param.source)[0]
    return None


def train_data_attributes(net_param, source):
    """The root attributes of train_data_file: what `python -m prep` recorded about the data
    (scale, prep_config, ...); {} without such data."""
    path = train_data_file(net_param, source)
    if path is None:
        return {}
    try:
        with h5py.File(path, "r") as h5:
            return dict(h5.attrs)
    except OSError as error:
        raise UserError(path, f"not a readable HDF5 file ({error})") from None


def input_feeds(layer, source, needed):
    """Feeds of an Input layer's `needed` tops: one shape for all tops, or one per top."""
    shapes = [tuple(shape.dim) for shape in layer.input_param.shape]
    if len(shapes) not in (0, 1, len(layer.top)):
        raise UserError(source, f"layer {layer.name!r}: {len(shapes)} input_param shapes for "
                        f"{len(layer.top)} tops (give one, or one per top)")
    if needed and not shapes:
        raise UserError(source, f"layer {layer.name!r}: no shape for top {needed[0]!r} (set "
                        "input_param.shape)")
    by_top = dict(zip(layer.top, shapes * len(layer.top) if len(shapes) == 1 else shapes))
    return {top: Feed(by_top[top], source) for top in needed}


# Caffe type name -> how the shapes of its fed tops are found
FED_LAYERS = {"HDF5Data": hdf5_feeds, "Input": input_feeds}


# --------------------------------------------------------------------------- net structure

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


class Net(nn.Module):
    """One phase of a net file as a torch Module that maps named blobs to named blobs.

    `generator` draws the initial weights (None: torch's global generator). `input_shapes`
    ({blob: (N, C, H, W)}) gives the shapes of fed blobs; those not given come from the net
    (Input shapes) or from the first .h5 file an HDF5Data layer's source list names.
    """

    def __init__(self, net_param, phase, source="<net>", generator=None, input_shapes=None):
        super().__init__()
        if phase not in schema.PHASE.values:
            raise ValueError(f"phase must be one of {schema.PHASE.values}, got {phase!r}")
        self.source = str(source)
        self.phase = phase
        self.name = net_param.name
        self.scale = scale_of(net_param)
        self.layer_params = phase_layers(net_param, phase, self.source)
        self.data_layers = [layer for layer in self.layer_params if layer.type == "HDF5Data"]
        self.input_names = [top for layer in self.layer_params if layer.type in FED_LAYERS
                            for top in layer.top]
        self.layers = nn.ModuleList()
        self._module_at = {}          # index in layer_params -> the computing layer's module
        self._feeds = self._find_feeds(self._given_feeds(input_shapes or {}))
        self._walk(self._feeds, build=True)
        self._steps = [(self.layer_params[index], module)
                       for index, module in self._module_at.items()]
        self.loss_names = self._loss_names()
        self._param_specs = [self._param_specs_of(layer, module) for layer, module in self._steps]
        self._fill(generator)

    # ------------------------------------------------------------------ building

    def _error(self, layer, problem):
        return UserError(self.source, f"layer {layer.name!r} ({layer.type}): {problem}")

    def _given_feeds(self, input_shapes):
        unknown = sorted(set(input_shapes) - set(self.input_names))
        if unknown:
            raise UserError(self.source, f"shape given for {unknown[0]!r}, which no data or "
                            "Input layer produces")
        return {name: Feed(tuple(shape), self.source) for name, shape in input_shapes.items()}

    def _find_feeds(self, given):
        feeds = dict(given)
        for layer in self.layer_params:
            if layer.type in FED_LAYERS:
                needed = [top for top in layer.top if top not in given]
                feeds.update(FED_LAYERS[layer.type](layer, self.source, needed))
        return feeds

    def _walk(self, feeds, build=False):
        """Caffe's setup/reshape pass: each layer's top shapes, from the fed blobs' shapes, as
        rows (layer name, type, top shapes, parameter count). With `build`, each computing
        layer's module is first created for the shapes of its bottoms."""
        shapes, rows, names_with_blobs = {}, [], set()
        for index, layer in enumerate(self.layer_params):
            if layer.type is None:
                raise UserError(self.source, f"layer {layer.name!r}: no type (one of "
                                f"{', '.join(schema.LAYER_TYPES)})")
            if layer.type in FED_LAYERS:
                if layer.bottom or not layer.top:
                    raise self._error(layer, "takes no bottom and at least one top")
                tops, count = [feeds[top].shape for top in layer.top], 0
            else:
                bottoms = self._bottom_shapes(layer, shapes)
                if build:
                    self._module_at[index] = self._build(layer, bottoms)
                module = self._module_at[index]
                if module.blobs():
                    if layer.name in names_with_blobs:
                        # weights are saved, loaded and copied by layer name
                        raise self._error(layer, "another layer with parameters has this name")
                    names_with_blobs.add(layer.name)
                tops = self._top_shapes(layer, module, bottoms, feeds)
                count = sum(blob.numel() for blob in module.blobs())
            self._record_tops(layer, tops, shapes)
            rows.append((layer.name, layer.type, tops, count))
        return rows

    def _check_counts(self, layer, bottoms, tops):
        for what, wanted, got in (("bottom", bottoms, len(layer.bottom)),
                                  ("top", tops, len(layer.top))):
            if wanted != got:
                raise self._error(layer, f"takes {wanted} {what}(s), got {got}")

    def _bottom_shapes(self, layer, shapes):
        for name in layer.bottom:
            if name not in shapes:
                raise UserError(self.source, f"layer {layer.name!r}: bottom {name!r} is "
                                "produced by no earlier layer")
        return [shapes[name] for name in layer.bottom]

    def _build(self, layer, bottom_shapes):
        layer_class = LAYERS[layer.type]
        self._check_counts(layer, layer_class.bottom_count, layer_class.top_count)
        try:
            module = layer_class(layer, bottom_shapes)
        except ValueError as error:
            raise self._error(layer, str(error)) from None
        self.layers.append(module)
        return module

    def _top_shapes(self, layer, module, bottom_shapes, feeds):
        try:
            return module.top_shapes(bottom_shapes)
        except ValueError as error:
            # a fed bottom of the wrong shape is most likely the data's fault: name its file
            fed = [feeds[name] for name in layer.bottom if name in feeds]
            notes = "; ".join(feed.note for feed in fed if feed.note)
            where = fed[0].where if fed else self.source
            raise UserError(where, f"layer {layer.name!r} ({layer.type}): {error}"
                            + (f" ({notes})" if notes else "")) from None

    def _record_tops(self, layer, top_shapes, shapes):
        for index, (name, shape) in enumerate(zip(layer.top, top_shapes)):
            in_place = index < len(layer.bottom) and layer.bottom[index] == name
            if name in shapes and not in_place:
                raise self._error(layer, f"top {name!r} is already produced by an earlier "
                                  "layer (only a top that repeats its bottom works in place)")
            shapes[name] = tuple(shape)

    def _loss_names(self):
        losses = []
        for layer, module in self._steps:
            weights = list(layer.loss_weight)
            if weights and len(weights) != len(layer.top):
                raise self._error(layer, f"{len(weights)} loss_weight values for "
                                  f"{len(layer.top)} tops")
            if not weights and module.is_loss:
                weights = [1.0] + [0.0] * (len(layer.top) - 1)
            losses += [(top, weight) for top, weight in zip(layer.top, weights) if weight]
        return losses

    def _param_specs_of(self, layer, module):
        """lr_mult/decay_mult of each blob: the layer's `param` entries, then Caffe's 1, 1."""
        blobs = module.blobs()
        if len(layer.param) > len(blobs):
            raise self._error(layer, f"{len(layer.param)} param entries for "
                              f"{len(blobs)} parameter blobs")
        specs = list(layer.param) + [schema.ParamSpec()] * (len(blobs) - len(layer.param))
        for blob, spec in zip(blobs, specs):
            # as in Caffe, lr_mult 0 freezes a blob: no gradient is computed for it
            blob.requires_grad_(spec.lr_mult != 0)
        return specs

    def _fill(self, generator):
        for layer, module in self._steps:
            for blob, filler in zip(module.blobs(), module.fillers()):
                try:
                    fillers.fill(blob, filler, generator)
                except ValueError as error:
                    raise self._error(layer, str(error)) from None

    # ------------------------------------------------------------------ running

    def forward(self, blobs):
        """All blobs of one pass, given the fed ones ({name: tensor}); in-place tops hold the
        last value written, as in Caffe."""
        blobs = dict(blobs)
        for layer, module in self._steps:
            blobs.update(zip(layer.top, module(*[blobs[name] for name in layer.bottom])))
        return blobs

    def loss(self, blobs):
        """The objective: the sum of loss_weight * (sum of the top) over weighted tops."""
        return sum(weight * blobs[name].sum() for name, weight in self.loss_names)

    def loss_bottoms(self):
        """(prediction, label) blob names of each EuclideanLoss layer."""
        return [tuple(layer.bottom) for layer in self.layer_params
                if layer.type == "EuclideanLoss"]

    # ------------------------------------------------------------------ parameters

    def learnable_blobs(self):
        """(layer name, blob index, parameter, lr_mult, decay_mult) of every parameter blob,
        in Caffe's order (layer order; weights before bias)."""
        return [(layer.name, index, blob, spec.lr_mult, spec.decay_mult)
                for (layer, module), specs in zip(self._steps, self._param_specs)
                for index, (blob, spec) in enumerate(zip(module.blobs(), specs))]

    def blobs_by_layer(self):
        """{layer name: [parameter blobs]} of the layers that have any, in Caffe's layouts."""
        return {layer.name: module.blobs() for layer, module in self._steps if module.blobs()}

    @torch.no_grad()
    def copy_from(self, blobs_by_layer, source):
        """Copy blobs of layers present here and in `blobs_by_layer`, matched by layer name
        (Caffe's CopyTrainedLayersFrom); other layers are left as they are. Every shape is
        checked before anything is copied. Returns the names of the layers copied."""
        own = self.blobs_by_layer()
        shared = [name for name in own if name in blobs_by_layer]
        for name in shared:
            theirs, ours = blobs_by_layer[name], own[name]
            if len(theirs) != len(ours):
                raise UserError(source, f"layer {name!r}: {len(theirs)} blobs in the source, "
                                f"{len(ours)} in the net")
            for index, (their_blob, our_blob) in enumerate(zip(theirs, ours)):
                if tuple(their_blob.shape) != tuple(our_blob.shape):
                    raise UserError(source, f"layer {name!r}: blob {index} has shape "
                                    f"{tuple(their_blob.shape)} in the source but "
                                    f"{tuple(our_blob.shape)} in the net")
        for name in shared:
            for their_blob, our_blob in zip(blobs_by_layer[name], own[name]):
                our_blob.copy_(their_blob)
        return shared

    # ------------------------------------------------------------------ inspection

    def output_shapes(self, input_shapes=None):
        """(layer name, type, top shapes, parameter count) of every layer, for fed blobs of
        the given shapes ({blob: (N, C, H, W)}; others keep the shapes the net was built for)."""
        return self._walk({**self._feeds, **self._given_feeds(input_shapes or {})})

    def weight_count(self):
        """Convolution and Deconvolution weights, without biases and PReLU slopes: the number
        the FSRCNN paper counts (and its multiply-adds per input pixel)."""
        return sum(module.weight.numel() for module in self.layers
                   if isinstance(module, Convolution))
