"""Layers that change a blob's shape, not its values: Caffe's Reshape, Flatten, Crop and
Reduction, and srcaffe's own PixelShuffle (Caffe has none; exported as the Deconvolution that
computes it)."""
import math

import torch

from runner.config import schema
from runner.net import fast_paths
from runner.net.layers.base import Layer, canonical_axis, image_shape


class Reshape(Layer):
    """Caffe's Reshape: axes `axis` to `axis + num_axes` of the bottom replaced by `shape`, whose
    0s copy the bottom's axis at the same place and whose one -1 is inferred from the count."""

    type_name = "Reshape"

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.reshape_param
        self.dims = list(param.shape.dim)
        if any(dim < -1 for dim in self.dims) or self.dims.count(-1) > 1:
            raise ValueError(f"reshape_param.shape {self.dims}: dims are sizes, 0 (copy) or one "
                             "-1 (inferred)")
        self.axis, self.num_axes = param.axis, param.num_axes
        if self.num_axes < -1:
            raise ValueError(f"reshape_param.num_axes must be -1 or more, got {self.num_axes}")

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        # as in Caffe, a negative axis -k counts from after the last axis
        start = self.axis if self.axis >= 0 else len(shape) + self.axis + 1
        end = len(shape) if self.num_axes == -1 else start + self.num_axes
        if not 0 <= start <= end <= len(shape):
            raise ValueError(f"reshape_param axis {self.axis}, num_axes {self.num_axes} do not "
                             f"fit a bottom of shape {shape}")
        new = []
        for index, dim in enumerate(self.dims):
            if dim == 0:
                if start + index >= len(shape):
                    raise ValueError(f"reshape_param.shape copies axis {start + index} (a 0), "
                                     f"which a bottom of shape {shape} does not have")
                dim = shape[start + index]
            new.append(dim)
        top = [*shape[:start], *new, *shape[end:]]
        if -1 in new:
            known = math.prod(dim for dim in top if dim != -1)
            if known == 0 or math.prod(shape) % known:
                raise ValueError(f"a bottom of shape {shape} ({math.prod(shape)} values) cannot "
                                 f"be reshaped to {tuple(top)}")
            top[top.index(-1)] = math.prod(shape) // known
        if math.prod(top) != math.prod(shape):
            raise ValueError(f"a bottom of shape {shape} ({math.prod(shape)} values) cannot be "
                             f"reshaped to {tuple(top)} ({math.prod(top)})")
        return [tuple(top)]

    def forward(self, bottom):
        return (bottom.reshape(self.top_shapes([bottom.shape])[0]),)


class Flatten(Layer):
    """Caffe's Flatten: axes `axis` to `end_axis` (inclusive) merged into one."""

    type_name = "Flatten"

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        self.param = layer.flatten_param

    def axes(self, shape):
        first = canonical_axis(self.param.axis, shape, "flatten_param.axis")
        last = canonical_axis(self.param.end_axis, shape, "flatten_param.end_axis")
        if last < first:
            raise ValueError(f"flatten_param end_axis {last} is before axis {first}")
        return first, last

    def top_shapes(self, bottom_shapes):
        shape = tuple(bottom_shapes[0])
        first, last = self.axes(shape)
        return [(*shape[:first], math.prod(shape[first:last + 1]), *shape[last + 1:])]

    def forward(self, bottom):
        return (bottom.flatten(*self.axes(bottom.shape)),)


