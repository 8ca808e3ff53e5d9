"""The net builder and fillers: Caffe's shapes, losses, phases, multipliers and initialisation,
checked against numbers worked out by hand."""
import math

import h5py
import numpy as np
import pytest
import torch

from helpers import ROOT
from runner.config import loading, schema
from runner.errors import UserError
from runner.net import fillers
from runner.net.builder import Net
from runner.net.feeds import FED_LAYERS
from runner.net.layers.registry import LAYERS
from runner.net.structure import scale_of

CONFIGS = ROOT / "configs"
LR_SHAPES = {"data": (2, 1, 7, 7), "label": (2, 1, 21, 21)}


def load(name):
    return loading.load(schema.NetParameter, CONFIGS / name)


def load_text(name):
    return (CONFIGS / name).read_text()


def build(text, phase="TRAIN", seed=0, input_shapes=None, source="net.yaml"):
    net_param = loading.parse_config(schema.NetParameter, text, source)
    return Net(net_param, phase, source, torch.Generator().manual_seed(seed), input_shapes)


INPUT = "  - {name: input, type: Input, top: data, input_param: {shape: {dim: [2, 1, 7, 7]}}}\n"


def test_registry_covers_every_schema_layer_type():
    assert set(LAYERS) | set(FED_LAYERS) == set(schema.LAYER_TYPES)


# --------------------------------------------------------------------------- shipped nets

def test_weight_counts_of_the_shipped_nets():
    # FSRCNN(d, s, m): 5x5xd + dxs + m x 3x3xsxs + sxd + 9x9xd (the paper's count)
    def fsrcnn(d, s, m):
        return 5 * 5 * 1 * d + d * s + m * 3 * 3 * s * s + s * d + 9 * 9 * d * 1

    assert fsrcnn(56, 12, 4) == 12_464 and fsrcnn(32, 5, 1) == 3_937
    assert Net(load("fsrcnn_net.yaml"), "TRAIN", input_shapes=LR_SHAPES).weight_count() == 12_464
    assert Net(load("fsrcnn_s_net.yaml"), "TRAIN", input_shapes=LR_SHAPES).weight_count() == 3_937
    srcnn = Net(load("srcnn_net.yaml"), "TRAIN",
                input_shapes={"data": (2, 1, 33, 33), "label": (2, 1, 21, 21)})
    assert srcnn.weight_count() == 9 * 9 * 1 * 64 + 1 * 1 * 64 * 32 + 5 * 5 * 32 * 1 == 8_032


def test_fsrcnn_maps_7x7_to_21x21_and_srcnn_33x33_to_21x21():
    net = Net(load("fsrcnn_net.yaml"), "TEST", input_shapes=LR_SHAPES)
    rows = {name: tops for name, _, tops, _ in net.output_shapes()}
    assert rows["conv1"] == [(2, 56, 7, 7)] and rows["conv2"] == [(2, 12, 7, 7)]
    assert rows["deconv"] == [(2, 1, 21, 21)] and rows["loss"] == [()]
    blobs = net.forward({name: torch.rand(shape) for name, shape in LR_SHAPES.items()})
    assert blobs["deconv"].shape == (2, 1, 21, 21)
    srcnn = Net(load("srcnn_net.yaml"), "TEST",
                input_shapes={"data": (1, 1, 33, 33), "label": (1, 1, 21, 21)})
    assert srcnn.output_shapes()[-2][2] == [(1, 1, 21, 21)]     # 33 - 8 - 0 - 4


