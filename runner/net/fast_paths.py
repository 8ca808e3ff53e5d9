"""Fast paths: faster ways to compute exactly what the plain layers compute, measured by
`runner/bench/` and tested equal to the plain ops in `tests/test_fast_paths.py`.

- The sub-pixel Deconvolution (runner/net/subpixel.py). A stride-s transposed convolution
  scatters every input pixel through a k x k kernel; PyTorch's CPU kernel for it is several
  times slower than a convolution. Its sub-pixel convolution does the same 12,464
  multiply-adds per LR pixel for FSRCNN at convolution speed, and for training too (autograd
  goes through the weight rearrangement, so the layer keeps Caffe's weight layout).
- Channels-last memory on the CPU: oneDNN's convolutions run on NHWC data without reordering
  every input and output.
- PReLU in training (`prelu`, runner/net/prelu_kernel.py): PyTorch's CPU kernel branches on
  every value's sign and in bfloat16 vectorizes nothing; our own C kernels, compiled on first
  use, do neither. A recipe step (configs/fsrcnn_x3_fast_solver.yaml, 2 threads) 1.09x in
  float32, 1.49x under `autocast: bfloat16`.
- PReLU at inference (`prelu`): on a channels-last blob of fewer channels than one 64-byte vector
  of floats (FSRCNN-s's 5), PyTorch's kernel loops over each pixel's few values and vectorizes
  nothing; as rows of width x channels values against the slopes tiled along a row, 0.2 against
  1.9 ms on a 5x360x640 blob (one thread). From 16 channels on the pixel's own loop is the faster.
- Inference convolutions straight to oneDNN (`conv2d`): for a 1x1 kernel at batch 1 on one
  thread, PyTorch's dispatch picks its own matmul path, which writes the output twice (the bias
  broadcast, then the product added): FSRCNN's two 1x1 layers cost 7% more of a 256x256
  prediction that way.
- Inference convolutions in whole blocks of output channels (`whole_output_blocks`): oneDNN
  computes 8 output channels at a time on AVX2, and a count just over a block costs it more than
  the next whole one. On a BSD100 plane, one thread: FSRCNN's sub-pixel deconvolution (56 -> 9
  channels, 3x3) 35 ms, padded to 16 27.5 ms; its shrinking layer 56 -> 12 with the PReLU
  after it 8.9 against 6.0 ms, a mapping layer 9.4 against 7.9 (PyTorch's PReLU reads the 12
  channels of the 16 and writes them dense). The outputs are bit for bit the same. In training
  the padded channels' gradients cost more than they save (the recipe's step 0.9x to 1.0x).
- Freed memory kept by the process: super-resolving an image allocates activations of tens of
  MB per layer; glibc returns such blocks to the kernel on free and page-faults them back in on
  the next layer, which cost a third of the time of a 256x256 prediction.
- Huge pages for that memory: the top of the heap, where the activations then live, advised
  to the kernel for transparent huge pages, 2 MB instead of 4 KB (presumably fewer TLB misses
  on every pass over an activation; this VM has no TLB counters to show it): a 256x256
  prediction, and OpenCV's in the same process, about 12% faster where the kernel's THP
  setting is `madvise` or `always`.

Measured on the 2-core development machine, one thread: training FSRCNN at batch 128 1.75x
faster (sub-pixel 1.4x, channels-last 1.2x more), a 256x256 prediction 3x faster (105 ms ->
35 ms of CPU time, both with the kept memory and its huge pages, which `disabled()` leaves on);
`make bench` measures them against `disabled()` in every run.
"""
import contextlib
import ctypes
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from runner.config import memory
from runner.net import prelu_kernel, subpixel

# glibc mallopt parameter (malloc.h)
_M_ARENA_MAX = -8
# Blocks up to this size come from (and go back to) the heap, not mmap (runner/config/memory.py):
# a 512x512 tile's largest FSRCNN activation (56 channels) is 59 MB, and the huge-page block
# below must come from the heap too.
_KEPT_BLOCK_BYTES = 1 << 30
# madvise (sys/mman.h, Linux); the heap advised for huge pages (address space only: pages are
# backed when first written), more than a 512x512 tile's FSRCNN activations (about 200 MB)
_MADV_HUGEPAGE = 14
_HUGE_PAGE_BYTES = 2 << 20
_HUGE_PAGE_HEAP_BYTES = 512 << 20

_enabled = True


