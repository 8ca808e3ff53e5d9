"""Inference in row bands: a run of layers that widens a narrow blob into many channels and
narrows it again (FSRCNN's first convolution, its PReLU and the shrinking layer; its expanding
layer, PReLU and the sub-pixel deconvolution) computed a band of rows at a time, so that the
wide blobs in between are never held whole.

Each wide blob of a whole BSD100 image is 35 MB, written by one layer and read back by the
next, and in a new process first touched at this VM's price for fresh memory (256 MB: 0.3 to
0.8 s). A band of BAND_ROWS output rows keeps them a few MB. Every layer of a band reads the
rows the whole layer would read (the few beyond the band computed again, zero rows where the
plane has its padding), so the result is the same to the bit (tested).

Measured (FSRCNN x3, 2 threads, interleaved against the whole layers): `runner predict` on
BSD100 7.30 against 7.47 s (5 pairs, 0.98x; CPU 0.95x), peak 388 against 580 MiB; a 72-frame
640x360 video 1.01x (461 against 677 MiB), with FSRCNN-s 0.96x (416 against 578 MiB); the
net alone on a BSD100 image at one thread 69 to 72 against 77 to 82 ms. Bands of 16 rows were
1.06x slower than of 32.

Only where it pays and is exact: inference (no autograd) on the CPU, a chain of
single-bottom, single-top layers whose inner blobs no other layer reads, made of Convolutions
of stride 1 along the rows, element-wise layers and at its end a Deconvolution in its
sub-pixel form; from a blob of at most NARROW_CHANNELS channels through wider ones to the next
such blob, with at most MAX_REACH_SHARE of a band's rows of reach (the kernels' extents beyond
one row) to compute again: SRCNN's 9x9 and 5x5 layers would recompute too much (in bands of 10
rows its net took 679 against 648 ms).
"""
from dataclasses import dataclass, replace

import torch

from runner.net import fast_paths, structure, subpixel
from runner.net.layers.activation import Elementwise, PReLU
from runner.net.layers.convolution import Convolution, Deconvolution

# output rows of a band
BAND_ROWS = 32
# a blob of at most this many channels (one oneDNN block of floats) is held whole
NARROW_CHANNELS = 16
# the most rows of reach a banded chain may have, as a share of BAND_ROWS (FSRCNN's: 4 and 2)
MAX_REACH_SHARE = 1 / 8


