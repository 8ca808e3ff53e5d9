"""A chain of convolutions at inference through our own kernel (conv_chain.c): layers of
stride-1 Convolutions, each followed or not by a PReLU or ReLU, and at the end perhaps a
Deconvolution in its sub-pixel form (runner/net/subpixel.py), computed in one pass by rows on
the CPU with no blob between them in memory. FSRCNN and FSRCNN-s are such a chain from their
input to their output; the Net (builder.py) hands one here where the kernel runs, and
row_bands.py computes the chains it does not take.

The same values as the layers' own, summed in another order (float32 rounding apart, tested);
a pixel's sum does not depend on where it lies, so tiles and bands agree to the bit.

Measured on the 2-core Zen 4 machine, one thread, against the layers through oneDNN (with row
bands): FSRCNN x3 on a BSD100 plane 52 against 68 ms (oneDNN computes its 12 channels and its
9 sub-pixel phases as 16 output channels, and passes every blob through memory), FSRCNN x2
57 against 96 ms on a 481x321 plane (4 phases as 16), FSRCNN-s 18 against 27.5, SRCNN 34
against 61; the BSD100 folder through `runner predict`, whole process at 2 threads, 5.16
against 6.18 s. The kernel is built for AVX-512 or AVX2 (on this Zen 4 machine the AVX2 build
took 53 against 48.5 ms, oneDNN limited to AVX2 61 to 68); elsewhere, or without a C
compiler, the layers compute as before.
"""
import ctypes
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from runner.net import compiled, fast_paths, structure, subpixel
from runner.net.layers.activation import PReLU, ReLU
from runner.net.layers.convolution import Convolution, Deconvolution

# conv_chain.c computes output channels OUT_GROUP at a time, so each layer's weights are given
# in whole groups (zero filters appended, and zero weights for the next layer's extra inputs)
OUT_GROUP = 3
# a chain of fewer convolutions is left to oneDNN
MIN_CONVOLUTIONS = 2
# A layer of at least this many channels in and out is left to oneDNN, which computes such
# layers in whole blocks of channels with more reuse of each load than this kernel: VDSR's
# twenty 3x3 layers of 64 -> 64 channels took 594 against oneDNN's 470 ms on a 240x160
# plane, where FSRCNN's layers (56 and 12 channels) gain.
WIDE_LAYER_CHANNELS = 64


def library():
    """The compiled kernel where it can run here (a C compiler, AVX-512 or AVX2), else None."""
    return compiled.load("conv_chain")


def applies(bottom):
    """Whether the kernel computes on `bottom`: a 4-d float32 CPU blob whose channels lie next
    to each other in memory (channels-last, a view of some of its channels, or one channel),
    with no autograd, where the kernel can run."""
    return (not torch.is_grad_enabled() and bottom.device.type == "cpu"
            and bottom.dtype == torch.float32 and bottom.dim() == 4
            and (bottom.stride(1) == 1 or bottom.shape[1] == 1) and library() is not None)


def _convolution(module):
    """Whether a module is a layer the kernel computes: a Convolution of stride 1, or a
    Deconvolution with a sub-pixel form; neither dilated nor grouped, nor wide on both sides."""
    if (not isinstance(module, Convolution) or tuple(module.dilation) != (1, 1)
            or module.group != 1
            or min(module.in_channels, module.out_channels) >= WIDE_LAYER_CHANNELS):
        return False
    if isinstance(module, Deconvolution):
        return subpixel.convolution_plan(module.kernel, module.stride, module.pad) is not None
    return type(module) is Convolution and tuple(module.stride) == (1, 1)


@dataclass(frozen=True)
class Chain:
    """Steps first..last of a net (inclusive): its convolutions, each with the activation
    module after it (or None), the last perhaps a Deconvolution."""

    first: int
    last: int
    layers: tuple       # ((convolution module, activation module or None), ...)

    def run(self, bottom):
        """The last step's top for the first step's bottom (N, C, H, W): by the kernel where
        it `applies`, else layer by layer."""
        if not applies(bottom):
            for convolution, activation in self.layers:
                bottom = convolution(bottom)[0]
                if activation is not None:
                    bottom = activation(bottom)[0]
            return bottom
        return _computed(bottom, self.layers)