@contextlib.contextmanager
def disabled():
    """Within it, the plain way (for comparisons): F.conv_transpose2d and F.conv2d, and modules
    built meanwhile keep PyTorch's default memory layout. Kept freed memory (and its huge pages)
    stays process-wide."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def enabled():
    """Whether the fast paths are on (`disabled()` turns them off)."""
    return _enabled


def subpixel_weights(weight, bias, stride, group=1):
    """A Deconvolution's (weight, bias) as the equivalent stride-1 convolution's
    (subpixel.weight_order); differentiable."""
    order = _gather_order(tuple(weight.shape), tuple(stride), group, weight.device)
    converted = torch.cat([weight.flatten(), weight.new_zeros(1)])[order]
    if bias is not None:
        bias = bias.repeat_interleave(stride[0] * stride[1])
    return converted, bias


@functools.lru_cache(maxsize=64)
def _gather_order(weight_shape, stride, group, device):
    """subpixel.weight_order as an index on `device`, made once per geometry: every training
    step converts the weight, and an index made on the host each time costs numpy work, and on
    CUDA a copy to the device that the host waits for."""
    return torch.from_numpy(subpixel.weight_order(weight_shape, stride, group)).to(device)


def pixel_shuffle(phases, stride):
    """(N, C * sh * sw, H, W) -> (N, C, H * sh, W * sw), F.pixel_shuffle's result for any
    (sh, sw), and a single strided copy: several times faster than F.pixel_shuffle on CPU."""
    batch, channels, height, width = phases.shape
    stride_h, stride_w = stride
    out_channels = channels // (stride_h * stride_w)
    return (phases.unflatten(1, (out_channels, stride_h, stride_w))
            .permute(0, 1, 4, 2, 5, 3)
            .reshape(batch, out_channels, height * stride_h, width * stride_w))


# oneDNN's CPU convolutions compute output channels in blocks of this many floats (AVX2's 8)
OUTPUT_CHANNEL_BLOCK = 8


def whole_output_blocks(weight, bias):
    """A convolution's (weight, bias) with zero filters appended up to a whole number of
    OUTPUT_CHANNEL_BLOCKs of output channels, where it has more than one block and a part."""
    channels = weight.shape[0]
    missing = -channels % OUTPUT_CHANNEL_BLOCK
    if not missing or channels < OUTPUT_CHANNEL_BLOCK:
        return weight, bias
    weight = torch.cat([weight, weight.new_zeros(missing, *weight.shape[1:])])
    if bias is not None:
        bias = torch.cat([bias, bias.new_zeros(missing)])
    return weight, bias


def conv2d(bottom, weight, bias, stride, pad, dilation=(1, 1), group=1):
    """F.conv2d(bottom, weight, bias, stride, pad, dilation, group); without autograd on a CPU
    fp32 tensor, by oneDNN whatever the kernel size, its output channels computed in whole
    blocks (`whole_output_blocks`) and the extra ones cut off: the result is then a view of
    the channels it has (the same values)."""
    if (_enabled and not torch.is_grad_enabled() and bottom.device.type == "cpu"
            and bottom.dtype == torch.float32 and torch.backends.mkldnn.is_available()):
        channels = weight.shape[0]
        if group == 1:
            weight, bias = whole_output_blocks(weight, bias)
        top = torch.mkldnn_convolution(bottom, weight, bias, pad, stride, dilation, group)
        return top[:, :channels]
    return F.conv2d(bottom, weight, bias, stride, pad, dilation, group)


# Fewer channels than this (floats in a 64-byte vector): a channels-last PReLU computes rows
_PRELU_ROW_CHANNELS = 16


def prelu(bottom, slope):
    """F.prelu(bottom, slope) (`slope`: one per channel, or one for all). With autograd on a
    channels-last CPU blob, by our own kernels (prelu_kernel.py); without, on one of fewer than
    _PRELU_ROW_CHANNELS channels, computed as rows of width x channels values against the
    slopes tiled along a row (the same values)."""
    if _enabled and torch.is_grad_enabled() and prelu_kernel.applies(bottom):
        return prelu_kernel.prelu(bottom, slope)
    if (_enabled and not torch.is_grad_enabled() and bottom.device.type == "cpu"
            and bottom.dim() == 4 and 1 < bottom.shape[1] < _PRELU_ROW_CHANNELS
            and slope.numel() > 1 and bottom.is_contiguous(memory_format=torch.channels_last)):
        batch, channels, height, width = bottom.shape
        rows = bottom.permute(0, 2, 3, 1).reshape(batch * height, width * channels)
        return (F.prelu(rows, slope.repeat(width)).view(batch, height, width, channels)
                .permute(0, 3, 1, 2))
    return F.prelu(bottom, slope)


@dataclass(frozen=True)
class SubpixelForm:
    """A Deconvolution as its sub-pixel convolution: the stride-1 convolution's (weight, bias,
    padding, group), whose output `finish` turns into the Deconvolution's."""

    weight: torch.Tensor
    bias: torch.Tensor
    padding: tuple
    group: int
    stride: tuple
    starts: tuple
    kernel: tuple
    pad: tuple

    def finish(self, phases, input_size):
        """The Deconvolution's output for an input of `input_size` (h, w) from the
        convolution's output: pixel-shuffled, then cut to the Deconvolution's size."""
        top = pixel_shuffle(phases, self.stride)
        sizes = [subpixel.transposed_size(*axis)
                 for axis in zip(input_size, self.kernel, self.stride, self.pad)]
        if tuple(top.shape[2:]) != tuple(sizes) or any(self.starts):
            top = top[:, :, self.starts[0]:self.starts[0] + sizes[0],
                      self.starts[1]:self.starts[1] + sizes[1]]
        return top