class Crop(Layer):
    """Caffe's Crop: bottom 0 cut to bottom 1's size on the axes from `axis` on, starting at
    `offset` (one for all those axes, or one each; default 0). Bottom 1 gives only its shape
    and gets no gradient."""

    type_name = "Crop"
    bottom_count = (2, 2)

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.crop_param
        self.names = list(layer.bottom)
        self.axis = canonical_axis(param.axis, bottom_shapes[0], "crop_param.axis")
        cropped = len(bottom_shapes[0]) - self.axis
        if len(param.offset) not in (0, 1, cropped):
            raise ValueError(f"{len(param.offset)} crop_param.offset values for {cropped} "
                             "cropped axes (give one, or one per axis)")
        self.offsets = (list(param.offset) * cropped if len(param.offset) == 1
                        else list(param.offset) or [0] * cropped)

    def windows(self, shape, reference):
        if len(shape) != len(reference):
            raise ValueError(f"bottoms must have as many axes: {self.names[0]!r} is "
                             f"{tuple(shape)}, {self.names[1]!r} is {tuple(reference)}")
        windows = [slice(None)] * self.axis
        for axis, offset in zip(range(self.axis, len(shape)), self.offsets):
            if offset + reference[axis] > shape[axis]:
                raise ValueError(f"axis {axis}: offset {offset} + {reference[axis]} "
                                 f"({self.names[1]!r} {tuple(reference)}) is beyond "
                                 f"{self.names[0]!r} {tuple(shape)}")
            windows.append(slice(offset, offset + reference[axis]))
        return tuple(windows)

    def top_shapes(self, bottom_shapes):
        shape, reference = bottom_shapes
        self.windows(shape, reference)
        return [(*shape[:self.axis], *reference[self.axis:])]

    def forward(self, bottom, reference):
        return (bottom[self.windows(bottom.shape, reference.shape)],)


class Reduction(Layer):
    """Caffe's Reduction: every axis from `axis` on reduced by SUM, ASUM (of |x|), SUMSQ (of
    x^2) or MEAN, times `coeff`; the top keeps the axes before `axis`."""

    type_name = "Reduction"

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.reduction_param
        self.axis = canonical_axis(param.axis, bottom_shapes[0], "reduction_param.axis")
        self.operation, self.coeff = param.operation, param.coeff

    def top_shapes(self, bottom_shapes):
        return [tuple(bottom_shapes[0][:self.axis])]

    def forward(self, bottom):
        values = bottom.flatten(self.axis) if bottom.dim() > self.axis else bottom
        values = {"SUM": values, "ASUM": values.abs(), "SUMSQ": values.square(),
                  "MEAN": values}[self.operation]
        reduced = values.mean(-1) if self.operation == "MEAN" else values.sum(-1)
        return (self.coeff * reduced,)


class PixelShuffle(Layer):
    """srcaffe's PixelShuffle (Shi et al.'s sub-pixel layer, ESPCN; not a Caffe type): (N, C*r*r,
    H, W) to (N, C, H*r, W*r), channel c*r*r + i*r + j going to pixel (i, j) of each r x r block,
    as torch's pixel_shuffle. Caffe runs it as a Deconvolution with kernel r, stride r and group
    C whose fixed weights pick one channel per output pixel: `caffe_form` writes that layer."""

    type_name = "PixelShuffle"

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        self.factor = layer.pixel_shuffle_param.upscale_factor
        if self.factor is None:
            raise ValueError("pixel_shuffle_param.upscale_factor is required")
        self.channels = self._output_channels(bottom_shapes[0])

    def _output_channels(self, shape):
        channels = image_shape(shape)[1]
        if channels % self.factor ** 2:
            raise ValueError(f"{channels} channels do not divide into upscale_factor^2 = "
                             f"{self.factor ** 2}")
        return channels // self.factor ** 2

    def top_shapes(self, bottom_shapes):
        batch, _, height, width = bottom_shapes[0]
        if self._output_channels(bottom_shapes[0]) != self.channels:
            raise ValueError(f"built for {self.channels * self.factor ** 2} channels, got shape "
                             f"{tuple(bottom_shapes[0])}")
        return [(batch, self.channels, height * self.factor, width * self.factor)]

    def forward(self, bottom):
        return (fast_paths.pixel_shuffle(bottom, (self.factor, self.factor)),)

    def caffe_form(self, layer):
        factor, phases = self.factor, self.factor ** 2
        weight = torch.zeros(self.channels * phases, 1, factor, factor)
        for phase in range(phases):
            weight[phase::phases, 0, phase // factor, phase % factor] = 1
        deconvolution = schema.LayerParameter(
            name=layer.name, type="Deconvolution", bottom=layer.bottom, top=layer.top,
            param=[schema.ParamSpec(lr_mult=0, decay_mult=0)],
            convolution_param=schema.ConvolutionParameter(
                num_output=self.channels, bias_term=False, kernel_size=[factor],
                stride=[factor], group=self.channels))
        return deconvolution, [weight]


LAYERS = (Reshape, Flatten, Crop, Reduction, PixelShuffle)
