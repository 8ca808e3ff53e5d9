"""Deploy nets for predict, test, inspect and export: inputs that only a loss reads go with the
loss, nets that branch and join run (whole and tiled), and bicubic-input nets take their scale
from the data, as SRCNN does."""
import cv2
import numpy as np

from in_process import run_main
from runner import inspect, timing
from runner.config import loading, schema
from runner.infer import deploy, tiles
from runner.net.builder import Net
from sr_models import ROOT, save_initial_model

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
    model = deploy.load_for_inference(model_path)
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
    model = deploy.load_for_inference(save_initial_model(tmp_path / "b.model", net_file,
                                                         scale=3))
    assert (model.scale, model.geometry.factor, model.geometry.shrink) == (3, 1, 0)
    # 3 + 5 + 3 pixel kernels on the longest path, 3x3 pooling on the other: at most 2 + 4 +
    # 2 + 2 pixels of reach, and the bound sums every layer
    assert deploy.receptive_width(model.net) == 2 + 4 + 2 + 2
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
