"""Caffe models in and out: `runner export --format caffe`, checked by OpenCV's Caffe importer (a
client we did not write), and .caffemodel files read back by --weights, --model and inspect."""
import struct

import cv2
import numpy as np
import pytest
import torch

from helpers import TINY_NET, assert_one_line_error, tiny_run
from in_process import run_main
from runner import export
from runner.config import caffe_proto, schema
from runner.files import caffe_model, snapshot
from runner.imaging import datasets, matlab
from runner.infer import tiles, torch_engine
from sr_models import FSRCNN_NET, ROOT, run_as_predict, save_initial_model

BUTTERFLY = datasets.data_root() / "Set5" / "butterfly_GT.bmp"
FSRCNN_S_NET = ROOT / "configs" / "fsrcnn_s_net.yaml"
SRCNN_NET = ROOT / "configs" / "srcnn_net.yaml"
# FSRCNN with one slope for all channels of its shrinking layer: Caffe stores that slope as a
# 0-d blob, our PReLU as a (1,) tensor.
SHARED_PRELU_NET = FSRCNN_NET.read_text().replace(
    "type: PReLU, bottom: conv2, top: conv2}",
    "type: PReLU, bottom: conv2, top: conv2, prelu_param: {channel_shared: true}}")


def varied(blobs):
    """Weights that make every blob matter: MSRA-sized kernels, nonzero biases, PReLU slopes of
    both signs that differ per channel (a transposed layout or a shuffled channel would show)."""
    generator = np.random.default_rng(3)
    for name, arrays in blobs.items():
        if name.startswith("prelu"):
            arrays[0][:] = generator.uniform(-0.5, 0.5, arrays[0].shape)
        else:
            weights, bias = arrays
            weights *= np.sqrt(2 / weights[0].size) / weights.std()
            bias[:] = generator.uniform(-0.1, 0.1, bias.shape)


def butterfly_y():
    """The Y plane (MATLAB rgb2ycbcr) of a real Set5 image, 0..1."""
    return (matlab.rgb2y(cv2.imread(str(BUTTERFLY)), channel_order="bgr") / 255.0) \
        .astype(np.float32)


def export_model(folder, net_file=FSRCNN_NET, net_text=None, name="fsrcnn"):
    model_path = save_initial_model(folder / f"{name}.model", net_file, edit=varied,
                                    net_text=net_text)
    prototxt, caffemodel = export.export(model_path, folder / "caffe")
    return model_path, prototxt, caffemodel


def opencv_forward(opencv_net):
    """An OpenCV dnn Net as a function from its input array to its output array."""
    def forward(blob):
        opencv_net.setInput(blob)
        return opencv_net.forward()
    return forward


def opencv_output(prototxt, caffemodel, model, plane):
    """OpenCV's Caffe importer on the plane, fed and cropped as runner/infer/tiles.py feeds our net."""
    return run_as_predict(model, plane,
                          opencv_forward(cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))))


# --------------------------------------------------------------------------- OpenCV

# SRCNN works on the bicubic-upscaled image: a 96x96 crop of the butterfly keeps it quick.
NETS = {"fsrcnn": (FSRCNN_NET, None, None, (768, 768)),
        "fsrcnn_s": (FSRCNN_S_NET, None, None, (768, 768)),
        "fsrcnn_shared_prelu": (FSRCNN_NET, SHARED_PRELU_NET, None, (768, 768)),
        "srcnn": (SRCNN_NET, None, 3, (288, 288))}


@pytest.mark.parametrize("name", NETS)
def test_opencv_runs_the_exported_pair_as_runner_predict_does(tmp_path, name):
    net_file, net_text, scale, output_size = NETS[name]
    model_path, prototxt, caffemodel = export_model(tmp_path, net_file, net_text, name)
    model = torch_engine.load_for_inference(model_path, scale=scale)
    plane = butterfly_y()
    if model.upsamples_first:
        plane = plane[80:176, 80:176]
    ours = tiles.super_resolve(model, plane)          # what `runner predict` computes for Y
    theirs = opencv_output(prototxt, caffemodel, model, plane)
    assert ours.shape == theirs.shape == output_size
    assert ours.std() > 0.2                           # far from a constant output
    difference = np.abs(theirs - ours).max()
    print(f"{name}: OpenCV vs runner predict, max abs difference {difference:.2e}")
    assert difference < 1e-4


def test_deploy_prototxt_has_an_input_layer_and_no_data_or_loss(tmp_path):
    _, prototxt, _ = export_model(tmp_path)
    deployed = caffe_proto.parse_text(schema.NetParameter, prototxt.read_text(), str(prototxt))
    types = [layer.type for layer in deployed.layer]
    assert types[0] == "Input" and deployed.layer[0].input_param.shape[0].dim == [1, 1, 32, 32]
    assert "HDF5Data" not in types and "EuclideanLoss" not in types
    assert types[1:] == ["Convolution", "PReLU"] * 7 + ["Deconvolution"]


