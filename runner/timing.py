"""`runner time`: Caffe's `caffe time`: per-layer forward and backward milliseconds, and the whole
iteration, averaged over iterations of random data.

As `caffe time` does, every layer is run and timed on its own: forward in file order, then
backward in reverse order (each layer's gradients with respect to its bottoms and parameter blobs,
from its tops' gradients); fed blobs get no gradient. The whole iteration (the net's forward, the
loss, autograd's backward) is timed separately, so it includes what the per-layer split leaves
out. CUDA is synchronised around every measurement.
"""
import time
from dataclasses import dataclass

import torch

from runner.errors import UserError
from runner.infer import deploy
from runner.net import builder, devices, feeds, structure

# The fed input size when the net's HDF5 source cannot be read: a 7x7 LR patch, one channel.
FALLBACK_INPUT_SIZE = (7, 7)


def _loss_readers(layers):
    """{blob: the loss layer that reads it} for blobs read only by loss layers (labels)."""
    computing = {bottom for layer in layers if layer.type not in feeds.FED_LAYERS
                 and not deploy.is_loss(layer) for bottom in layer.bottom}
    return {bottom: layer for layer in layers if deploy.is_loss(layer)
            for bottom in layer.bottom if bottom not in computing}


def _assumed_shapes(net_param, source, batch, tops, input_size):
    """Shapes for fed tops without readable data: one-channel inputs of `input_size`, and each
    label shaped like the prediction its loss layer compares it with."""
    labels = _loss_readers(structure.phase_layers(net_param, "TRAIN", source))
    shapes = {top: (batch, 1, *input_size) for top in tops if top not in labels}
    if any(top in labels for top in tops):
        deployed = deploy.deploy_net(net_param, "TRAIN", source, tuple(input_size))
        module = builder.Net(deployed, "TEST", source)
        blob_shapes = {top: shape for (_, _, top_shapes, _), layer
                       in zip(module.output_shapes(), module.layer_params)
                       for top, shape in zip(layer.top, top_shapes)}
        for top in tops:
            if top in labels:
                prediction = next(bottom for bottom in labels[top].bottom if bottom != top)
                shapes[top] = (batch, *blob_shapes[prediction][1:])
    return shapes


def _hdf5_shapes(layer, net_param, source, batch, input_size):
    """(N, C, H, W) of an HDF5Data layer's tops: from its data file unless `input_size` is
    given; assumed (FALLBACK_INPUT_SIZE) when the file cannot be read."""
    if input_size is None:
        try:
            found = feeds.hdf5_feeds(layer, source, list(layer.top))
            return {top: (batch, *feed.shape[1:]) for top, feed in found.items()}
        except UserError:
            try:
                return _assumed_shapes(net_param, source, batch, layer.top, FALLBACK_INPUT_SIZE)
            except UserError as error:
                raise UserError(error.where, f"{error.problem} (its data cannot be read, so a "
                                f"{FALLBACK_INPUT_SIZE[0]}x{FALLBACK_INPUT_SIZE[1]} input was "
                                "assumed: give --input HxW)") from None
    return _assumed_shapes(net_param, source, batch, layer.top, input_size)


def feed_shapes(net_param, source, batch=None, input_size=None):
    """{fed blob: (N, C, H, W)} of the TRAIN phase: HDF5Data tops from the first .h5 file of
    the layer's source list (else assumed), Input tops from the net; `batch` replaces N and
    `input_size` (H, W) replaces the data's size."""
    shapes = {}
    for layer in structure.phase_layers(net_param, "TRAIN", source):
        if layer.type == "HDF5Data":
            size = batch or layer.hdf5_data_param.batch_size or 1
            shapes.update(_hdf5_shapes(layer, net_param, source, size, input_size))
        elif layer.type == "Input":
            for top, feed in feeds.input_feeds(layer, source, list(layer.top)).items():
                shape = (batch or feed.shape[0], *feed.shape[1:])
                shapes[top] = shape[:2] + tuple(input_size) if input_size else shape
    return shapes


@dataclass(frozen=True)
class LayerTime:
    name: str
    type: str
    forward_ms: float
    backward_ms: float


@dataclass(frozen=True)
class Timing:
    layers: list            # LayerTime, in file order
    iteration_ms: float     # one whole forward + backward, averaged
    iterations: int
    device: str
    feed_shapes: dict


class _Clock:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def _forward_layers(steps, feeds, clock, elapsed):
    """One forward pass, layer by layer, each layer on detached bottoms so it can be
    differentiated alone; returns [(layer, module, bottoms, tops)]."""
    blobs, passes = dict(feeds), []
    for layer, module in steps:
        bottoms = [blobs[name].detach().requires_grad_(name not in feeds)
                   for name in layer.bottom]
        started = clock.now()
        tops = module(*bottoms)
        elapsed[layer.name][0] += clock.now() - started
        blobs.update(zip(layer.top, tops))
        passes.append((layer, module, bottoms, tops))
    return passes


