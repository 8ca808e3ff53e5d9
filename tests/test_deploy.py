"""Deploy nets for predict, test, inspect and export: inputs that only a loss reads go with the
loss, nets that branch and join run (whole and tiled), bicubic-input nets take their scale
from the data, as SRCNN does, and a net whose output is odd lines up with prep's labels."""
import cv2
import numpy as np
import pytest
import torch

from in_process import run_main
from prep import subimages
from runner import inspect, timing
from runner.config import loading, schema
from runner.imaging import datasets, images, matlab
from runner.infer import deploy, tiles, torch_engine
from runner.net import structure
from runner.net.builder import Net
from sr_models import ROOT, bicubic_kernel, save_initial_model

# A Caffe deploy file in the form public VDSR repositories ship (legacy inputs, the Eltwise
# operation as its enum number), keeping the label input and the loss of its train net.
DEPLOY_WITH_LABEL = """name: "residual"
input: "data"
input_dim: 1 input_dim: 1 input_dim: 24 input_dim: 24
input: "label"
input_dim: 1 input_dim: 1 input_dim: 24 input_dim: 24
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "msra" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 1 kernel_size: 3 pad: 1
                            weight_filler { type: "msra" } } }
layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "conv2" top: "sum"
        eltwise_param { operation: 1 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "sum" bottom: "label" top: "loss" }
"""

# Branches and joins: a Split, two branches of different reach, their Concat, a residual sum.
BRANCHING_NET = """name: branching
layer:
  - {name: data, type: Input, top: [data, label],
     input_param: {shape: [{dim: [1, 1, 16, 16]}, {dim: [1, 1, 16, 16]}]}}
  - {name: conv1, type: Convolution, bottom: data, top: conv1,
     convolution_param: {num_output: 4, kernel_size: 3, pad: 1, weight_filler: {type: msra},
                         bias_filler: {type: gaussian, std: 0.1}}}
  - {name: split, type: Split, bottom: conv1, top: [left, right]}
  - {name: wide, type: Convolution, bottom: left, top: wide,
     convolution_param: {num_output: 3, kernel_size: 5, pad: 2, weight_filler: {type: msra}}}
  - {name: pooled, type: Pooling, bottom: right, top: pooled,
     pooling_param: {pool: AVE, kernel_size: 3, stride: 1, pad: 1}}
  - {name: join, type: Concat, bottom: [wide, pooled], top: join}
  - {name: tanh, type: TanH, bottom: join, top: join}
  - {name: out, type: Convolution, bottom: join, top: out,
     convolution_param: {num_output: 1, kernel_size: 3, pad: 1, weight_filler: {type: msra}}}
  - {name: sum, type: Eltwise, bottom: [data, out], top: sum,
     eltwise_param: {coeff: [1, 0.5]}}
  - {name: loss, type: EuclideanLoss, bottom: [sum, label], top: loss}
"""


def test_an_input_only_the_loss_reads_goes_with_the_loss():
    trained = loading.parse_config(schema.NetParameter, DEPLOY_WITH_LABEL, "vdsr.prototxt")
    deployed = deploy.deploy_net(trained, source="vdsr.prototxt")
    assert [layer.name for layer in deployed.layer] == ["input", "conv1", "relu1", "conv2",
                                                       "sum"]
    (inputs,) = [layer for layer in deployed.layer if layer.type == "Input"]
    assert inputs.top == ["data"] and inputs.input_param.shape[0].dim == [1, 1, 24, 24]
    assert deploy.input_blob(deployed) == "data" and deploy.output_blob(deployed) == "sum"
    assert deployed.layer[-1].eltwise_param.operation == "SUM"
    net = Net(deployed, "TEST")
    assert net.output_shapes()[-1][2] == [(1, 1, 24, 24)]
    two_tops = loading.parse_config(schema.NetParameter, BRANCHING_NET, "net.yaml")
    (inputs,) = [layer for layer in deploy.deploy_net(two_tops).layer if layer.type == "Input"]
    assert inputs.top == ["data"] and [shape.dim for shape in inputs.input_param.shape] == \
        [[1, 1, 16, 16]]