def test_shipped_nets_name_their_data_as_prep_writes_it():
    for name, folder in (("fsrcnn_net.yaml", "x3"), ("fsrcnn_s_net.yaml", "x3"),
                         ("srcnn_net.yaml", "srcnn_x3")):
        for phase, listing in (("TRAIN", "train.txt"), ("TEST", "test.txt")):
            net = Net(load(name), phase,
                      input_shapes={"data": (1, 1, 33, 33), "label": (1, 1, 21, 21)}
                      if name.startswith("srcnn") else LR_SHAPES)
            (layer,) = net.data_layers
            assert layer.hdf5_data_param.source == f"results/data/{folder}/{listing}"
            # SRCNN's test batch divides its 1,113 Set5 test pairs: one pass sees each once
            expected = 159 if name.startswith("srcnn") and phase == "TEST" else 128
            assert layer.hdf5_data_param.batch_size == expected
            assert layer.hdf5_data_param.shuffle == (phase == "TRAIN")
            assert list(layer.hdf5_data_param.dataset) == ["Input", "Ground"]


def test_scale_comes_from_the_final_deconvolution():
    assert scale_of(load("fsrcnn_net.yaml")) == 3
    assert scale_of(load("fsrcnn_net.prototxt")) == 3
    assert scale_of(load("srcnn_net.yaml")) is None   # the scale lives in its bicubic input


def test_yaml_and_prototxt_build_identical_modules():
    from_yaml = Net(load("fsrcnn_net.yaml"), "TRAIN", "fsrcnn_net.yaml",
                    torch.Generator().manual_seed(5), LR_SHAPES)
    from_proto = Net(load("fsrcnn_net.prototxt"), "TRAIN", "fsrcnn_net.prototxt",
                     torch.Generator().manual_seed(5),
                     {"Input": LR_SHAPES["data"], "Ground": LR_SHAPES["label"]})
    yaml_blobs, proto_blobs = from_yaml.blobs_by_layer(), from_proto.blobs_by_layer()
    assert list(yaml_blobs) == list(proto_blobs) == [
        "conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4", "prelu4",
        "conv5", "prelu5", "conv6", "prelu6", "conv7", "prelu7", "deconv"]
    for layer in yaml_blobs:
        assert len(yaml_blobs[layer]) == len(proto_blobs[layer])
        for a, b in zip(yaml_blobs[layer], proto_blobs[layer]):
            assert torch.equal(a, b), layer
    assert [(name, index, lr, decay) for name, index, _, lr, decay in from_yaml.learnable_blobs()] \
        == [(name, index, lr, decay) for name, index, _, lr, decay in from_proto.learnable_blobs()]
    assert [(name, kind) for name, kind, _, _ in from_yaml.output_shapes()] == \
        [(name, kind) for name, kind, _, _ in from_proto.output_shapes()]


def test_a_seed_gives_the_same_weights_and_another_seed_others():
    def weights(seed):
        net = Net(load("fsrcnn_s_net.yaml"), "TRAIN", generator=torch.Generator().manual_seed(seed),
                  input_shapes=LR_SHAPES)
        return torch.cat([blob.detach().flatten() for *_, blob, _, _ in net.learnable_blobs()])

    assert torch.equal(weights(1), weights(1))
    assert not torch.equal(weights(1), weights(2))


def test_fsrcnn_initialisation_follows_its_fillers():
    net = Net(load("fsrcnn_net.yaml"), "TRAIN", generator=torch.Generator().manual_seed(0),
              input_shapes=LR_SHAPES)
    blobs = net.blobs_by_layer()
    assert torch.all(blobs["prelu1"][0] == 0.25)            # PReLU's default filler
    assert torch.all(blobs["conv1"][1] == 0) and torch.all(blobs["deconv"][1] == 0)
    assert blobs["deconv"][0].std().item() == pytest.approx(0.001, rel=0.1)
    assert blobs["conv1"][0].std().item() == pytest.approx(math.sqrt(2 / 25), rel=0.1)


# --------------------------------------------------------------------------- layers

