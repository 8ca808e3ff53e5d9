"""Caffe's BatchNorm, and the Scale and Bias layers that follow it (Caffe's BatchNorm only
normalises; the learned scale and shift are a Scale layer with bias_term)."""
import torch
from torch import nn

from runner.config import schema
from runner.net.layers.base import Layer, canonical_axis


class BatchNorm(Layer):
    """Caffe's BatchNorm: (x - mean) / sqrt(variance + eps) per channel (axis 1), over the batch
    and the image axes.

    Its three blobs are Caffe's: the sums of the batch means and of the batch variances (with
    Bessel's correction), each decayed by moving_average_fraction per TRAIN pass, and the matching
    sum of weights (the scale factor); the statistics are blob / scale factor (0 when it is 0).
    TRAIN normalises by the batch's own statistics (biased variance) and updates the blobs; TEST
    (or use_global_stats) by the stored ones, which are then constants for the gradient. The
    blobs are never learned: their lr_mult is 0, as Caffe forces."""

    type_name = "BatchNorm"
    fixed_blobs = True

    def __init__(self, layer, bottom_shapes):
        super().__init__()
        param = layer.batch_norm_param
        shape = bottom_shapes[0]
        channels = shape[1] if len(shape) > 1 else 1
        self.use_global_stats = (layer.phase == "TEST" if param.use_global_stats is None
                                 else param.use_global_stats)
        self.fraction, self.eps = param.moving_average_fraction, param.eps
        self.mean = nn.Parameter(torch.zeros(channels))
        self.variance = nn.Parameter(torch.zeros(channels))
        self.scale_factor = nn.Parameter(torch.zeros(1))

    def blobs(self):
        return [self.mean, self.variance, self.scale_factor]

    def fillers(self):
        return [schema.FillerParameter()] * 3      # Caffe starts them at zero

    def top_shapes(self, bottom_shapes):
        shape = bottom_shapes[0]
        channels = shape[1] if len(shape) > 1 else 1
        if channels != len(self.mean):
            raise ValueError(f"built for {len(self.mean)} channels, got shape {tuple(shape)}")
        return [shape]

    def forward(self, bottom):
        axes = [0, *range(2, bottom.dim())]                  # all but the channels
        per_channel = [1, -1, *[1] * (bottom.dim() - 2)][:max(bottom.dim(), 1)]
        if self.use_global_stats:
            factor = self.scale_factor[0]
            factor = torch.where(factor == 0, torch.zeros_like(factor), 1 / factor)
            mean, variance = self.mean * factor, self.variance * factor
        else:
            mean = bottom.mean(axes)
            variance = (bottom - mean.view(per_channel)).square().mean(axes)
            self._accumulate(mean.detach(), variance.detach(), bottom.numel() // len(self.mean))
        return ((bottom - mean.view(per_channel))
                / torch.sqrt(variance.view(per_channel) + self.eps),)

    @torch.no_grad()
    def _accumulate(self, mean, variance, values_per_channel):
        correction = values_per_channel / (values_per_channel - 1) if values_per_channel > 1 \
            else 1.0
        self.scale_factor.mul_(self.fraction).add_(1)
        self.mean.mul_(self.fraction).add_(mean)
        self.variance.mul_(self.fraction).add_(variance * correction)


def operand_axis(axis, num_axes, bottom_shapes, where):
    """(axis, shape) of what a Scale or Bias applies to bottom 0, by Caffe's rules: bottom 1 when
    there is one, else the learned blob spanning `num_axes` axes of bottom 0 from `axis` (-1:
    all the rest, 0: a scalar). A scalar applies everywhere (axis 0)."""
    shape = tuple(bottom_shapes[0])
    start = canonical_axis(axis, shape, f"{where}.axis")
    if len(bottom_shapes) == 2:
        operand = tuple(bottom_shapes[1])
    elif num_axes < -1 or start + num_axes > len(shape):
        raise ValueError(f"{where}.num_axes {num_axes} does not fit a bottom of shape {shape} "
                         f"from axis {start}")
    else:
        operand = shape[start:] if num_axes == -1 else shape[start:start + num_axes]
    return (start if operand else 0), operand


def at_axis(operand, axis, dimensions):
    """`operand` shaped to broadcast over a `dimensions`-axis blob from `axis` on."""
    return operand.reshape(*operand.shape, *[1] * (dimensions - axis - operand.dim()))


class Operand(Layer):
    """A layer that applies an operand to bottom 0 from `axis` on: bottom 1, or its own
    learned blob of shape `operand_shape`."""

    bottom_count = (1, 2)

    def __init__(self, param, bottom_shapes, where):
        super().__init__()
        self.axis, self.operand_shape = operand_axis(param.axis, param.num_axes, bottom_shapes,
                                                     where)
        self.learns_operand = len(bottom_shapes) == 1

    def operand_blob(self):
        return nn.Parameter(torch.empty(self.operand_shape))

    def top_shapes(self, bottom_shapes):
        operand = bottom_shapes[1] if len(bottom_shapes) == 2 else self.operand_shape
        if tuple(bottom_shapes[0][self.axis:self.axis + len(operand)]) != tuple(operand):
            raise ValueError(f"bottom of shape {tuple(bottom_shapes[0])} does not match an "
                             f"operand of shape {tuple(operand)} at axis {self.axis}")
        return [bottom_shapes[0]]


class Bias(Operand):
    """Caffe's Bias: bottom 0 + bottom 1, or + a learned blob (filler default constant 0),
    broadcast from `axis`."""

    type_name = "Bias"

    def __init__(self, layer, bottom_shapes):
        param = layer.bias_param
        super().__init__(param, bottom_shapes, "bias_param")
        self.bias = self.operand_blob() if self.learns_operand else None
        self.filler = param.filler

    def blobs(self):
        return [self.bias] if self.bias is not None else []

    def fillers(self):
        return [self.filler][:len(self.blobs())]

    def forward(self, bottom, operand=None):
        operand = self.bias if operand is None else operand
        return (bottom + at_axis(operand, self.axis, bottom.dim()),)


class Scale(Operand):
    """Caffe's Scale: bottom 0 * bottom 1, or * a learned blob (filler default constant 1),
    broadcast from `axis`; with bias_term, plus a learned bias of the same shape (blobs: scale,
    bias; or only the bias with a second bottom)."""

    type_name = "Scale"

    def __init__(self, layer, bottom_shapes):
        param = layer.scale_param
        super().__init__(param, bottom_shapes, "scale_param")
        self.scale = self.operand_blob() if self.learns_operand else None
        self.bias = self.operand_blob() if param.bias_term else None
        # Caffe: an unset filler is constant 1 (the identity)
        unset = param.filler == schema.FillerParameter()
        self.filler = schema.FillerParameter(value=1.0) if unset else param.filler
        self.bias_filler = param.bias_filler

    def blobs(self):
        return [blob for blob in (self.scale, self.bias) if blob is not None]

    def fillers(self):
        return [filler for blob, filler in ((self.scale, self.filler),
                                            (self.bias, self.bias_filler)) if blob is not None]

    def forward(self, bottom, operand=None):
        operand = self.scale if operand is None else operand
        top = bottom * at_axis(operand, self.axis, bottom.dim())
        if self.bias is not None:
            top = top + at_axis(self.bias, self.axis, bottom.dim())
        return (top,)


LAYERS = (BatchNorm, Scale, Bias)
