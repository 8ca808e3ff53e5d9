"""A net's sub-pixel tail at inference through our own kernel (subpixel_tail.c): a 1x1
Convolution widening a narrow blob, a PReLU and a Deconvolution in its sub-pixel form (runner/
net/subpixel.py), computed in one pass on the CPU, with no wide blob in memory. FSRCNN's and
FSRCNN-s's expanding layer, PReLU and deconvolution are such a tail; row_bands.py hands it
here where the kernel applies.

The same values as the layers' own, summed in another order (float32 rounding apart, tested);
a pixel's sum does not depend on where it lies, so tiles and bands agree to the bit. Measured
on a BSD100 image's tail (FSRCNN x3, one thread, Zen 4): 19 against oneDNN's 28.5 ms, which
computes the 9 phases as 16 output channels and passes the 56-channel blob through memory.
The kernel needs AVX-512; elsewhere, or without a C compiler, oneDNN's layers compute.
"""
import ctypes

import torch
import torch.nn.functional as F

from runner.net import compiled
from runner.net.layers.activation import PReLU
from runner.net.layers.convolution import Convolution, Deconvolution

# subpixel_tail.c's groups: output channels (OUT_GROUP) and wide channels (WIDE_GROUP) are
# computed that many at a time, so the weights are given in whole groups (zeros appended)
OUT_GROUP = 3
WIDE_GROUP = 8


def library():
    """The compiled kernel where it can run here (a C compiler and AVX-512), else None."""
    loaded = compiled.load("subpixel_tail")
    return loaded if loaded is not None and loaded.subpixel_tail_supported() else None


def is_tail(modules):
    """Whether a chain of layer modules is a tail this kernel computes: a 1x1 Convolution of
    stride 1 without padding or groups, a PReLU, and a Deconvolution without groups."""
    if len(modules) != 3:
        return False
    expand, prelu, deconvolution = modules
    return (type(expand) is Convolution and tuple(expand.kernel) == (1, 1)
            and tuple(expand.stride) == (1, 1) and tuple(expand.pad) == (0, 0)
            and expand.group == 1 and isinstance(prelu, PReLU)
            and isinstance(deconvolution, Deconvolution) and deconvolution.group == 1)


def applies(bottom):
    """Whether the kernel computes a tail on `bottom`: a 4-d float32 CPU blob whose channels
    lie next to each other in memory (channels-last, or a view of some of its channels), with
    no autograd, where the kernel can run."""
    return (not torch.is_grad_enabled() and bottom.device.type == "cpu"
            and bottom.dtype == torch.float32 and bottom.dim() == 4 and bottom.stride(1) == 1
            and library() is not None)


def _whole_groups(tensor, group, dim):
    """`tensor` with zeros appended along `dim` up to a whole number of `group`s, contiguous."""
    missing = -tensor.shape[dim] % group
    if missing:
        tensor = F.pad(tensor, [0, 0] * (tensor.dim() - 1 - dim) + [0, missing])
    return tensor.contiguous()


def phases(bottom, expand, prelu, form):
    """The sub-pixel convolution's output (N, C, H', W') of the tail expand -> prelu ->
    deconvolution (as `form`, fast_paths.SubpixelForm) on a `bottom` that `applies`."""
    batch, narrow, height, width = bottom.shape
    wide = expand.out_channels
    out_channels, _, taps_h, taps_w = form.weight.shape
    expand_weight = _whole_groups(expand.weight.reshape(wide, narrow), WIDE_GROUP, 0)
    zeros = torch.zeros(wide)
    expand_bias = _whole_groups(zeros if expand.bias is None else expand.bias, WIDE_GROUP, 0)
    slopes = _whole_groups(prelu.slope.expand(wide), WIDE_GROUP, 0)
    weight = _whole_groups(_whole_groups(form.weight, WIDE_GROUP, 1), OUT_GROUP, 0)
    bias = _whole_groups(torch.zeros(out_channels) if form.bias is None else form.bias,
                         OUT_GROUP, 0)
    top = torch.empty((batch, out_channels,
                       height + 2 * form.padding[0] - taps_h + 1,
                       width + 2 * form.padding[1] - taps_w + 1))
    numbers = [ctypes.c_int64(number) for number in (
        len(expand_weight), len(weight), out_channels, taps_h, taps_w, *form.padding)]
    for image in range(batch):
        status = library().subpixel_tail(
            _address(bottom[image]), ctypes.c_int64(bottom.stride(3)),
            ctypes.c_int64(bottom.stride(2)), ctypes.c_int64(height), ctypes.c_int64(width),
            ctypes.c_int64(narrow), *map(_address, (expand_weight, expand_bias, slopes)),
            numbers[0], _address(weight), _address(bias), *numbers[1:], _address(top[image]),
            ctypes.c_int(torch.get_num_threads()))
        if status != 0:
            raise MemoryError("subpixel_tail: out of memory for its rows")
    return top


def _address(tensor):
    return ctypes.c_void_p(tensor.data_ptr())
