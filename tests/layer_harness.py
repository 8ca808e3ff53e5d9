"""One layer run forward and backward inside a real Net (Input layers feeding its bottoms), in
float64, for comparison with the references the layer tests write in numpy."""
from dataclasses import dataclass

import numpy as np
import torch

from runner.config import schema
from runner.net.builder import Net


def layer_net(layer, bottom_shapes, phase="TRAIN", seed=0):
    """A float64 Net: an Input layer with a top per bottom ({name: shape}), then `layer` (a
    mapping, as a YAML net file gives it)."""
    layers = [{"name": "input", "type": "Input", "top": list(bottom_shapes),
               "input_param": {"shape": [{"dim": list(shape)}
                                         for shape in bottom_shapes.values()]}}, layer]
    net_param = schema.from_mapping(schema.NetParameter, {"layer": layers}, "test.yaml")
    return Net(net_param, phase, "test.yaml", torch.Generator().manual_seed(seed)).double()


@dataclass
class Pass:
    tops: list              # numpy arrays, one per top
    top_grads: list         # the random gradients the tops were given
    bottom_grads: dict      # name -> numpy array (zeros where autograd gave none)
    blob_grads: list        # numpy array per parameter blob (None where it gets none)
    module: torch.nn.Module


def run_layer(layer, inputs, phase="TRAIN", blobs=None, seed=1):
    """Forward `inputs` ({bottom name: array}) through `layer`, then backward from random top
    gradients: sum(top * gradient) is the objective. `blobs` replace the filled parameters."""
    net = layer_net(layer, {name: value.shape for name, value in inputs.items()}, phase)
    (_, module), = net.layer_modules()
    if blobs is not None:
        with torch.no_grad():
            for blob, value in zip(module.blobs(), blobs):
                blob.copy_(torch.as_tensor(value))
    feeds = {name: torch.tensor(value, dtype=torch.float64, requires_grad=True)
             for name, value in inputs.items()}
    blobs_out = net.forward(feeds)
    tops = [blobs_out[name] for name in layer.get("top", [])]
    generator = np.random.default_rng(seed)
    top_grads = [generator.standard_normal(tuple(top.shape)) for top in tops]
    objective = sum((top * torch.from_numpy(grad)).sum() for top, grad in zip(tops, top_grads))
    if torch.is_tensor(objective) and objective.requires_grad:
        objective.backward()
    bottom_grads = {name: (feed.grad.numpy() if feed.grad is not None
                           else np.zeros(feed.shape)) for name, feed in feeds.items()}
    blob_grads = [None if blob.grad is None else blob.grad.numpy() for blob in module.blobs()]
    return Pass([top.detach().numpy() for top in tops], top_grads, bottom_grads, blob_grads,
                module)


def assert_close(ours, reference, tolerance=1e-9):
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    np.testing.assert_allclose(ours, reference, rtol=tolerance, atol=tolerance)