def subpixel_form(weight, bias, stride, pad, dilation=(1, 1), group=1):
    """The SubpixelForm of a Deconvolution, None where it has none (dilation, a pad beyond
    the kernel) or the fast paths are off."""
    kernel = tuple(weight.shape[2:])
    plan = subpixel.convolution_plan(kernel, stride, pad)
    if not _enabled or tuple(dilation) != (1, 1) or plan is None:
        return None
    conv_weight, conv_bias = subpixel_weights(weight, bias, stride, group)
    padding, starts = plan
    return SubpixelForm(conv_weight, conv_bias, tuple(padding), group, tuple(stride),
                        tuple(starts), kernel, tuple(pad))


def conv_transpose2d(bottom, weight, bias, stride, pad, dilation=(1, 1), group=1):
    """F.conv_transpose2d(bottom, weight, bias, stride, pad, 0, group, dilation), computed as
    a sub-pixel convolution when it can be (`subpixel_form`)."""
    form = subpixel_form(weight, bias, stride, pad, dilation, group)
    if form is None:
        return F.conv_transpose2d(bottom, weight, bias, stride, pad, 0, group, dilation)
    phases = conv2d(bottom, form.weight, form.bias, (1, 1), form.padding, (1, 1), group)
    return form.finish(phases, bottom.shape[2:])


def preferred_layout(module, device):
    """`module` with the memory layout its convolutions run fastest in on `device`:
    channels-last on the CPU (oneDNN) but for weights read in order, unchanged elsewhere."""
    if not _enabled or torch.device(device).type != "cpu":
        return module
    module = module.to(memory_format=torch.channels_last)
    # A deconvolution's weight is read in its logical order (rearranged into the sub-pixel
    # convolution's), so its gradient comes back in the standard strides: the weight keeps them
    # too (for DDP, whose gradient buckets follow the weight's strides, and warn otherwise).
    for layer in module.modules():
        if getattr(layer, "weight_read_in_order", False):
            layer.weight.data = layer.weight.data.clone(memory_format=torch.contiguous_format)
    return module


_memory_kept = False


def keep_freed_memory():
    """Have glibc keep freed blocks for reuse instead of unmapping them, in one arena for all
    threads and in huge pages where the kernel gives them (process-wide, once; a no-op where
    the C library is not glibc)."""
    global _memory_kept
    if _memory_kept:
        return
    _memory_kept = True
    libc = memory.glibc()
    if libc is None:
        return
    memory.keep_freed_memory(_KEPT_BLOCK_BYTES)
    # One arena for every thread: what predict's encoder thread frees is reused by the net's
    # next band instead of kept in an arena of its own (a 4K picture's peak: 712 -> 623 MB).
    libc.mallopt(_M_ARENA_MAX, 1)
    _advise_huge_pages(libc)


def _advise_huge_pages(libc):
    """Grow the heap by a block, advise its 2 MB-aligned span for transparent huge pages and
    free it: below the trim threshold it stays mapped as the top of the heap (the advice with
    it), and the next large blocks are cut from it."""
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    block = libc.malloc(_HUGE_PAGE_HEAP_BYTES)
    if not block:
        return
    start = -(-block // _HUGE_PAGE_BYTES) * _HUGE_PAGE_BYTES
    end = (block + _HUGE_PAGE_HEAP_BYTES) // _HUGE_PAGE_BYTES * _HUGE_PAGE_BYTES
    libc.madvise(start, end - start, _MADV_HUGEPAGE)
    libc.free(block)
