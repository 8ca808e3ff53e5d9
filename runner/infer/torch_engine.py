"""The torch engine: a trained model run by the net builder (runner/net/builder.py) with its fast
paths, on the CPU or CUDA; it runs every layer srcaffe has. `runner test`, `runner export` and
the benches use it, and `runner predict` where OpenCV's engine cannot (runner/infer/engines.py).
"""
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from runner.errors import UserError
from runner.files import caffe_model
from runner.infer import deploy
from runner.net import builder, devices, fast_paths

ENGINE = "torch"


def _output_size(deploy_net_module, output_name, input_shapes):
    """(height, width) of the output blob for the given input shapes."""
    rows = deploy_net_module.output_shapes(input_shapes)
    shapes = {top: shape for (_, _, top_shapes, _), layer
              in zip(rows, deploy_net_module.layer_params)
              for top, shape in zip(layer.top, top_shapes)}
    return tuple(shapes[output_name][2:])


def net_geometry(deploy_param, module, source):
    """The Geometry of a built deploy net, from its blobs' shapes at the probe sizes."""
    input_name, output_name = deploy.input_blob(deploy_param, source), \
        deploy.output_blob(deploy_param)
    return deploy.measure_geometry(
        deploy_param,
        lambda size: _output_size(module, output_name, {input_name: (1, 1, size, size)}),
        source)


@dataclass
class TorchModel(deploy.InferenceModel):
    net: builder.Net
    device: torch.device

    engine = ENGINE

    @staticmethod
    def use_threads(count):
        """Compute on `count` threads: torch's (the net) and OpenCV's (colour, resizing)."""
        torch.set_num_threads(count)
        cv2.setNumThreads(count)

    @staticmethod
    def threads():
        return torch.get_num_threads()

    @property
    def concurrent_runs(self):
        # a forward pass keeps its blobs to itself; on a GPU, frames side by side gain nothing
        return self.device.type == "cpu"

    @torch.no_grad()
    def forward(self, plane):
        tensor = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None]
        output = self.net({self.input_name: tensor.to(self.device)},
                          keep=(self.output_name,))[self.output_name][0, 0]
        return output.cpu().numpy()


def trained_deploy_net(path, model):
    """(trained NetParameter, its deploy NetParameter, the deploy Net holding the model's
    weights), every parameter blob checked to be in the file with the net's shape before it
    is read."""
    trained = deploy.model_net(path, model)
    deployed = deploy.deploy_net(trained, source=str(path))
    module = builder.Net(deployed, "TEST", source=str(path))
    blobs = model.read_blobs(module.blobs_by_layer(), path)
    copied = module.copy_from({layer: [torch.from_numpy(blob) for blob in layer_blobs]
                               for layer, layer_blobs in blobs.items()}, path)
    missing = sorted(set(module.blobs_by_layer()) - set(copied))
    if missing:
        raise UserError(path, f"holds no weights for layer {missing[0]!r}")
    return trained, deployed, module


def load_for_inference(model_path, device="cpu", scale=None):
    """A TorchModel from a `.model` file. `scale`, when given, must be the model's; a net
    without a final Deconvolution (SRCNN) needs it, since its scale lives in its data."""
    path = Path(model_path)
    return inference_model(path, caffe_model.read_model(path), device, scale)


def inference_model(path, model, device="cpu", scale=None):
    """load_for_inference of a ModelFile already in memory (an average of several, say);
    `path` names it in errors and gives its name where its net has none."""
    path = Path(path)
    trained, deployed, module = trained_deploy_net(path, model)
    geometry = net_geometry(deployed, module, str(path))
    scale = deploy.inference_scale(path, model, geometry, scale)
    module.eval().requires_grad_(False)
    device = devices.torch_device(device)
    fast_paths.keep_freed_memory()
    module = fast_paths.preferred_layout(module.to(device), device)
    return TorchModel(deploy.input_blob(deployed, str(path)), deploy.output_blob(deployed),
                      scale, geometry, trained.name or path.stem, path, model.iteration,
                      module, device)
