"""Caffe's InnerProduct (fully connected) layer."""
import math

import torch
from torch import nn

from runner.net.layers.base import Layer, canonical_axis


class InnerProduct(Layer):
    """Each bottom's axes from `axis` on flattened into a vector of K values, multiplied by the
    weights (num_output, K) (or (K, num_output) with `transpose`), plus a bias (num_output)."""

    type_name = "InnerProduct"

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.inner_product_param
        if param.num_output is None:
            raise ValueError("inner_product_param.num_output is required")
        shape = bottom_shapes[0]
        self.axis = canonical_axis(param.axis, shape, "inner_product_param.axis")
        self.inputs, self.outputs = math.prod(shape[self.axis:]), param.num_output
        self.transpose = param.transpose
        weight_shape = (self.inputs, self.outputs) if self.transpose else (self.outputs,
                                                                           self.inputs)
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(self.outputs)) if param.bias_term else None
        self.weight_filler, self.bias_filler = param.weight_filler, param.bias_filler

    def blobs(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def fillers(self):
        return [self.weight_filler, self.bias_filler][:len(self.blobs())]

    def top_shapes(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) <= self.axis or math.prod(shape[self.axis:]) != self.inputs:
            raise ValueError(f"built for {self.inputs} inputs from axis {self.axis} on, got "
                             f"shape {tuple(shape)}")
        return [(*shape[:self.axis], self.outputs)]

    def forward(self, bottom):
        vectors = bottom.flatten(self.axis)
        weight = self.weight.t() if self.transpose else self.weight
        return (torch.nn.functional.linear(vectors, weight, self.bias),)


LAYERS = (InnerProduct,)
