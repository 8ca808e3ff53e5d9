"""Caffe's neuron layers: element-wise functions that keep their bottom's shape (Dropout among
them, as in Caffe). Gradients are autograd's of the same formulas, which are Caffe's Backward
except where a class says otherwise."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from runner.net import fast_paths
from runner.net.layers.base import Layer


class PReLU(Layer):
    """Caffe's PReLU: one learned negative slope per channel, or one for all."""

    type_name = "PReLU"

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
        return (fast_paths.prelu(bottom, self.slope),)


class Elementwise(Layer):
    """A neuron layer without blobs: top = function(bottom)."""

    def __init__(self, layer, bottom_shapes):
        super().__init__()

    def forward(self, bottom):
        return (self.function(bottom),)


class ReLU(Elementwise):
    """Caffe's ReLU: max(x, 0) + negative_slope * min(x, 0)."""

    type_name = "ReLU"

    def __init__(self, layer, bottom_shapes):
        super().__init__(layer, bottom_shapes)
        self.negative_slope = layer.relu_param.negative_slope

    def function(self, bottom):
        if self.negative_slope:
            return F.leaky_relu(bottom, self.negative_slope)
        return F.relu(bottom)


class ELU(Elementwise):
    """Caffe's ELU: x for x > 0, else alpha * (exp(x) - 1)."""

    type_name = "ELU"

    def __init__(self, layer, bottom_shapes):
        super().__init__(layer, bottom_shapes)
        self.alpha = layer.elu_param.alpha

    def function(self, bottom):
        return F.elu(bottom, self.alpha)


class TanH(Elementwise):
    type_name = "TanH"

    def function(self, bottom):
        return torch.tanh(bottom)


class Sigmoid(Elementwise):
    type_name = "Sigmoid"

    def function(self, bottom):
        return torch.sigmoid(bottom)


class AbsVal(Elementwise):
    """Caffe's AbsVal: |x|, gradient sign(x) (0 at 0)."""

    type_name = "AbsVal"

    def function(self, bottom):
        return bottom.abs()


class BNLL(Elementwise):
    """Caffe's BNLL, log(1 + exp(x)), computed without overflow (linear beyond 20, where the
    two agree in float32)."""

    type_name = "BNLL"

    def function(self, bottom):
        return F.softplus(bottom)


class Power(Elementwise):
    """Caffe's Power: (shift + scale * x) ^ power."""

    type_name = "Power"

    def __init__(self, layer, bottom_shapes):
        super().__init__(layer, bottom_shapes)
        param = layer.power_param
        self.power, self.scale, self.shift = param.power, param.scale, param.shift

    def function(self, bottom):
        if self.power * self.scale == 0:     # Caffe: a constant, no gradient
            return torch.full_like(bottom, 1.0 if self.power == 0 else self.shift ** self.power)
        return (self.shift + self.scale * bottom) ** self.power


def _base_log(base):
    """ln(base) for Exp and Log's `base` (-1: e); ValueError for a base Caffe refuses."""
    if base == -1:
        return 1.0
    if base <= 0:
        raise ValueError(f"base must be positive (or -1 for e), got {base}")
    return math.log(base)


class Exp(Elementwise):
    """Caffe's Exp: base ^ (shift + scale * x), as Caffe computes it:
    base ^ shift * exp(ln(base) * scale * x)."""

    type_name = "Exp"

    def __init__(self, layer, bottom_shapes):
        super().__init__(layer, bottom_shapes)
        param = layer.exp_param
        log_base = _base_log(param.base)
        self.inner_scale = log_base * param.scale
        self.outer_scale = math.exp(log_base * param.shift)

    def function(self, bottom):
        return self.outer_scale * torch.exp(self.inner_scale * bottom)


class Log(Elementwise):
    """Caffe's Log: log_base(shift + scale * x) = ln(shift + scale * x) / ln(base)."""

    type_name = "Log"

    def __init__(self, layer, bottom_shapes):
        super().__init__(layer, bottom_shapes)
        param = layer.log_param
        if param.base == 1:
            raise ValueError("log_param.base 1 has no logarithm")
        self.base_scale = 1 / _base_log(param.base)
        self.scale, self.shift = param.scale, param.shift

    def function(self, bottom):
        return self.base_scale * torch.log(self.shift + self.scale * bottom)


class Threshold(Elementwise):
    """Caffe's Threshold: 1 where x > threshold, else 0. Caffe has no backward for it (it stops
    with NOT_IMPLEMENTED); here the gradient is the step's, zero."""

    type_name = "Threshold"

    def __init__(self, layer, bottom_shapes):
        super().__init__(layer, bottom_shapes)
        self.threshold = layer.threshold_param.threshold

    def function(self, bottom):
        return (bottom > self.threshold).to(bottom.dtype)


class Dropout(Elementwise):
    """Caffe's Dropout: in TRAIN each value is kept with probability 1 - ratio and scaled by
    1 / (1 - ratio) (the mask drawn from torch's generator, which the solver seeds and
    snapshots); in TEST the identity."""

    type_name = "Dropout"

    def __init__(self, layer, bottom_shapes):
        super().__init__(layer, bottom_shapes)
        self.ratio = layer.dropout_param.dropout_ratio
        if not 0 <= self.ratio < 1:
            raise ValueError(f"dropout_ratio must be in [0, 1), got {self.ratio}")
        self.in_training = layer.phase == "TRAIN"

    def function(self, bottom):
        if not self.in_training:
            return bottom
        return F.dropout(bottom, self.ratio, training=True)


LAYERS = (PReLU, ReLU, ELU, TanH, Sigmoid, AbsVal, BNLL, Power, Exp, Log, Threshold, Dropout)