@pytest.mark.parametrize("scale, pad, size", [(2, 4, 7), (3, 3, 7), (4, 3, 5), (4, 2, 11)])
def test_deconvolution_output_size_is_caffes(scale, pad, size):
    net = build(f"""layer:
  - {{name: input, type: Input, top: data, input_param: {{shape: {{dim: [1, 3, {size}, {size}]}}}}}}
  - {{name: deconv, type: Deconvolution, bottom: data, top: up,
     convolution_param: {{num_output: 2, kernel_size: 9, stride: {scale}, pad: {pad}}}}}
""")
    expected = scale * (size - 1) + 9 - 2 * pad     # Caffe: stride * (in - 1) + kernel - 2 * pad
    assert net.output_shapes()[-1][2] == [(1, 2, expected, expected)]
    assert net.forward({"data": torch.rand(1, 3, size, size)})["up"].shape == \
        (1, 2, expected, expected)
    assert net.blobs_by_layer()["deconv"][0].shape == (3, 2, 9, 9)   # (in, out, kh, kw)
    assert net.scale == scale


def test_convolution_geometry_with_separate_h_and_w():
    net = build("layer:\n" + INPUT.replace("[2, 1, 7, 7]", "[1, 4, 10, 12]") + """\
  - {name: conv, type: Convolution, bottom: data, top: out,
     convolution_param: {num_output: 6, kernel_size: [3, 5], stride: [1, 2], pad: [1, 0],
                         group: 2, bias_term: false}}
""")
    # H: (10 + 2 - 3) / 1 + 1 = 10; W: (12 + 0 - 5) // 2 + 1 = 4
    assert net.output_shapes()[-1][2] == [(1, 6, 10, 4)]
    (weight,) = net.blobs_by_layer()["conv"]
    assert weight.shape == (6, 2, 3, 5)
    assert net.forward({"data": torch.rand(1, 4, 10, 12)})["out"].shape == (1, 6, 10, 4)


def test_euclidean_loss_is_half_the_squared_error_per_sample():
    net = build("layer:\n" + INPUT.replace("top: data", "top: [a, b]")
                .replace("[2, 1, 7, 7]", "[2, 1, 1, 2]") +
                "  - {name: loss, type: EuclideanLoss, bottom: [a, b], top: loss}\n")
    a = torch.tensor([[[[1.0, 2.0]]], [[[0.5, -1.0]]]])
    b = torch.tensor([[[[0.0, 4.0]]], [[[0.5, 1.0]]]])
    # squared differences 1 + 4 + 0 + 4 = 9; 1/(2N) with N = 2 samples -> 9 / 4
    blobs = net.forward({"a": a, "b": b})
    assert blobs["loss"].item() == pytest.approx(2.25)
    assert net.loss(blobs).item() == pytest.approx(2.25)
    assert net.loss_names == [("loss", 1.0)] and net.loss_bottoms() == [("a", "b")]


def test_loss_weight_scales_the_objective():
    net = build("layer:\n" + INPUT.replace("top: data", "top: [a, b]") +
                "  - {name: loss, type: EuclideanLoss, bottom: [a, b], top: loss, "
                "loss_weight: 0.5}\n")
    blobs = net.forward({"a": torch.ones(2, 1, 7, 7), "b": torch.zeros(2, 1, 7, 7)})
    assert net.loss_names == [("loss", 0.5)]
    assert net.loss(blobs).item() == pytest.approx(0.5 * 49 / 2)


