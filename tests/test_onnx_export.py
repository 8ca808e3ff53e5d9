"""`runner export --format onnx`: the shipped models' deploy nets run by onnxruntime and by
OpenCV's ONNX importer (runtimes we did not write) as `runner predict` runs them, on real Set5
images of several sizes (the height, width and batch are dynamic)."""
import cv2
import numpy as np
import onnx
import onnxruntime
import pytest

from runner import cli
from runner.imaging import datasets, matlab
from runner.infer import tiles, torch_engine
from sr_models import ROOT, run_as_predict
from test_caffe_model import opencv_forward

MODELS = ROOT / "results" / "models"
SHIPPED = ("fsrcnn_x3", "fsrcnn_s_x3", "srcnn_x3")
TOLERANCE = 1e-4


def set5_y(name):
    """The Y plane (MATLAB rgb2ycbcr) of a Set5 image, 0..1."""
    image = cv2.imread(str(datasets.data_root() / "Set5" / f"{name}_GT.bmp"))
    return (matlab.rgb2y(image, channel_order="bgr") / 255.0).astype(np.float32)


# Planes of different sizes, none square: the whole woman (344x228) and a butterfly crop; the
# SRCNN-style net runs on the bicubic-upscaled plane, so it gets crops.
def planes(name):
    woman, butterfly = set5_y("woman"), set5_y("butterfly")[40:101, 60:157]
    return [woman[100:170, 80:130] if name == "srcnn_x3" else woman, butterfly]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{model name: .onnx path}, written by the command line."""
    folder = tmp_path_factory.mktemp("onnx")
    for name in SHIPPED:
        assert cli.main(["export", str(MODELS / f"{name}.model"), "--format", "onnx",
                         "--out", str(folder)]) == 0
    return {name: folder / f"{name}.onnx" for name in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
def test_onnxruntime_and_opencv_run_the_export_as_runner_predict_does(exported, name):
    model = torch_engine.load_for_inference(MODELS / f"{name}.model")
    session = onnxruntime.InferenceSession(str(exported[name]),
                                           providers=["CPUExecutionProvider"])
    opencv_net = cv2.dnn.readNetFromONNX(str(exported[name]))
    runtimes = {"onnxruntime": lambda blob: session.run(None, {"data": blob})[0],
                "OpenCV": opencv_forward(opencv_net)}
    for plane in planes(name):
        ours = tiles.super_resolve(model, plane)        # what `runner predict` computes for Y
        assert ours.shape == (3 * plane.shape[0], 3 * plane.shape[1]) and ours.std() > 0.05
        for runtime, forward in runtimes.items():
            theirs = run_as_predict(model, plane, forward)
            difference = np.abs(theirs - ours).max()
            print(f"{name} {plane.shape}: {runtime} vs runner predict, max abs difference "
                  f"{difference:.2e}")
            assert theirs.shape == ours.shape and difference < TOLERANCE


def test_batch_is_dynamic(exported):
    session = onnxruntime.InferenceSession(str(exported["fsrcnn_s_x3"]),
                                           providers=["CPUExecutionProvider"])
    woman = set5_y("woman")
    batch = np.stack([woman[:50, :60], woman[100:150, 90:150]])[:, None]
    together = session.run(None, {"data": batch})[0]
    for index, image in enumerate(batch):
        alone = session.run(None, {"data": image[None]})[0]
        np.testing.assert_allclose(together[index], alone[0], atol=1e-6)


# The output's height as the architecture gives it (worked out by hand): the unpadded FSRCNN
# loses 12 LR pixels to its 5x5 and four 3x3 layers, FSRCNN-s 6 (5x5, one 3x3); FSRCNN-s's
# deconvolution (9x9, stride 3, pad 3) makes 3h of h, the shipped x3's (pad 6, every output
# pixel from all its taps) 3(h - 1) + 9 - 12 = 3h - 6; SRCNN 9-1-5 loses 8 + 0 + 4.
@pytest.mark.parametrize("name, operators, output_height", [
    ("fsrcnn_x3", {"Conv", "PRelu", "ConvTranspose"}, "3*height - 42"),
    ("fsrcnn_s_x3", {"Conv", "PRelu", "ConvTranspose"}, "3*height - 18"),
    ("srcnn_x3", {"Conv", "Relu"}, "height - 12")])
def test_export_is_standard_operators_with_symbolic_batch_height_and_width(
        exported, name, operators, output_height):
    proto = onnx.load(str(exported[name]))
    onnx.checker.check_model(proto, full_check=True)
    # the sub-pixel fast path is a Deconvolution here: one ConvTranspose in the file
    assert {node.op_type for node in proto.graph.node} == operators
    input_dims, output_dims = ([dim.dim_param or dim.dim_value for dim in
                                value.type.tensor_type.shape.dim]
                               for value in (proto.graph.input[0], proto.graph.output[0]))
    assert input_dims == ["batch", 1, "height", "width"]
    assert output_dims == ["batch", 1, output_height, output_height.replace("height", "width")]
    assert proto.graph.input[0].name == "data"
    assert f"{name}.model" in proto.doc_string