def plan(steps, kept):
    """The Chains of a net's steps ((LayerParameter, module) in order) given the blob names
    `kept` (the outputs asked for): the longest runs of single-bottom, single-top layers, each
    reading the one before, whose inner blobs nothing else reads."""
    layers = [layer for layer, _ in steps]
    reads = structure.last_reads(layers)
    chains, index = [], 0
    while index < len(steps):
        chain = _chain_from(steps, layers, index, kept, reads)
        if chain is not None:
            chains.append(chain)
            index = chain.last
        index += 1
    return chains


def _chain_from(steps, layers, first, kept, reads):
    convolutions, index, ends = [], first, []
    while index < len(steps):
        layer, module = steps[index]
        if not (_single(layer) and _convolution(module)) or (
                index > first and layer.bottom[0] != steps[index - 1][0].top[0]):
            break
        activation = None
        following = steps[index + 1] if index + 1 < len(steps) else None
        if (following is not None and _single(following[0])
                and following[0].bottom[0] == layer.top[0]
                and (isinstance(following[1], PReLU) or type(following[1]) is ReLU)):
            activation = following[1]
        convolutions.append((module, activation))
        index += 2 if activation is not None else 1
        ends.append(index - 1)
        if isinstance(module, Deconvolution):
            break
    # the longest run whose inner blobs are the chain's own
    while len(convolutions) >= MIN_CONVOLUTIONS:
        last = ends[len(convolutions) - 1]
        if structure.inner_blobs_private(layers, first, last, kept, reads):
            return Chain(first, last, tuple(convolutions))
        convolutions.pop()
    return None


def _single(layer):
    return len(layer.bottom) == 1 and len(layer.top) == 1


def _whole_groups(tensor, dim):
    """`tensor` with zeros appended along `dim` up to a whole number of OUT_GROUPs, contiguous."""
    missing = -tensor.shape[dim] % OUT_GROUP
    if missing:
        tensor = F.pad(tensor, [0, 0] * (tensor.dim() - 1 - dim) + [0, missing])
    return tensor.contiguous()


def _slopes(activation, channels):
    """The PReLU slopes an activation module multiplies negative values by, None for none."""
    if activation is None:
        return None
    if isinstance(activation, PReLU):
        return activation.slope.detach().float().expand(channels)
    return torch.full((channels,), float(activation.negative_slope))


def _computed(bottom, layers):
    """The chain's top by the kernel, image by image."""
    batch, channels, height, width = bottom.shape
    shapes, weights, biases, slopes, form = [], [], [], [], None
    inputs = channels
    for convolution, activation in layers:
        if isinstance(convolution, Deconvolution):
            form = fast_paths.subpixel_form(convolution.weight, convolution.bias,
                                            convolution.stride, convolution.pad)
            weight, bias, pad = form.weight, form.bias, form.padding
            deconvolution_input = (height, width)
        else:
            weight, bias, pad = convolution.weight, convolution.bias, convolution.pad
        outputs = weight.shape[0]
        weight = F.pad(weight, [0, 0, 0, 0, 0, inputs - weight.shape[1]])
        weights.append(_whole_groups(weight, 0))
        biases.append(_whole_groups(torch.zeros(outputs) if bias is None else bias, 0))
        slope = _slopes(activation, outputs)
        slopes.append(None if slope is None else _whole_groups(slope, 0))
        shapes += [inputs, len(weights[-1]), *weight.shape[2:], *pad]
        inputs = len(weights[-1])
        height, width = (size + 2 * pad_ - taps + 1
                         for size, pad_, taps in zip((height, width), pad, weight.shape[2:]))
    top = torch.empty((batch, outputs, height, width), memory_format=(
        torch.channels_last if form is None else torch.contiguous_format))

    def pointers(tensors):
        return (ctypes.c_void_p * len(tensors))(
            *[None if tensor is None else tensor.data_ptr() for tensor in tensors])
    shape_array = (ctypes.c_int64 * len(shapes))(*shapes)
    arrays = [pointers(weights), pointers(biases), pointers(slopes)]
    for image in range(batch):
        status = library().conv_chain(
            ctypes.c_void_p(bottom[image].data_ptr()),
            *map(ctypes.c_int64, (bottom.stride(3), bottom.stride(2), *bottom.shape[2:],
                                  len(layers))),
            shape_array, *arrays, ctypes.c_void_p(top[image].data_ptr()),
            *map(ctypes.c_int64, (outputs, *top.stride()[1:])),
            ctypes.c_int(torch.get_num_threads()))
        if status != 0:
            raise MemoryError("conv_chain: out of memory for its rows")
    return top if form is None else form.finish(top, deconvolution_input)