def test_in_place_relu_and_prelu():
    net = build("layer:\n" + INPUT + """\
  - {name: relu, type: ReLU, bottom: data, top: data}
  - {name: leaky, type: ReLU, bottom: data, top: leaky, relu_param: {negative_slope: 0.1}}
  - {name: prelu, type: PReLU, bottom: data, top: slopes, prelu_param: {channel_shared: true,
     filler: {type: constant, value: 0.5}}}
""")
    x = torch.tensor([-2.0, -0.5, 0.0, 3.0]).repeat(2, 1, 7, 7)[..., :7]
    blobs = net.forward({"data": x})
    assert torch.equal(blobs["data"], x.clamp(min=0))        # in place: the blob now holds ReLU(x)
    assert torch.equal(blobs["leaky"], blobs["data"])         # its input was already ReLU'd
    assert net.blobs_by_layer()["prelu"][0].shape == (1,)
    direct = build("layer:\n" + INPUT + "  - {name: leaky, type: ReLU, bottom: data, top: y, "
                   "relu_param: {negative_slope: 0.1}}\n  - {name: prelu, type: PReLU, "
                   "bottom: data, top: z}\n")
    blobs = direct.forward({"data": x})
    assert torch.allclose(blobs["y"], torch.where(x > 0, x, 0.1 * x))
    assert torch.allclose(blobs["z"], torch.where(x > 0, x, 0.25 * x))
    assert direct.blobs_by_layer()["prelu"][0].shape == (1,)   # one channel


PHASED = """layer:
  - {name: input, type: Input, top: data, input_param: {shape: {dim: [1, 1, 7, 7]}}}
  - {name: train_only, type: ReLU, bottom: data, top: a, include: {phase: TRAIN}}
  - {name: test_only, type: ReLU, bottom: data, top: b, include: [{phase: TEST}]}
  - {name: not_in_test, type: ReLU, bottom: data, top: c, exclude: {phase: TEST}}
  - {name: any_phase, type: ReLU, bottom: data, top: d, include: {}}
"""


def test_include_and_exclude_rules_pick_the_layers_of_a_phase():
    def names(phase):
        return [layer.name for layer in build(PHASED, phase).layer_params]

    assert names("TRAIN") == ["input", "train_only", "not_in_test", "any_phase"]
    assert names("TEST") == ["input", "test_only", "any_phase"]
    with pytest.raises(UserError, match="include or exclude rules, not both"):
        build(PHASED + "  - {name: both, type: ReLU, bottom: data, top: e, "
              "include: {phase: TRAIN}, exclude: {phase: TEST}}\n")


def test_lr_mult_and_decay_mult_default_to_one_per_blob():
    net = build("layer:\n" + INPUT + """\
  - {name: conv1, type: Convolution, bottom: data, top: c1,
     convolution_param: {num_output: 2, kernel_size: 3}}
  - {name: conv2, type: Convolution, bottom: c1, top: c2, param: [{lr_mult: 2, decay_mult: 0}],
     convolution_param: {num_output: 2, kernel_size: 3}}
  - {name: prelu, type: PReLU, bottom: c2, top: c2, param: {lr_mult: 0}}
""")
    rows = [(layer, index, tuple(blob.shape), lr, decay)
            for layer, index, blob, lr, decay in net.learnable_blobs()]
    assert rows == [("conv1", 0, (2, 1, 3, 3), 1, 1), ("conv1", 1, (2,), 1, 1),
                    ("conv2", 0, (2, 2, 3, 3), 2, 0), ("conv2", 1, (2,), 1, 1),
                    ("prelu", 0, (2,), 0, 1)]
    # lr_mult 0 freezes the blob, as Caffe skips its gradient
    assert [blob.requires_grad for *_, blob, _, _ in net.learnable_blobs()] == \
        [True, True, True, True, False]
    with pytest.raises(UserError, match="3 param entries for 2 parameter blobs"):
        build("layer:\n" + INPUT + "  - {name: conv, type: Convolution, bottom: data, top: c, "
              "param: [{}, {}, {}], convolution_param: {num_output: 2, kernel_size: 3}}\n")


def test_fsrcnn_deconvolution_learns_at_a_tenth_of_the_rate():
    net = Net(load("fsrcnn_net.yaml"), "TRAIN", input_shapes=LR_SHAPES)
    multipliers = {(layer, index): lr for layer, index, _, lr, _ in net.learnable_blobs()}
    assert multipliers[("deconv", 0)] == multipliers[("deconv", 1)] == pytest.approx(0.1)
    assert multipliers[("conv1", 0)] == multipliers[("prelu1", 0)] == 1