def test_a_deploy_file_with_its_label_predicts(tmp_path, capfd):
    net_file = tmp_path / "vdsr.prototxt"
    net_file.write_text(DEPLOY_WITH_LABEL)
    model_path = save_initial_model(tmp_path / "residual.model", net_file, scale=2)
    model = torch_engine.load_for_inference(model_path)
    assert (model.scale, model.upsamples_first, model.output_name) == (2, True, "sum")
    image = tmp_path / "small.png"
    cv2.imwrite(str(image), (np.random.default_rng(1).random((20, 14, 3)) * 255)
                .astype(np.uint8))
    result = run_main(capfd, "predict", image, "--model", model_path, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(tmp_path / "out" / "small_x2_residual.png")).shape == (40, 28, 3)


def test_a_net_that_branches_and_joins_runs_whole_and_tiled(tmp_path):
    net_file = tmp_path / "branching.yaml"
    net_file.write_text(BRANCHING_NET)
    model = torch_engine.load_for_inference(save_initial_model(tmp_path / "b.model", net_file,
                                                               scale=3))
    assert (model.scale, model.geometry.factor, model.geometry.shrink) == (3, 1, 0)
    # 3 + 5 + 3 pixel kernels on the longest path, 3x3 pooling on the other: at most 2 + 4 +
    # 2 + 2 pixels of reach, and the bound sums every layer
    branching = deploy.deploy_net(loading.parse_config(schema.NetParameter, BRANCHING_NET,
                                                       "net.yaml"))
    assert structure.receptive_width(branching) == 2 + 4 + 2 + 2
    plane = np.random.default_rng(0).random((15, 11)).astype(np.float32)
    whole = tiles.super_resolve(model, plane, tile_size=None)
    assert whole.shape == (45, 33) and whole.std() > 0
    for tile_size in (16, 9):
        assert np.abs(tiles.super_resolve(model, plane, tile_size) - whole).max() < 1e-5
    summary = inspect.summarize_net(loading.parse_config(schema.NetParameter, BRANCHING_NET,
                                                          "b.yaml"), "b.yaml", (8, 8))
    assert [row.name for row in summary.layers][-1] == "sum"
    assert summary.weights == 4 * 9 + 3 * 4 * 25 + 7 * 9 and summary.scale is None


def test_time_runs_backward_through_every_branch():
    net_param = loading.load(schema.NetParameter, ROOT / "configs" / "vdsr_net.yaml")
    result = timing.time_net(net_param, "vdsr_net.yaml", iterations=1, batch=1,
                             input_size=(9, 9))
    assert len(result.layers) == 20 + 19 + 2
    assert all(layer.backward_ms > 0 for layer in result.layers), \
        [layer.name for layer in result.layers if not layer.backward_ms]


# MATLAB's bicubic x2 as a net in the layout of configs/fsrcnn_x2_long_net.yaml: a convolution
# that passes the LR pixel through and eats 6 pixels of context on each side, then the paper's
# 9x9 deconvolution at stride 2, pad 3: 39 outputs for 31 inputs, 23 short of 2 x 31 (odd).
BICUBIC_X2_NET = """name: bicubic-x2
layer:
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 1, 31, 31]}}}
  - {name: conv, type: Convolution, bottom: data, top: conv,
     convolution_param: {num_output: 1, kernel_size: 13}}
  - {name: deconv, type: Deconvolution, bottom: conv, top: deconv,
     convolution_param: {num_output: 1, kernel_size: 9, stride: 2, pad: 3}}
"""


