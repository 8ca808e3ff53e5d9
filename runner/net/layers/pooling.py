"""Caffe's Pooling layer: MAX and AVE over windows, with Caffe's output size and AVE divisor.

Caffe rounds the output size up (round_mode CEIL, its default): the last window may hang over
the bottom/right edge, and with padding it is dropped only when it would start in the padding.
MAX ignores padding (and the overhang); AVE sums the image values under a window and divides by
the window's size clipped to the padded image (padding counts, the overhang beyond it does
not): exactly PoolingLayer::Forward_cpu.
"""
import math

import torch
import torch.nn.functional as F

from runner.net.layers.base import Layer, image_shape
from runner.net.structure import spatial


class Pooling(Layer):
    type_name = "Pooling"

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.pooling_param
        where = "pooling_param"
        if param.pool == "STOCHASTIC":
            raise ValueError("pool STOCHASTIC is not supported (MAX and AVE are)")
        self.method = param.pool
        self.global_pooling = param.global_pooling
        if self.global_pooling:
            if param.kernel_size is not None or param.kernel_h or param.kernel_w:
                raise ValueError("global_pooling pools the whole image: give no kernel size")
            self.kernel = None
        else:
            self.kernel = spatial(param, "kernel_size", "kernel", None, 1, where)
        self.stride = spatial(param, "stride", "stride", 1, 1, where)
        self.pad = spatial(param, "pad", "pad", 0, 0, where)
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise ValueError("global_pooling needs pad 0 and stride 1")
        if self.kernel and any(pad >= kernel for pad, kernel in zip(self.pad, self.kernel)):
            raise ValueError(f"pad {self.pad} must be smaller than the kernel {self.kernel}")
        self.round_up = param.round_mode == "CEIL"
        image_shape(bottom_shapes[0])

    def kernel_for(self, sizes):
        return tuple(sizes) if self.global_pooling else self.kernel

    def output_sizes(self, sizes):
        """Caffe's pooled height and width for an input of `sizes` (H, W)."""
        outputs = []
        for size, kernel, stride, pad in zip(sizes, self.kernel_for(sizes), self.stride,
                                             self.pad):
            span = size + 2 * pad - kernel
            if span < 0:
                raise ValueError(f"a {sizes[0]}x{sizes[1]} input (pad {pad}) is smaller than "
                                 f"the {kernel}-pixel window")
            pooled = (-(-span // stride) if self.round_up else span // stride) + 1
            if pad and (pooled - 1) * stride >= size + pad:
                pooled -= 1      # the last window would start in the padding
            if (pooled - 1) * stride - pad >= size:
                raise ValueError(f"the last window starts beyond a {size}-pixel input (kernel "
                                 f"{kernel} smaller than stride {stride}): Caffe pools nothing "
                                 "there")
            outputs.append(pooled)
        return outputs

    def top_shapes(self, bottom_shapes):
        batch, channels, *sizes = image_shape(bottom_shapes[0])
        return [(batch, channels, *self.output_sizes(sizes))]

    def forward(self, bottom):
        sizes = bottom.shape[2:]
        kernel = self.kernel_for(sizes)
        outputs = self.output_sizes(sizes)
        # pad (or crop) the far side so that the windows tile exactly (outputs - 1) * stride + k
        after = [(count - 1) * stride + extent - size - pad for count, stride, extent, size, pad
                 in zip(outputs, self.stride, kernel, sizes, self.pad)]
        padding = (self.pad[1], after[1], self.pad[0], after[0])
        if self.method == "MAX":
            padded = F.pad(bottom, padding, value=-math.inf)
            return (F.max_pool2d(padded, kernel, self.stride),)
        sums = F.avg_pool2d(F.pad(bottom, padding), kernel, self.stride, divisor_override=1)
        return (sums / self._divisors(sizes, kernel, outputs).to(sums),)

    def _divisors(self, sizes, kernel, outputs):
        """Caffe's AVE pool_size per output pixel: each window clipped to the padded image."""
        per_axis = []
        for size, extent, stride, pad, count in zip(sizes, kernel, self.stride, self.pad,
                                                    outputs):
            starts = torch.arange(count) * stride - pad
            per_axis.append(torch.clamp(starts + extent, max=size + pad) - starts)
        return torch.outer(*per_axis)


LAYERS = (Pooling,)