def test_input_layer_and_the_deprecated_net_inputs():
    deploy = build("layer:\n" + INPUT + "  - {name: relu, type: ReLU, bottom: data, top: y}\n",
                   "TEST")
    assert deploy.input_names == ["data"] and deploy.data_layers == []
    assert deploy.output_shapes()[0] == ("input", "Input", [(2, 1, 7, 7)], 0)
    assert deploy.output_shapes({"data": (1, 1, 30, 40)})[-1][2] == [(1, 1, 30, 40)]
    for inputs in ("input_dim: [1, 1, 7, 7]", "input_shape: {dim: [1, 1, 7, 7]}"):
        legacy = build(f"input: data\n{inputs}\nlayer:\n"
                       "  - {name: relu, type: ReLU, bottom: data, top: y}\n", "TEST")
        assert legacy.input_names == ["data"]
        assert legacy.output_shapes()[0] == ("input", "Input", [(1, 1, 7, 7)], 0)
    with pytest.raises(UserError, match="2 net inputs need"):
        build("input: [a, b]\ninput_dim: [1, 1, 7, 7]\n", "TEST")


def test_hdf5_data_shapes_come_from_the_first_file(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        h5.create_dataset("Input", data=np.zeros((3, 1, 7, 7), np.float32))
        h5.create_dataset("Ground", data=np.zeros((3, 1, 21, 21), np.float32))
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'}\n")
    net_text = load_text("fsrcnn_s_net.yaml").replace("results/data/x3/train.txt",
                                                      str(tmp_path / "list.txt"))
    net = build(net_text)
    assert net.input_names == ["data", "label"]
    assert net.output_shapes()[0][2] == [(128, 1, 7, 7), (128, 1, 21, 21)]
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        h5.create_dataset("Input", data=np.zeros((3, 1, 7, 7), np.float32))
        h5.create_dataset("Ground", data=np.zeros((3, 1, 14, 14), np.float32))
    with pytest.raises(UserError) as error:
        build(net_text)
    assert error.value.where == str(tmp_path / "a.h5")
    assert "layer 'loss'" in error.value.problem and "dataset 'Ground'" in error.value.problem


# --------------------------------------------------------------------------- weights

def test_copy_from_copies_by_name_and_checks_shapes():
    small = Net(load("fsrcnn_s_net.yaml"), "TRAIN", input_shapes=LR_SHAPES)
    target = Net(load("fsrcnn_net.yaml"), "TRAIN", generator=torch.Generator().manual_seed(2),
                 input_shapes=LR_SHAPES)
    with pytest.raises(UserError, match=r"layer 'conv1': blob 0 has shape \(32, 1, 5, 5\) in "
                                        r"the source but \(56, 1, 5, 5\) in the net") as error:
        target.copy_from(small.blobs_by_layer(), "small.model")
    assert error.value.where == "small.model"
    # every shape is checked before anything is copied: a bad last layer leaves all untouched
    before = {name: [blob.clone() for blob in blobs]
              for name, blobs in target.blobs_by_layer().items()}
    changed = {name: [blob + 1 for blob in blobs] for name, blobs in before.items()}
    changed["deconv"][0] = torch.zeros(56, 1, 7, 7)
    with pytest.raises(UserError, match="layer 'deconv': blob 0 has shape"):
        target.copy_from(changed, "bad.model")
    for name, blobs in target.blobs_by_layer().items():
        assert all(torch.equal(a, b) for a, b in zip(blobs, before[name])), name
    # the deconvolution copied alone (x2/x4 fine-tuning keeps the conv layers of x3); layers
    # absent on either side are skipped
    deconv_only = {"deconv": before["deconv"], "not_in_this_net": [torch.zeros(1)]}
    other = Net(load("fsrcnn_net.yaml"), "TRAIN", input_shapes=LR_SHAPES)
    assert other.copy_from(deconv_only, "x.model") == ["deconv"]
    assert torch.equal(other.blobs_by_layer()["deconv"][0], before["deconv"][0])
    assert not torch.equal(other.blobs_by_layer()["conv1"][0], before["conv1"][0])


# --------------------------------------------------------------------------- bad nets

def test_unknown_bottom_is_named():
    with pytest.raises(UserError) as error:
        build("layer:\n" + INPUT + "  - {name: relu, type: ReLU, bottom: dta, top: y}\n")
    assert str(error.value) == "net.yaml: layer 'relu': bottom 'dta' is produced by no earlier layer"


def test_a_top_may_not_be_produced_twice_except_in_place():
    with pytest.raises(UserError, match="top 'y' is already produced"):
        build("layer:\n" + INPUT + "  - {name: a, type: ReLU, bottom: data, top: y}\n"
              "  - {name: b, type: ReLU, bottom: data, top: y}\n")


def test_unknown_layer_type_is_refused_by_the_schema(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("layer:\n  - {name: conv1, type: Convolutoin, bottom: data, top: c}\n")
    with pytest.raises(UserError, match=r"layer\[0\]\.type: 'Convolutoin' is not one of .*"
                                        r"did you mean 'Convolution'"):
        loading.load(schema.NetParameter, path)


@pytest.mark.parametrize("param, problem", [
    ("{kernel_size: 3}", "num_output is required"),
    ("{num_output: 2}", "kernel_size is required"),
    ("{num_output: 2, kernel_size: [3, 3, 3]}", "give one value, or H and W"),
    ("{num_output: 3, kernel_size: 3, group: 2}", "not divisible by group"),
    ("{num_output: 2, kernel_size: 9}", "a 7x7 input gives no output"),
    ("{num_output: 2, kernel_size: 3, weight_filler: {type: bilinear}}", "square 4-D"),
])
def test_bad_convolution_settings(param, problem):
    text = "layer:\n" + INPUT.replace("[2, 1, 7, 7]", "[1, 2, 7, 7]") + \
        f"  - {{name: conv, type: Convolution, bottom: data, top: c, convolution_param: {param}}}\n"
    if "bilinear" in param:
        text = text.replace("kernel_size: 3", "kernel_size: [3, 2]")
    with pytest.raises(UserError, match=problem):
        build(text)


# --------------------------------------------------------------------------- fillers

def filled(shape, seed=0, **filler):
    tensor = torch.empty(shape)
    fillers.fill(tensor, schema.FillerParameter(**filler), torch.Generator().manual_seed(seed))
    return tensor


def test_fan_in_and_fan_out_follow_caffe():
    # Caffe: fan_in = count / shape[0], fan_out = count / shape[1]
    assert fillers.fan((64, 32, 3, 3), "FAN_IN") == 32 * 9
    assert fillers.fan((64, 32, 3, 3), "FAN_OUT") == 64 * 9
    assert fillers.fan((64, 32, 3, 3), "AVERAGE") == (32 * 9 + 64 * 9) / 2
    # a Deconvolution blob is (C_in, C_out, kh, kw): Caffe's "fan_in" is C_out * kh * kw
    assert fillers.fan((56, 1, 9, 9), "FAN_IN") == 81
    assert fillers.fan((12,), "FAN_IN") == 1 and fillers.fan((12,), "FAN_OUT") == 12


def test_msra_std_matches_sqrt_2_over_fan_in():
    weights = filled((256, 64, 3, 3), type="msra")
    assert weights.mean().item() == pytest.approx(0, abs=0.002)
    assert weights.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)
    fan_out = filled((256, 64, 3, 3), type="msra", variance_norm="FAN_OUT")
    assert fan_out.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)