def test_an_odd_output_lines_up_with_prep_labels_and_with_the_image(tmp_path):
    """MATLAB's x2 kernel reaches 8 HR pixels from an LR pixel, so one of the 9 taps is 0, and
    which one says where the net's output lies. With the last one 0, the net computes bicubic
    at the very HR pixels of prep's labels (39 = 2 * 19 + 1, the extra pixel past the
    footprint) and at the very HR pixels of the image in inference: what it learns from the
    labels is what it draws. Reference: MATLAB imresize; a one-pixel shift is tens of levels."""
    kernel = bicubic_kernel(scale=2)
    assert kernel[-1] == 0 and np.isclose(kernel.sum(), 2)

    def passes_and_upscales(blobs):
        blobs["conv"][0][0, 0, 6, 6] = 1.0
        blobs["deconv"][0][0, 0] = np.outer(kernel, kernel)

    net_file = tmp_path / "bicubic_x2.yaml"
    net_file.write_text(BICUBIC_X2_NET)
    model = torch_engine.load_for_inference(save_initial_model(
        tmp_path / "bicubic_x2.model", net_file, edit=passes_and_upscales, scale=2))
    geometry = model.geometry
    assert (geometry.shrink, geometry.padding, geometry.crop_start, geometry.crop_end) == \
        (23, 6, 0, 1)
    butterfly = cv2.imread(str(datasets.data_root() / "Set5" / "butterfly_GT.bmp"))
    high_res = matlab.modcrop(images.y_channel(butterfly, "matlab"), 2)
    low_res = matlab.imresize(high_res.astype(np.float64), 1 / 2)

    # inference: the whole image and tiles, against bicubic away from the image's border
    expected, inner = matlab.imresize(low_res, 2), np.s_[8:-8, 8:-8]
    plane = (low_res / 255).astype(np.float32)
    for tile_size in (None, 37):
        drawn = tiles.super_resolve(model, plane, tile_size) * 255
        assert np.abs(drawn - expected)[inner].max() < 1e-3, tile_size
    assert np.abs(drawn[8:-8, 9:-7] - expected[inner]).max() > 10

    # training: prep's pairs (19x19 LR every 38 HR pixels, 6 of context), each label the HR
    # image at twice its LR subimage's start, and the net's output on the input bicubic there
    # (4 pixels in from each side: the outermost need LR pixels the convolution ate)
    config = schema.PrepConfig(scale=2, lr_size=19, hr_size=39, lr_context=6)
    inputs, labels = subimages.make_pairs(high_res, config, stride=38)
    lr_uint8 = matlab.to_uint8(low_res)
    upscaled = matlab.imresize(lr_uint8.astype(np.float64), 2)
    with torch.no_grad():
        outputs = model.net({"data": torch.from_numpy(inputs[:, None] / np.float32(255))},
                            keep=("deconv",))["deconv"][:, 0].numpy() * 255
    starts = [19, 38, 57, 76, 95]      # every 19 LR pixels, 6 from the 128-pixel edges
    assert len(labels) == len(starts) ** 2
    for index, (row, col) in enumerate((row, col) for row in starts for col in starts):
        np.testing.assert_array_equal(labels[index],
                                      high_res[2 * row:2 * row + 39, 2 * col:2 * col + 39])
        np.testing.assert_array_equal(inputs[index],
                                      lr_uint8[row - 6:row + 25, col - 6:col + 25])
        window = upscaled[2 * row + 4:2 * row + 35, 2 * col + 4:2 * col + 35]
        assert np.abs(outputs[index, 4:35, 4:35] - window).max() < 1e-3


@pytest.mark.parametrize("prep_file, net_file", [
    ("prep_x2_long.yaml", "fsrcnn_x2_long_net.yaml"),
    ("prep_x3_long.yaml", "fsrcnn_x3_long_net.yaml"),
    ("prep_x4_long.yaml", "fsrcnn_x4_long_net.yaml"),
    ("prep_x3_fast.yaml", "fsrcnn_x3_fast_net.yaml")])
def test_recipes_compute_every_label_pixel_from_all_its_deconvolution_taps(prep_file, net_file):
    # The convolutions use up 6 pixels of context; the 9x9 deconvolution reaches further past
    # the footprint, so the long runs and the time-to-quality recipe cut more context and pad
    # the deconvolution to match: every label pixel of training is computed as a whole image
    # computes it.
    prep_config = loading.load(schema.PrepConfig, ROOT / "configs" / prep_file)
    net = loading.load(schema.NetParameter, ROOT / "configs" / net_file)
    [deconvolution] = [layer for layer in net.layer if layer.type == "Deconvolution"]
    param = deconvolution.convolution_param
    kernel, stride, pad = param.kernel_size[0], param.stride[0], param.pad[0]
    side = prep_config.lr_size + 2 * prep_config.lr_context - 12     # after the convolutions
    taps = torch.nn.functional.conv_transpose2d(
        torch.ones(1, 1, side, side), torch.ones(1, 1, kernel, kernel), stride=stride,
        padding=pad)[0, 0]
    assert taps.shape == (prep_config.hr_size, prep_config.hr_size)
    # the same pixels of a much larger input, which reaches every tap
    wide = torch.nn.functional.conv_transpose2d(
        torch.ones(1, 1, side + 20, side + 20), torch.ones(1, 1, kernel, kernel), stride=stride,
        padding=pad)[0, 0]
    offset = 10 * stride
    assert torch.equal(taps, wide[offset:offset + taps.shape[0], offset:offset + taps.shape[1]])
