"""The sub-pixel form of a transposed convolution (Shi et al. 2016): a stride-s Deconvolution is
a stride-1 convolution with ceil(k/s)-tap kernels into s*s channels per output channel (one per
output phase: the kernel taps that land on that phase, flipped), whose output, pixel-shuffled
and cropped, is the Deconvolution's. FSRCNN's 9x9 stride-3 deconvolution becomes a 3x3
convolution into 9 channels.

The arithmetic lives here once, in numpy and without torch, for both engines that compute it:
torch's fast path (runner/net/fast_paths.py) and OpenCV's (runner/infer/opencv_engine.py).
"""
import math

import numpy as np


def subpixel_geometry(kernel, stride, pad):
    """Along one axis: (taps, padding_before, padding_after, output_offset) of the stride-1
    convolution whose pixel-shuffled output, read from `output_offset` on, is the transposed
    convolution's output; None when that needs negative padding (a pad beyond the kernel)."""
    taps = math.ceil(kernel / stride)
    first = pad // stride                 # the LR-grid position of the first output pixel
    before = taps - 1 - first
    after = (kernel - pad - 1) // stride
    if before < 0 or after < 0:
        return None
    return taps, before, after, pad % stride


def convolution_plan(kernel, stride, pad):
    """Per axis, (padding, start): the symmetric padding of the stride-1 convolution (both
    sides by the larger need, as convolutions take it) and where the transposed convolution's
    output starts in its pixel-shuffled output; None when an axis has no sub-pixel form."""
    axes = [subpixel_geometry(*axis) for axis in zip(kernel, stride, pad)]
    if None in axes:
        return None
    padding = [max(before, after) for _, before, after, _ in axes]
    starts = [step * (used - before) + offset
              for step, used, (_, before, _, offset) in zip(stride, padding, axes)]
    return padding, starts


def transposed_size(size, kernel_extent, stride, pad):
    """The output size of a transposed convolution along one axis (Caffe's
    DeconvolutionLayer::compute_output_shape; no output_padding exists there)."""
    return stride * (size - 1) + kernel_extent - 2 * pad


def weight_order(weight_shape, stride, group=1):
    """Where each weight of the equivalent convolution comes from: an integer array of its shape
    (C_out * sh * sw, C_in/group, ceil(kh/sh), ceil(kw/sw)), output channel c * sh * sw +
    phase_h * sw + phase_w, indexing the Deconvolution's weight (C_in, C_out/group, kh, kw)
    flattened, with one zero appended at index weight.size for the taps beyond the kernel.
    Gathering by it keeps autograd going through the rearrangement in torch."""
    in_channels, out_per_group, kernel_h, kernel_w = weight_shape
    stride_h, stride_w = stride
    taps_h, taps_w = math.ceil(kernel_h / stride_h), math.ceil(kernel_w / stride_w)
    zero = math.prod(weight_shape)
    flat = np.arange(zero).reshape(weight_shape)
    padded = np.pad(flat, ((0, 0), (0, 0), (0, taps_h * stride_h - kernel_h),
                           (0, taps_w * stride_w - kernel_w)), constant_values=zero)
    # tap m of phase r is kernel index m * stride + r; a convolution reads its taps reversed
    phases = padded.reshape(group, in_channels // group, out_per_group, taps_h, stride_h,
                            taps_w, stride_w)[:, :, :, ::-1, :, ::-1, :]
    return np.ascontiguousarray(phases.transpose(0, 2, 4, 6, 1, 3, 5).reshape(
        group * out_per_group * stride_h * stride_w, in_channels // group, taps_h, taps_w))