def test_msra_on_a_deconvolution_uses_its_second_axis():
    net = build("layer:\n" + INPUT.replace("[2, 1, 7, 7]", "[1, 512, 3, 3]") + """\
  - {name: deconv, type: Deconvolution, bottom: data, top: up,
     convolution_param: {num_output: 2, kernel_size: 9, stride: 3, weight_filler: {type: msra}}}
""")
    weight = net.blobs_by_layer()["deconv"][0]
    assert weight.shape == (512, 2, 9, 9)
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (2 * 81)), rel=0.02)


def test_xavier_uniform_and_gaussian_ranges():
    xavier = filled((128, 32, 3, 3), type="xavier")
    bound = math.sqrt(3 / (32 * 9))
    assert xavier.abs().max().item() <= bound
    assert xavier.abs().max().item() == pytest.approx(bound, rel=0.01)
    assert xavier.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    uniform = filled((10_000,), type="uniform", min=-1.0, max=3.0)
    assert uniform.min().item() >= -1 and uniform.max().item() <= 3
    assert uniform.mean().item() == pytest.approx(1, abs=0.05)
    gaussian = filled((100_000,), type="gaussian", mean=2.0, std=0.5)
    assert gaussian.mean().item() == pytest.approx(2, abs=0.01)
    assert gaussian.std().item() == pytest.approx(0.5, rel=0.02)
    assert torch.all(filled((3, 4), type="constant", value=0.25) == 0.25)
    assert torch.all(filled((3, 4)) == 0)                  # Caffe's default: constant 0


