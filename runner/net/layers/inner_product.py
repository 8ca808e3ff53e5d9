"""Caffe's InnerProduct (fully connected) layer."""
import math

import torch.nn.functional as F

from runner.net.layers.base import WeightsAndBias, canonical_axis


class InnerProduct(WeightsAndBias):
    """Each bottom's axes from `axis` on flattened into a vector of K values, multiplied by the
    weights (num_output, K) (or (K, num_output) with `transpose`), plus a bias (num_output)."""

    type_name = "InnerProduct"
    size_keys = "inner_product_param.num_output or the size of its bottom"

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.inner_product_param
        shape = bottom_shapes[0]
        self.axis = canonical_axis(param.axis, shape, "inner_product_param.axis")
        self.inputs = math.prod(shape[self.axis:])
        self.outputs = self.required_outputs(param, "inner_product_param")
        self.transpose = param.transpose
        weight_shape = (self.inputs, self.outputs) if self.transpose else (self.outputs,
                                                                           self.inputs)
        self.make_blobs(param, weight_shape)

    def top_shapes(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) <= self.axis or math.prod(shape[self.axis:]) != self.inputs:
            raise ValueError(f"built for {self.inputs} inputs from axis {self.axis} on, got "
                             f"shape {tuple(shape)}")
        return [(*shape[:self.axis], self.outputs)]

    def forward(self, bottom):
        vectors = bottom.flatten(self.axis)
        weight = self.weight.t() if self.transpose else self.weight
        return (F.linear(vectors, weight, self.bias),)


LAYERS = (InnerProduct,)
