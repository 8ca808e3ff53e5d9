"""`runner export MODEL --format caffe|onnx`: a trained model as another framework's files.

caffe: `<stem>.prototxt`, the deploy net (runner/infer/deploy.py: an Input layer in place of the data
layer, no loss), and `<stem>.caffemodel`, its weights (runner/files/caffe_model.py); the pair that
Caffe's tools and OpenCV's `cv2.dnn.readNetFromCaffe` load, and that `--model`, `--weights` and
`inspect` read back. srcaffe's own layer types are written as the Caffe layers that compute the
same (PixelShuffle: a fixed Deconvolution); shared blobs keep their `param { name }` and are
stored under every layer that uses them, as Caffe stores them.

onnx: `<stem>.onnx`, the same deploy net with its weights through torch.onnx's exporter, its
batch, height and width dynamic, in standard ONNX operators (Conv, ConvTranspose, PRelu, Relu,
...): the fast paths (runner/net/fast_paths.py) are off while it is traced, so a Deconvolution
is one ConvTranspose, not the sub-pixel convolution it runs as here. onnxruntime and OpenCV's
`cv2.dnn.readNetFromONNX` run it.
"""
import contextlib
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from google.protobuf import text_format

from runner.config import caffe_proto
from runner.errors import UserError
from runner.files import caffe_model, outputs
from runner.infer import deploy, torch_engine
from runner.net import fast_paths, feeds, structure



def caffe_net(deployed, net):
    """(NetParameter, {layer name: [arrays]}) of a deploy net and its built Net as Caffe runs
    them: every computing layer in its `caffe_form`, with its blobs in Caffe's layouts."""
    steps = iter(net.layer_modules())
    layers, blobs = [], {}
    for layer in deployed.layer:
        if layer.type in feeds.FED_LAYERS:
            layers.append(layer)
            continue
        _, module = next(steps)
        caffe_layer, layer_blobs = module.caffe_form(layer)
        layers.append(caffe_layer)
        if layer_blobs:
            blobs[layer.name] = [blob.detach().cpu().numpy() for blob in layer_blobs]
    return replace(deployed, layer=layers), blobs


def caffe_files(model_path, model):
    """{suffix: contents} of the Caffe pair for a loaded ModelFile: the blobs the deploy net
    holds once the model's weights are copied in (so they are checked to fit it)."""
    _, deployed, module = torch_engine.trained_deploy_net(model_path, model)
    net_param, blobs = caffe_net(deployed, module)
    header = f"# The deploy net of {Path(model_path).name}, written by `runner export`.\n"
    return {caffe_model.NET_SUFFIX: header + text_format.MessageToString(
                caffe_proto.from_schema(net_param)),
            caffe_model.SUFFIX: caffe_model.to_caffemodel(net_param, blobs)}


ONNX_SUFFIX = ".onnx"
# the dynamic axes of the ONNX model's input (and so of its output)
ONNX_DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


class DeployImage(torch.nn.Module):
    """A deploy Net as a module from its input blob to its output blob (what ONNX exports)."""

    def __init__(self, net, input_name, output_name):
        super().__init__()
        self.net, self.input_name, self.output_name = net, input_name, output_name

    def forward(self, image):
        return self.net({self.input_name: image})[self.output_name]


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx's exporter without its notes about operators of torchvision (not installed,
    not used) and about torch's own deprecations: nothing a user of `runner export` acts on."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        exporter_log.setLevel(level)


def onnx_files(model_path, model):
    """{".onnx": bytes} of a loaded ModelFile's deploy net: input and output named after the
    net's blobs, N x C x H x W with N, H and W dynamic."""
    trained, deployed, module = torch_engine.trained_deploy_net(model_path, model)
    input_name, output_name = deploy.input_blob(deployed, str(model_path)), \
        deploy.output_blob(deployed)
    image = DeployImage(module, input_name, output_name).eval()
    example = torch.zeros(1, 1, *structure.DEFAULT_INPUT_SIZE)
    dims = {axis: torch.export.Dim(name) for axis, name in ONNX_DYNAMIC_AXES.items()}
    with fast_paths.disabled(), torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(image, (example,), dynamo=True, verbose=False,
                                    input_names=[input_name], output_names=[output_name],
                                    dynamic_shapes={"image": dims})
    proto = program.model_proto
    about = ", ".join(filter(None, (trained.name, f"iteration {model.iteration}")))
    proto.doc_string = (f"The deploy net of {Path(model_path).name} ({about}), written by "
                        "srcaffe's `runner export`.")
    return {ONNX_SUFFIX: proto.SerializeToString()}


# format name -> the files it writes, {suffix: contents}, for (model path, ModelFile); the
# command line lists the names itself (runner/cli.py EXPORT_FORMATS) so that it imports no torch
FORMATS = {"caffe": caffe_files, "onnx": onnx_files}


def export(model_path, out_dir=None, format_name="caffe"):
    """Write the model's files in `format_name` to `out_dir` (default: beside the model), named
    after it, all or nothing; returns their paths. An output never replaces an input."""
    model_path = Path(model_path)
    model = caffe_model.read_model(model_path)
    files = FORMATS[format_name](model_path, model)
    folder = outputs.writable_folder(model_path.parent if out_dir is None else out_dir)
    contents = {folder / f"{model_path.stem}{suffix}": data for suffix, data in files.items()}
    inputs = {model_path.resolve(), Path(model.net_source).resolve()}
    for path in contents:
        if path.resolve() in inputs:
            raise UserError(path, "is an input of this export: give another --out")
    return outputs.write_files(contents)
