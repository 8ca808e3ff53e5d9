"""Caffe's fillers (include/caffe/filler.hpp): how a parameter blob gets its initial values.

Each filler writes a tensor in place from a `schema.FillerParameter`; the random ones draw
from the `torch.Generator` they are given, so one seed gives the same weights every time.
Fan-in and fan-out follow Caffe to the letter, including its reading of a Deconvolution
blob (C_in, C_out, kh, kw), whose "fan_in" is C_out*kh*kw: a net initialised here starts
where the same net starts in Caffe (in distribution; Caffe's random streams differ).
"""
import math

import torch


def fill(tensor, filler, generator=None):
    """Fill `tensor` in place as Caffe's `filler.type` filler would.

    Random fillers draw from `generator` (None: torch's global generator). Raises ValueError
    for settings Caffe would reject (a uniform range with min > max, a negative std, a
    bilinear filler on a blob that is not a square 4-D kernel).
    """
    with torch.no_grad():
        FILLERS[filler.type](tensor, filler, generator)


def constant(tensor, filler, generator):
    tensor.fill_(filler.value)


def uniform(tensor, filler, generator):
    if filler.min > filler.max:
        raise ValueError(f"uniform filler: min {filler.min} is above max {filler.max}")
    tensor.uniform_(filler.min, filler.max, generator=generator)


def gaussian(tensor, filler, generator):
    """N(mean, std); with `sparse` >= 0 each value is kept with probability sparse / shape[0]
    (Caffe: about `sparse` non-zero inputs per output of an InnerProduct) and zeroed otherwise."""
    if filler.std < 0:
        raise ValueError(f"gaussian filler: std must not be negative, got {filler.std}")
    tensor.normal_(filler.mean, filler.std, generator=generator)
    if filler.sparse >= 0:
        if tensor.dim() < 1:
            raise ValueError("gaussian filler: sparse needs a blob with at least one axis")
        keep = filler.sparse / tensor.shape[0]
        if keep > 1:
            raise ValueError(f"gaussian filler: sparse {filler.sparse} is more than the "
                             f"{tensor.shape[0]} outputs")
        mask = torch.empty_like(tensor).bernoulli_(keep, generator=generator)
        tensor.mul_(mask)


def xavier(tensor, filler, generator):
    # Glorot & Bengio: U(-a, a) with a = sqrt(3 / n), i.e. variance 1/n
    scale = math.sqrt(3 / fan(tensor.shape, filler.variance_norm))
    tensor.uniform_(-scale, scale, generator=generator)


def msra(tensor, filler, generator):
    # He et al.: N(0, 2/n), the variance that keeps ReLU/PReLU activations from shrinking
    tensor.normal_(0, math.sqrt(2 / fan(tensor.shape, filler.variance_norm)),
                   generator=generator)


def bilinear(tensor, filler, generator):
    """Caffe's bilinear upsampling kernel, the same (K, K) kernel in every (in, out) slot."""
    if tensor.dim() != 4 or tensor.shape[2] != tensor.shape[3]:
        raise ValueError(f"bilinear filler needs a square 4-D kernel, got shape "
                         f"{tuple(tensor.shape)}")
    size = tensor.shape[3]
    # Caffe's f and c: the kernel of a stride-f upsampling, centred on the kernel's middle
    # (BVLC master; older Caffe had c = (2f - 1 - f % 2) / 2f, the same for even sizes)
    factor = math.ceil(size / 2)
    centre = (size - 1) / (2 * factor)
    ramp = 1 - (torch.arange(size, dtype=torch.float64) / factor - centre).abs()
    tensor.copy_(torch.outer(ramp, ramp).expand_as(tensor))


def positive_unitball(tensor, filler, generator):
    """U(0, 1) values, then each of the shape[0] rows divided by its sum: rows of positive
    values summing to 1."""
    tensor.uniform_(0, 1, generator=generator)
    rows = tensor.view(tensor.shape[0] if tensor.dim() else 1, -1)   # a fresh blob: contiguous
    rows.div_(rows.sum(1, keepdim=True))


FILLERS = {"constant": constant, "uniform": uniform, "gaussian": gaussian, "xavier": xavier,
           "msra": msra, "bilinear": bilinear, "positive_unitball": positive_unitball}


def fan(shape, variance_norm):
    """Caffe's n for xavier/msra: count/shape[0] (FAN_IN), count/shape[1] (FAN_OUT), or their
    mean (AVERAGE). Like Caffe's num()/channels(), a missing axis counts as 1."""
    count = math.prod(shape)
    fan_in = count // (shape[0] if len(shape) > 0 else 1)
    fan_out = count // (shape[1] if len(shape) > 1 else 1)
    return {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[variance_norm]