def _backward_layers(passes, seeds, clock, elapsed):
    """One backward pass in reverse layer order from `seeds` ({blob: gradient})."""
    gradients = dict(seeds)
    for layer, module, bottoms, tops in reversed(passes):
        flowing = [(top, gradients[name]) for name, top in zip(layer.top, tops)
                   if name in gradients and top.requires_grad]
        # the bottoms that take a gradient (fed ones do not), in order
        learning = [(name, bottom) for name, bottom in zip(layer.bottom, bottoms)
                    if bottom.requires_grad]
        wrt = [bottom for _, bottom in learning] + \
              [blob for blob in module.blobs() if blob.requires_grad]
        if not flowing or not wrt:
            continue
        started = clock.now()
        results = torch.autograd.grad([top for top, _ in flowing],
                                      wrt, [gradient for _, gradient in flowing],
                                      allow_unused=True)
        elapsed[layer.name][1] += clock.now() - started
        for (name, _), gradient in zip(learning, results):
            if gradient is None:
                continue
            in_place = name in layer.top
            gradients[name] = gradient if in_place or name not in gradients \
                else gradients[name] + gradient


def _seeds(module, blobs):
    """Gradients the backward pass starts from: loss_weight on each loss top, or ones on the
    last top when the net has no loss (a deploy net)."""
    if module.loss_names:
        return {name: torch.full_like(blobs[name], weight) for name, weight in module.loss_names}
    last = module.layer_params[-1].top[-1]
    return {last: torch.ones_like(blobs[last])}


def time_net(net_param, source, iterations=50, batch=None, device="cpu", input_size=None,
             seed=0):
    """Caffe's `caffe time` on the TRAIN phase of a net, on random data of the fed shapes."""
    device = devices.torch_device(device)
    shapes = feed_shapes(net_param, source, batch, input_size)
    generator = torch.Generator().manual_seed(seed)
    module = builder.Net(net_param, "TRAIN", source, generator, input_shapes=shapes).to(device)
    feeds = {name: torch.rand(shape, generator=generator).to(device)
             for name, shape in shapes.items()}
    steps = module.layer_modules()
    clock = _Clock(device)
    elapsed = {layer.name: [0.0, 0.0] for layer, _ in steps}
    whole = 0.0
    # one untimed iteration first, as caffe time does, so allocation is not measured
    for timed in (False,) + (True,) * iterations:
        layer_clock = elapsed if timed else {name: [0.0, 0.0] for name in elapsed}
        passes = _forward_layers(steps, feeds, clock, layer_clock)
        computed = {name: top for layer, _, _, tops in passes
                    for name, top in zip(layer.top, tops)}
        _backward_layers(passes, _seeds(module, computed), clock, layer_clock)
        started = clock.now()
        blobs = module.forward(feeds)
        seeds = _seeds(module, blobs)
        torch.autograd.backward([blobs[name] for name in seeds], list(seeds.values()))
        whole += (clock.now() - started) if timed else 0.0
        module.zero_grad(set_to_none=True)
    per_iteration = 1000.0 / iterations
    layers = [LayerTime(layer.name, layer.type, elapsed[layer.name][0] * per_iteration,
                        elapsed[layer.name][1] * per_iteration) for layer, _ in steps]
    return Timing(layers, whole * per_iteration, iterations, str(device), shapes)


def format_timing(timing):
    """The report as `caffe time` prints it: per layer, then the averages."""
    shapes = ", ".join(f"{name} {'x'.join(map(str, shape))}"
                       for name, shape in timing.feed_shapes.items())
    width = max(len(layer.name) for layer in timing.layers)
    lines = [f"{timing.iterations} iterations on {timing.device}; random {shapes}",
             "Average time per layer:"]
    for layer in timing.layers:
        lines.append(f"  {layer.name.ljust(width)}  forward: {layer.forward_ms:9.4f} ms  "
                     f"backward: {layer.backward_ms:9.4f} ms  ({layer.type})")
    forward = sum(layer.forward_ms for layer in timing.layers)
    backward = sum(layer.backward_ms for layer in timing.layers)
    lines += [f"Average Forward pass: {forward:.4f} ms (sum of layers)",
              f"Average Backward pass: {backward:.4f} ms (sum of layers)",
              f"Average Forward-Backward: {timing.iteration_ms:.4f} ms (whole iteration)",
              f"Total Time: {timing.iteration_ms * timing.iterations:.4f} ms"]
    return "\n".join(lines)
