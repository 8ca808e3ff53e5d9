"""Caffe's loss layers: a scalar top that the objective weighs (loss_weight 1 by default)."""
import math

import torch.nn.functional as F

from runner.net.layers.base import Layer


class EuclideanLoss(Layer):
    """Caffe's EuclideanLoss: 1/(2N) * sum((a - b)^2), N the batch size, summed over C*H*W."""

    type_name = "EuclideanLoss"
    bottom_count = (2, 2)

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


LAYERS = (EuclideanLoss,)