# --------------------------------------------------------------------------- the binary format

def test_blob_proto_bytes_are_caffes_wire_format():
    # Hand-encoded from caffe.proto: BlobProto.data = 5 (packed float), shape = 7;
    # BlobShape.dim = 1 (packed int64). Tag byte = field number << 3 | 2 (length-delimited).
    blob = caffe_proto.message_type(schema.BlobProto)()
    blob.shape.dim.extend([2])
    blob.data.extend([1.0, -2.5])
    expected = (bytes([5 << 3 | 2, 8]) + struct.pack("<2f", 1.0, -2.5)
                + bytes([7 << 3 | 2, 3, 1 << 3 | 2, 1, 2]))
    assert blob.SerializeToString() == expected
    layer = caffe_proto.message_type(schema.LayerParameter)()
    layer.blobs.add().data.append(0.0)
    assert layer.SerializeToString()[0] == 7 << 3 | 2      # LayerParameter.blobs = 7


def test_caffemodel_blobs_have_caffes_shapes(tmp_path):
    _, _, caffemodel = export_model(tmp_path, FSRCNN_NET, SHARED_PRELU_NET)
    message = caffe_proto.message_type(schema.NetParameter)()
    message.ParseFromString(caffemodel.read_bytes())
    shapes = {layer.name: [list(blob.shape.dim) if blob.HasField("shape") else None
                           for blob in layer.blobs] for layer in message.layer}
    assert shapes["data"] == [] and message.layer[0].type == "Input"
    assert shapes["conv1"] == [[56, 1, 5, 5], [56]]              # (out, in, kh, kw), bias
    assert shapes["deconv"] == [[56, 1, 9, 9], [1]]              # (in, out, kh, kw), bias
    assert shapes["prelu1"] == [[56]]
    assert shapes["prelu2"] == [None]       # channel_shared: Caffe's 0-d blob, no shape
    assert len(message.layer[4].blobs[0].data) == 1


@pytest.mark.parametrize("net_text", [None, SHARED_PRELU_NET], ids=["fsrcnn", "shared_prelu"])
def test_export_then_import_gives_identical_weights(tmp_path, net_text):
    model_path, _, caffemodel = export_model(tmp_path, FSRCNN_NET, net_text)
    original = snapshot.load_model(model_path).read_blobs()
    imported = caffe_model.read_model(caffemodel).read_blobs()
    assert list(imported) == list(original)
    for name, blobs in original.items():
        assert len(imported[name]) == len(blobs)
        for ours, theirs in zip(blobs, imported[name]):
            assert torch.equal(torch.from_numpy(ours), torch.from_numpy(theirs)), name
    loaded = torch_engine.load_for_inference(caffemodel).net.blobs_by_layer()
    for name, blobs in original.items():
        for ours, theirs in zip(blobs, loaded[name]):
            assert torch.equal(torch.from_numpy(ours), theirs), name


# --------------------------------------------------------------------------- import by the CLI

def test_train_weights_fine_tunes_from_a_caffemodel(tmp_path, capfd):
    solver = tiny_run(tmp_path, max_iter=0, snapshot=0, prefix="tuned/tiny")
    source = save_initial_model(tmp_path / "source.model", tmp_path / "net.yaml", seed=5,
                                edit=varied, net_text=TINY_NET)
    _, caffemodel = export.export(source, tmp_path / "caffe")
    result = run_main(capfd, "train", "--solver", solver, "--weights", caffemodel)
    assert result.returncode == 0, result.stderr
    tuned = snapshot.load_model(tmp_path / "tuned" / "tiny_iter_0.model").read_blobs()
    for name, blobs in snapshot.load_model(source).read_blobs().items():
        for expected, copied in zip(blobs, tuned[name]):
            assert torch.equal(torch.from_numpy(expected), torch.from_numpy(copied)), name


def test_predict_and_inspect_read_a_caffemodel_with_its_prototxt(tmp_path, capfd):
    model_path, _, caffemodel = export_model(tmp_path)
    image = tmp_path / "small.png"
    cv2.imwrite(str(image), cv2.imread(str(BUTTERFLY))[100:140, 90:140])
    outputs = {}
    for model in (model_path, caffemodel):
        folder = tmp_path / model.suffix
        result = run_main(capfd, "predict", image, "--model", model, "--out", folder)
        assert result.returncode == 0, result.stderr
        outputs[model.suffix] = cv2.imread(str(folder / "small_x3_fsrcnn-56_12_4.png"))
    np.testing.assert_array_equal(outputs[".caffemodel"], outputs[".model"])
    result = run_main(capfd, "inspect", caffemodel, "--input", "7x7")
    assert result.returncode == 0, result.stderr
    assert "12,464 (convolution and deconvolution kernels)" in result.stdout
    assert "fsrcnn.prototxt" in result.stdout and "1x1x21x21" in result.stdout