@dataclass(frozen=True)
class RowOp:
    """One layer of a banded chain: its kernel's `extent` (h, w), zero `pad` (h, w) on each
    side, `stride` along the columns (1 along the rows), and the function computing its output
    rows from exactly the input rows they read (the padding rows included)."""

    extent: tuple
    pad: tuple
    stride: int
    compute: object

    def output_size(self, size):
        """(h, w) of the output for an input of `size` (h, w)."""
        return (size[0] + 2 * self.pad[0] - self.extent[0] + 1,
                (size[1] + 2 * self.pad[1] - self.extent[1]) // self.stride + 1)


ELEMENTWISE = ((1, 1), (0, 0), 1)


def _row_op(module, last):
    """The RowOp of a layer, None where it cannot be banded; a Deconvolution only as the
    chain's `last` layer, as its sub-pixel convolution (computed by `Chain.run`, which converts
    its weights as they are then)."""
    if isinstance(module, Deconvolution):
        plan = subpixel.convolution_plan(module.kernel, module.stride, module.pad)
        if not last or plan is None or tuple(module.dilation) != (1, 1):
            return None
        taps = tuple(-(-kernel // stride) for kernel, stride in zip(module.kernel, module.stride))
        return RowOp(taps, tuple(plan[0]), 1, None)
    if isinstance(module, Convolution):
        if module.stride[0] != 1:
            return None
        extent = tuple(dilation * (kernel - 1) + 1
                       for kernel, dilation in zip(module.kernel, module.dilation))

        def convolution(band):
            return fast_paths.conv2d(band, module.weight, module.bias, module.stride,
                                     (0, module.pad[1]), module.dilation, module.group)
        return RowOp(extent, tuple(module.pad), module.stride[1], convolution)
    if isinstance(module, (PReLU, Elementwise)):
        return RowOp(*ELEMENTWISE, lambda band: module(band)[0])
    return None


@dataclass(frozen=True)
class Chain:
    """Steps first..last of a net (inclusive) computed in bands: their RowOps, and the last
    step's module when it is a Deconvolution (its output then finished from the bands')."""

    first: int
    last: int
    ops: tuple
    channels: int                   # of the last step's top
    deconvolution: object = None

    def run(self, bottom, rows=BAND_ROWS):
        """The last step's top for the first step's bottom (N, C, H, W), band by band."""
        ops, form = self.ops, None
        if self.deconvolution is not None:
            layer = self.deconvolution
            form = fast_paths.subpixel_form(layer.weight, layer.bias, layer.stride, layer.pad,
                                            layer.dilation, layer.group)

            def subpixel_convolution(band):
                return fast_paths.conv2d(band, form.weight, form.bias, (1, 1),
                                         (0, form.padding[1]), (1, 1), form.group)
            ops = ops[:-1] + (replace(ops[-1], compute=subpixel_convolution),)
        sizes = [tuple(bottom.shape[2:])]
        for op in ops:
            sizes.append(op.output_size(sizes[-1]))
        # allocated before the bands, whose blocks each next band then reuses; channels-last,
        # as the layers' own outputs on the CPU
        channels = self.channels if form is None else form.weight.shape[0]
        top = torch.empty((len(bottom), channels, *sizes[-1]), dtype=bottom.dtype,
                          memory_format=torch.channels_last)
        for first in range(0, sizes[-1][0], rows):
            stop = min(first + rows, sizes[-1][0])
            top[:, :, first:stop] = _band(ops, sizes, bottom, first, stop)
        return top if form is None else form.finish(top, sizes[-2])


def _band(ops, sizes, bottom, first, stop):
    """Rows first..stop of the last op's output: each op's input rows found from the last op
    back (`sizes`: each op's input (h, w), then the output's), then computed from the first
    op on. (A loop, not a recursive closure: that one made a reference cycle, which kept every
    pass's blobs until Python's collector ran.)"""
    spans = []          # (first, last row read, rows wanted) of each op's input, last op first
    for op, (below, _) in zip(reversed(ops), reversed(sizes[:-1])):
        wanted = (first - op.pad[0], stop - op.pad[0] + op.extent[0] - 1)
        spans.append((max(wanted[0], 0), min(wanted[1], below), wanted))
        first, stop = spans[-1][:2]
    band = bottom[:, :, first:stop]
    for op, (start, end, wanted) in zip(ops, reversed(spans)):
        if (start, end) != wanted:
            band = _zero_rows(band, start - wanted[0], wanted[1] - end)
        band = op.compute(band)
    return band


def _zero_rows(band, above, below):
    """`band` with `above` and `below` rows of zeros around it, in its memory format."""
    batch, channels, height, width = band.shape
    # channels-last where the channels are innermost (a view of some of them included)
    layout = torch.channels_last if band.stride(1) == 1 else torch.contiguous_format
    padded = torch.empty((batch, channels, above + height + below, width), dtype=band.dtype,
                         device=band.device, memory_format=layout).fill_(0)
    padded[:, :, above:above + height] = band
    return padded


def _channels(module, bottom_channels):
    """Channels of a layer's top given its bottom's."""
    return module.out_channels if isinstance(module, Convolution) else bottom_channels


def plan(steps, kept, fed_channels, rows=BAND_ROWS):
    """The Chains of a net's steps ((LayerParameter, module) in order) worth banding, given the
    blob names `kept` (the outputs asked for) and {fed blob: channels}."""
    channels, chains, index = dict(fed_channels), [], 0
    layers = [layer for layer, _ in steps]
    reads = structure.last_reads(layers)
    while index < len(steps):
        chain = _chain_from(steps, layers, index, kept, reads, channels, rows)
        end = index if chain is None else chain.last
        if chain is not None:
            chains.append(chain)
        for layer, module in steps[index:end + 1]:
            known = len(layer.bottom) == 1 and layer.bottom[0] in channels
            for top in layer.top:
                if known:
                    channels[top] = _channels(module, channels[layer.bottom[0]])
                else:
                    channels.pop(top, None)
        index = end + 1
    return chains


def _chain_from(steps, layers, first, kept, reads, channels, rows):
    """The Chain starting at step `first`, None where none starts there: from a narrow blob
    through wider ones to the next narrow blob, every layer bandable and every inner blob read
    by the next layer alone."""
    layer, _ = steps[first]
    if len(layer.bottom) != 1 or channels.get(layer.bottom[0], NARROW_CHANNELS + 1) \
            > NARROW_CHANNELS:
        return None
    width = widest = channels[layer.bottom[0]]
    ops = []
    for index in range(first, len(steps)):
        layer, module = steps[index]
        if len(layer.bottom) != 1 or len(layer.top) != 1 or (
                index > first and layer.bottom[0] != steps[index - 1][0].top[0]):
            return None
        width = _channels(module, width)
        op = _row_op(module, last=width <= NARROW_CHANNELS)
        if op is None:
            return None
        ops.append(op)
        if width <= NARROW_CHANNELS:
            reach = sum(step.extent[0] - 1 for step in ops)
            chain = Chain(first, index, tuple(ops), width,
                          module if isinstance(module, Deconvolution) else None)
            worth = widest > NARROW_CHANNELS and reach <= rows * MAX_REACH_SHARE
            return chain if worth and structure.inner_blobs_private(
                layers, first, index, kept, reads) else None
        widest = max(widest, width)
    return None

