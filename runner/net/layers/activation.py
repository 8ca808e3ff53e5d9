"""Caffe's neuron layers: element-wise activations that keep their bottom's shape."""
import torch
import torch.nn.functional as F
from torch import nn

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
        return (F.prelu(bottom, self.slope),)


class ReLU(Layer):
    """Caffe's ReLU: max(x, 0) + negative_slope * min(x, 0)."""

    type_name = "ReLU"

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        self.negative_slope = layer.relu_param.negative_slope

    def forward(self, bottom):
        if self.negative_slope:
            return (F.leaky_relu(bottom, self.negative_slope),)
        return (F.relu(bottom),)


LAYERS = (PReLU, ReLU)
