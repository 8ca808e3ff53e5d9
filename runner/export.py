"""`runner export MODEL --format caffe`: a trained model as another framework's files.

caffe: `<stem>.prototxt`, the deploy net (runner/infer/deploy.py: an Input layer in place of the data
layer, no loss), and `<stem>.caffemodel`, its weights (runner/files/caffe_model.py); the pair that
Caffe's tools and OpenCV's `cv2.dnn.readNetFromCaffe` load, and that `--model`, `--weights` and
`inspect` read back. srcaffe's own layer types are written as the Caffe layers that compute the
same (PixelShuffle: a fixed Deconvolution); shared blobs keep their `param { name }` and are
stored under every layer that uses them, as Caffe stores them.
"""
from dataclasses import replace
from pathlib import Path

from google.protobuf import text_format

from runner.config import caffe_proto
from runner.errors import UserError
from runner.files import caffe_model, outputs
from runner.infer import deploy
from runner.net import feeds


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
    _, deployed, module = deploy.trained_deploy_net(model_path, model)
    net_param, blobs = caffe_net(deployed, module)
    header = f"# The deploy net of {Path(model_path).name}, written by `runner export`.\n"
    return {caffe_model.NET_SUFFIX: header + text_format.MessageToString(
                caffe_proto.from_schema(net_param)),
            caffe_model.SUFFIX: caffe_model.to_caffemodel(net_param, blobs)}


# format name -> the files it writes, {suffix: contents}, for (model path, ModelFile)
FORMATS = {"caffe": caffe_files}


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