def test_xavier_variance_norm_average():
    weights = filled((256, 64, 3, 3), type="xavier", variance_norm="AVERAGE")
    bound = math.sqrt(3 / ((64 * 9 + 256 * 9) / 2))
    assert weights.abs().max().item() == pytest.approx(bound, rel=0.01)


def test_sparse_gaussian_keeps_about_sparse_inputs_per_output():
    # Caffe: each value kept with probability sparse / shape[0] (an InnerProduct's outputs)
    weights = filled((20, 5_000), type="gaussian", std=1.0, sparse=4)
    kept = (weights != 0).double().mean().item()
    assert kept == pytest.approx(4 / 20, abs=0.01)
    assert weights[weights != 0].std().item() == pytest.approx(1, rel=0.03)
    assert torch.all(filled((3, 4), type="gaussian", sparse=0) == 0)


def test_positive_unitball_rows_are_positive_and_sum_to_one():
    weights = filled((6, 3, 4, 4), type="positive_unitball")
    assert torch.all(weights > 0)
    torch.testing.assert_close(weights.reshape(6, -1).sum(1), torch.ones(6))


def test_fillers_are_deterministic_given_the_generator():
    assert torch.equal(filled((50,), 3, type="gaussian"), filled((50,), 3, type="gaussian"))
    assert not torch.equal(filled((50,), 3, type="gaussian"), filled((50,), 4, type="gaussian"))


def test_bilinear_kernel_by_hand():
    # size 4: f = ceil(4/2) = 2, c = (4 - 1) / (2 f) = 0.75; 1 - |x/f - c| = .25 .75 .75 .25
    ramp = [0.25, 0.75, 0.75, 0.25]
    expected = torch.tensor([[a * b for b in ramp] for a in ramp])
    assert expected[1, 2] == 0.5625 and expected[0, 0] == 0.0625
    kernel = filled((2, 3, 4, 4), type="bilinear")
    assert torch.equal(kernel, expected.expand(2, 3, 4, 4))
    # size 3: f = 2, c = 0.5 -> 0.5 1 0.5 (BVLC master)
    assert torch.equal(filled((1, 1, 3, 3), type="bilinear")[0, 0],
                       torch.tensor([[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]]))


def test_bad_filler_settings():
    with pytest.raises(ValueError, match="min 2.0 is above max 1.0"):
        filled((3,), type="uniform", min=2.0)
    with pytest.raises(ValueError, match="square 4-D"):
        filled((3, 3), type="bilinear")