def test_export_command_writes_the_pair_beside_the_model(tmp_path, capfd):
    model_path = save_initial_model(tmp_path / "fsrcnn.model")
    result = run_main(capfd, "export", model_path, "--format", "caffe")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == \
        ["fsrcnn.caffemodel", "fsrcnn.model", "fsrcnn.prototxt"]
    assert f"wrote {tmp_path / 'fsrcnn.caffemodel'}" in result.stdout


# --------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An exported FSRCNN and FSRCNN-s pair, to be damaged by copies."""
    folder = tmp_path_factory.mktemp("exported")
    _, prototxt, caffemodel = export_model(folder)
    _, _, small_caffemodel = export_model(folder, FSRCNN_S_NET, name="fsrcnn_s")
    return prototxt, caffemodel, small_caffemodel


def bad_pair(folder, prototxt_text, caffemodel_bytes):
    (folder / "bad.prototxt").write_text(prototxt_text)
    (folder / "bad.caffemodel").write_bytes(caffemodel_bytes)
    return folder / "bad.caffemodel"


def test_caffemodel_of_another_net_is_one_error_line(tmp_path, exported, capfd):
    prototxt, _, small_caffemodel = exported
    bad = bad_pair(tmp_path, prototxt.read_text(), small_caffemodel.read_bytes())
    expected = ("bad.caffemodel", "layer 'conv1': blob 0 has shape (32, 1, 5, 5) in the source "
                "but (56, 1, 5, 5) in the net")
    image = tmp_path / "small.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    assert_one_line_error(run_main(capfd, "predict", image, "--model", bad, "--out",
                                   tmp_path / "out"), *expected)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert_one_line_error(run_main(capfd, "inspect", bad), *expected)
    assert_one_line_error(run_main(capfd, "export", bad, "--out", tmp_path / "exported"),
                          *expected)
    assert not (tmp_path / "exported").exists()
    solver = tiny_run(tmp_path, max_iter=0, snapshot=0)
    assert_one_line_error(run_main(capfd, "train", "--solver", solver, "--weights", bad),
                          "bad.caffemodel", "layer 'conv1': blob 0 has shape")


@pytest.mark.parametrize("damage, problem", [
    (lambda data: data[:len(data) // 2], "not a valid .caffemodel"),
    (lambda data: np.random.default_rng(0).bytes(4096), ".caffemodel"),
    (lambda data: b"", "not a .caffemodel with layers"),
], ids=["truncated", "random_bytes", "empty"])
def test_damaged_caffemodel_is_one_error_line(tmp_path, exported, capfd, damage, problem):
    prototxt, caffemodel, _ = exported
    bad = bad_pair(tmp_path, prototxt.read_text(), damage(caffemodel.read_bytes()))
    for arguments in (("inspect", bad), ("export", bad, "--out", tmp_path / "out")):
        assert_one_line_error(run_main(capfd, *arguments), "bad.caffemodel", problem)
    assert not (tmp_path / "out").exists()


def test_prototxt_with_an_unsupported_layer_is_one_error_line(tmp_path, exported, capfd):
    prototxt, caffemodel, _ = exported
    text = prototxt.read_text().replace('type: "PReLU"', 'type: "LRN"', 1)
    bad = bad_pair(tmp_path, text, caffemodel.read_bytes())
    assert_one_line_error(run_main(capfd, "inspect", bad), "bad.prototxt",
                          "'LRN' is not one of")
    assert_one_line_error(run_main(capfd, "export", bad, "--out", tmp_path / "out"),
                          "bad.prototxt", "'LRN' is not one of")
    assert not (tmp_path / "out").exists()


def test_caffemodel_without_its_prototxt_is_one_error_line(tmp_path, exported, capfd):
    _, caffemodel, _ = exported
    alone = tmp_path / "alone.caffemodel"
    alone.write_bytes(caffemodel.read_bytes())
    assert_one_line_error(run_main(capfd, "inspect", alone), "alone.caffemodel",
                          f"its deploy net {tmp_path / 'alone.prototxt'} is missing")


def test_export_never_replaces_its_input(exported, capfd):
    prototxt, caffemodel, _ = exported
    before = caffemodel.read_bytes(), prototxt.read_text()
    assert_one_line_error(run_main(capfd, "export", caffemodel), "is an input of this export")
    assert (caffemodel.read_bytes(), prototxt.read_text()) == before
