"""PReLU for training on channels-last CPU blobs through our own kernels (prelu_kernel.c):
PyTorch's forward and backward, values and gradients, without its branch on every value's
sign and, in bfloat16 (autocast), vectorized.

In float32 the top and the bottom's gradient are PyTorch's bit for bit; the slopes' gradient
is the same sum in another order (float32 rounding apart). In bfloat16 every value is
computed in float32 from the bfloat16 inputs and the float32 slopes and rounded once; the
slopes' gradient is summed in float32.
"""
import ctypes

import torch
from torch.autograd.function import once_differentiable

from runner.net import compiled

_KERNEL_SUFFIXES = {torch.float32: "f32", torch.bfloat16: "bf16"}


def library():
    """The compiled kernels, None where they cannot be had (compiled.unavailable says why)."""
    return compiled.load("prelu_kernel")


def why_unavailable():
    """Why the kernels cannot be had here, None where they can."""
    return None if library() is not None else compiled.unavailable.get("prelu_kernel")


def applies(bottom):
    """Whether these kernels compute PReLU on `bottom`: a 4-d channels-last blob in float32 or
    bfloat16 on the CPU, where the kernels could be compiled."""
    return (bottom.device.type == "cpu" and bottom.dim() == 4
            and bottom.dtype in _KERNEL_SUFFIXES
            and bottom.is_contiguous(memory_format=torch.channels_last)
            and library() is not None)


def prelu(bottom, slope):
    """F.prelu(bottom, slope) on a blob that `applies`, differentiable in both."""
    return _PReLU.apply(bottom, slope)


def _address(tensor):
    return ctypes.c_void_p(tensor.data_ptr())


def _run(kernel, *tensors, channels, count):
    """Call a kernel of prelu_kernel.c on the tensors' memory; it allocates its tiled slopes."""
    status = getattr(library(), kernel)(*map(_address, tensors), ctypes.c_int64(channels),
                                        ctypes.c_int64(count),
                                        ctypes.c_int(torch.get_num_threads()))
    if status != 0:
        raise MemoryError(f"{kernel}: out of memory for the tiled slopes")


class _PReLU(torch.autograd.Function):

    @staticmethod
    def forward(ctx, bottom, slope):
        channels = bottom.shape[1]
        slopes = slope.detach().float().expand(channels).contiguous()
        top = torch.empty_like(bottom, memory_format=torch.channels_last)
        _run(f"prelu_forward_{_KERNEL_SUFFIXES[bottom.dtype]}", bottom, top, slopes,
             channels=channels, count=bottom.numel())
        ctx.save_for_backward(bottom, slopes)
        ctx.slope_shape = slope.shape
        return top

    @staticmethod
    @once_differentiable
    def backward(ctx, top_diff):
        bottom, slopes = ctx.saved_tensors
        top_diff = top_diff.to(bottom.dtype).contiguous(memory_format=torch.channels_last)
        bottom_diff = torch.empty_like(bottom, memory_format=torch.channels_last)
        slope_diff = torch.empty(len(slopes))
        _run(f"prelu_backward_{_KERNEL_SUFFIXES[bottom.dtype]}", bottom, top_diff, bottom_diff,
             slopes, slope_diff, channels=len(slopes), count=bottom.numel())
        if ctx.slope_shape.numel() == 1:    # one slope for all channels
            slope_diff = slope_diff.sum()
        return bottom_diff, slope_diff.reshape(ctx.slope_shape)
