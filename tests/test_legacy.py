"""Caffe's legacy syntax read as Caffe reads it: V1 nets, the net inputs and solver_type upgraded
to the current form (checked against twins written by hand in the current syntax), comments that
are not UTF-8, and `runner upgrade`."""
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import ROOT, assert_one_line_error, write_h5
from in_process import run_main
from runner.config import caffe_proto, loading, schema, upgrade
from runner.errors import UserError
from runner.files import snapshot
from runner.net.builder import Net
from runner.train.solver import TrainOptions, train

LEGACY = ROOT / "tests" / "legacy"
SRCNN_SHAPES = {"data": (2, 1, 33, 33), "label": (2, 1, 21, 21)}


def load(name):
    return loading.load(schema.NetParameter, LEGACY / name)


def parse(text, source="net.prototxt", message_class=schema.NetParameter):
    return loading.parse_config(message_class, text, source)


def assert_same_built_nets(first, second, phase, input_shapes=None):
    """Both nets build to the same layers, top shapes, multipliers and (from one seed) weights."""
    nets = [Net(param, phase, generator=torch.Generator().manual_seed(4),
                input_shapes=input_shapes) for param in (first, second)]
    assert nets[0].output_shapes() == nets[1].output_shapes()
    blobs = [net.learnable_blobs() for net in nets]
    assert [(name, index, lr, decay) for name, index, _, lr, decay in blobs[0]] == \
        [(name, index, lr, decay) for name, index, _, lr, decay in blobs[1]]
    for (*_, ours, _, _), (*_, theirs, _, _) in zip(*blobs):
        assert torch.equal(ours, theirs)
    return nets[0]


# --------------------------------------------------------------------------- V1 nets

def test_v1_srcnn_of_its_authors_reads_as_its_current_twin():
    v1, current = load("srcnn_v1_net.prototxt"), load("srcnn_v2_net.prototxt")
    assert v1 == current and not v1.layers
    assert [layer.type for layer in v1.layer] == ["HDF5Data", "HDF5Data", "Convolution", "ReLU",
                                                  "Convolution", "ReLU", "Convolution",
                                                  "EuclideanLoss"]
    net = assert_same_built_nets(v1, current, "TRAIN", SRCNN_SHAPES)
    # the authors' blobs_lr: 1 and 0.1 for each layer's weights and bias, 0.1 for the last
    assert [(name, index, lr) for name, index, _, lr, _ in net.learnable_blobs()] == [
        ("conv1", 0, 1), ("conv1", 1, pytest.approx(0.1)), ("conv2", 0, 1),
        ("conv2", 1, pytest.approx(0.1)), ("conv3", 0, pytest.approx(0.1)),
        ("conv3", 1, pytest.approx(0.1))]
    assert net.output_shapes()[-2][2] == [(2, 1, 21, 21)]       # 33 - 8 - 0 - 4


def test_v1_deploy_net_with_input_dims_reads_as_its_current_twin():
    v1, current = load("fsrcnn_s_v1_deploy.prototxt"), load("fsrcnn_s_v2_deploy.prototxt")
    assert v1 == current and not v1.input and not v1.input_dim
    assert v1.layer[0] == schema.LayerParameter(
        name="input", type="Input", top=["data"],
        input_param=schema.InputParameter(shape=[schema.BlobShape(dim=[1, 1, 32, 32])]))
    net = assert_same_built_nets(v1, current, "TEST")
    # weight_decay 1 and 0: the weights decay, the biases do not
    assert [decay for name, _, _, _, decay in net.learnable_blobs() if name == "conv1"] == [1, 0]
    assert net.output_shapes()[-1][2] == [(1, 1, 96, 96)]


def test_v1_net_in_yaml_reads_as_in_prototxt():
    yaml_text = """name: SRCNN
layers:
  - {name: data, type: HDF5_DATA, top: [data, label], include: {phase: TRAIN},
     hdf5_data_param: {source: examples/SRCNN/train.txt, batch_size: 128}}
  - {name: data, type: HDF5_DATA, top: [data, label], include: {phase: TEST},
     hdf5_data_param: {source: examples/SRCNN/test.txt, batch_size: 2}}
"""
    for index, (name, kernel, outputs, bottom) in enumerate(
            [("conv1", 9, 64, "data"), ("conv2", 1, 32, "conv1"), ("conv3", 5, 1, "conv2")], 1):
        rates = "[0.1, 0.1]" if name == "conv3" else "[1, 0.1]"
        yaml_text += (f"  - {{name: {name}, type: CONVOLUTION, bottom: {bottom}, top: {name}, "
                      f"blobs_lr: {rates}, convolution_param: {{num_output: {outputs}, "
                      f"kernel_size: {kernel}, stride: 1, pad: 0, weight_filler: {{type: "
                      f"gaussian, std: 0.001}}, bias_filler: {{type: constant, value: 0}}}}}}\n")
        if index < 3:
            yaml_text += f"  - {{name: relu{index}, type: RELU, bottom: {name}, top: {name}}}\n"
    yaml_text += "  - {name: loss, type: EUCLIDEAN_LOSS, bottom: [conv3, label], top: loss}\n"
    assert parse(yaml_text, "net.yaml") == load("srcnn_v1_net.prototxt")


def test_v1_parallel_lists_become_param_entries():
    text = """layers { name: "a" type: CONVOLUTION bottom: "x" top: "y"
      param: "shared_w" blob_share_mode: PERMISSIVE
      blobs_lr: 2 weight_decay: 1 weight_decay: 0 loss_weight: 0.5
      exclude { phase: TEST } convolution_param { num_output: 1 kernel_size: 1 } }"""
    layer = parse(text).layer[0]
    assert layer.param == [schema.ParamSpec(name="shared_w", share_mode="PERMISSIVE", lr_mult=2.0,
                                            decay_mult=1.0),
                           schema.ParamSpec(decay_mult=0.0)]
    assert layer.exclude == [schema.NetStateRule(phase="TEST")] and layer.loss_weight == [0.5]


def test_v1_layer_type_numbers_are_caffes_on_the_wire():
    # Hand-encoded from caffe.proto's V1LayerParameter: name = 4, type = 5 (varint), blobs_lr = 7
    # (float); LayerType DECONVOLUTION = 39, ABSVAL = 35, RELU = 18.
    message = caffe_proto.message_type(schema.NetParameter)()
    for layer_type in (39, 35, 18):
        entry = bytes([4 << 3 | 2, 1]) + b"a" + bytes([5 << 3, layer_type]) \
            + bytes([7 << 3 | 5]) + np.float32(0.5).tobytes()
        message.MergeFromString(bytes([2 << 3 | 2, len(entry)]) + entry)   # NetParameter.layers
    mapping = caffe_proto.to_mapping(message)
    assert [entry["type"] for entry in mapping["layers"]] == ["DECONVOLUTION", "ABSVAL", "RELU"]
    upgraded, _ = upgrade.upgrade(schema.NetParameter, {"layers": mapping["layers"][:1]}, "x")
    assert upgraded["layer"] == [{"name": "a", "type": "Deconvolution",
                                  "param": [{"lr_mult": 0.5}]}]


# types no SR net needs (issue 13 adds Split, AbsVal, Pooling and the like)
@pytest.mark.parametrize("v1_type, current", [("ACCURACY", "Accuracy"), ("IM2COL", "Im2col"),
                                              ("SOFTMAX_LOSS", "SoftmaxWithLoss")])
def test_v1_types_srcaffe_does_not_build_are_refused_by_their_current_name(v1_type, current):
    supported = "layers { name: \"c\" type: RELU bottom: \"x\" top: \"y\" }\n"
    with pytest.raises(UserError) as raised:
        parse(supported + f'layers {{ name: "u" type: {v1_type} bottom: "y" top: "z" }}')
    assert f"layers[1].type: {current!r} is not one of" in str(raised.value)


@pytest.mark.parametrize("text, problem", [
    ('layers { layer { name: "conv1" type: "conv" num_output: 64 } bottom: "data" }',
     "line 1: V1LayerParameter: 'layer' inside a `layers` entry is Caffe's V0 net format"),
    ('layers { name: "d" type: DATA data_param { source: "lmdb" } }',
     "'data_param' is the parameter of a layer type srcaffe does not build"),
    ('layers { name: "p" type: PRELU }', "line 1:"),
    ('layer { name: "a" type: "ReLU" }\nlayers { name: "b" type: RELU }',
     "both `layer` entries and V1 `layers` entries"),
], ids=["v0", "unbuilt_param", "no_v1_prelu", "both_forms"])
def test_v1_constructs_that_cannot_be_upgraded_are_one_error_line(tmp_path, capfd, text,
                                                                   problem):
    net_file = tmp_path / "old.prototxt"
    net_file.write_text(text)
    result = run_main(capfd, "time", "--net", net_file, "--iterations", "1", "--input", "4x4")
    assert_one_line_error(result, "old.prototxt", problem)


def test_v0_in_yaml_is_named_too():
    with pytest.raises(UserError, match=r"layers\[0\]: 'layer' inside a `layers` entry is "
                       "Caffe's V0 net format"):
        parse("layers:\n  - {layer: {name: conv1, type: conv}, bottom: data}\n", "net.yaml")


def test_batch_norm_statistics_declared_as_parameters_are_frozen():
    # Caffe's UpgradeNetBatchNorm: three param entries (the old BatchNorm definition) get
    # multipliers 0; other counts and other types are left alone.
    net = {"layer": [{"name": "bn", "type": "BatchNorm", "param": [{"lr_mult": 1}, {}, {}]},
                     {"name": "bn2", "type": "BatchNorm", "param": [{"lr_mult": 1}]},
                     {"name": "scale", "type": "Scale", "param": [{}, {}, {}]}]}
    upgraded, notes = upgrade.upgrade(schema.NetParameter, net, "n.yaml")
    assert upgraded["layer"][0]["param"] == [{"lr_mult": 0.0, "decay_mult": 0.0}] * 3
    assert upgraded["layer"][1:] == net["layer"][1:]
    assert notes == ["the `param` multipliers of 1 BatchNorm layer(s) set to 0"]


# --------------------------------------------------------------------------- solver_type

@pytest.mark.parametrize("enum, rule", [("SGD", "SGD"), ("NESTEROV", "Nesterov"),
                                        ("ADAGRAD", "AdaGrad"), ("RMSPROP", "RMSProp"),
                                        ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_solver_type_enum_becomes_type(enum, rule):
    prototxt = parse(f'lr_policy: "fixed"\nsolver_type: {enum}\n', "s.prototxt",
                     schema.SolverParameter)
    in_yaml = parse(f"lr_policy: fixed\nsolver_type: {enum}\n", "s.yaml", schema.SolverParameter)
    assert prototxt == in_yaml == schema.SolverParameter(lr_policy="fixed", type=rule)


def test_solver_type_and_type_together_are_refused_as_caffe_refuses_them():
    with pytest.raises(UserError, match="give `type` or the deprecated `solver_type`, not both"):
        parse("lr_policy: fixed\ntype: SGD\nsolver_type: ADAM\n", "s.yaml", schema.SolverParameter)


def test_upgrades_are_said_once_per_file_on_stderr(capfd):
    setup = loading.load_solver(LEGACY / "srcnn_v1_solver.prototxt")
    assert setup.solver.type == "SGD" and setup.train_net == load("srcnn_v2_net.prototxt")
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "srcnn_v1_solver.prototxt: upgraded from Caffe's legacy syntax: solver_type SGD " \
           "into type SGD" in lines[0]
    assert "srcnn_v1_net.prototxt: upgraded from Caffe's legacy syntax: 8 V1 `layers` entries " \
           "into `layer`" in lines[1]
    parse((ROOT / "configs" / "fsrcnn_net.prototxt").read_text())
    assert capfd.readouterr().err == ""                 # a current file: nothing said


V1_TINY_NET = """name: "tiny"
layers { name: "data" type: HDF5_DATA top: "Input" top: "Ground"
  hdf5_data_param { source: "{folder}/train.txt" batch_size: 8 shuffle: true } }
layers { name: "conv1" type: CONVOLUTION bottom: "Input" top: "conv1" blobs_lr: 1 blobs_lr: 2
  weight_decay: 1 weight_decay: 0
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "deconv" type: DECONVOLUTION bottom: "conv1" top: "deconv" blobs_lr: 0.1
  convolution_param { num_output: 1 kernel_size: 9 stride: 3 pad: 3
                      weight_filler { type: "gaussian" std: 0.01 } } }
layers { name: "loss" type: EUCLIDEAN_LOSS bottom: "deconv" bottom: "Ground" top: "loss" }
"""
CURRENT_TINY_NET = """name: tiny
layer:
  - {name: data, type: HDF5Data, top: [Input, Ground],
     hdf5_data_param: {source: "{folder}/train.txt", batch_size: 8, shuffle: true}}
  - {name: conv1, type: Convolution, bottom: Input, top: conv1,
     param: [{lr_mult: 1, decay_mult: 1}, {lr_mult: 2, decay_mult: 0}],
     convolution_param: {num_output: 4, kernel_size: 3, pad: 1, weight_filler: {type: msra}}}
  - {name: relu1, type: ReLU, bottom: conv1, top: conv1}
  - {name: deconv, type: Deconvolution, bottom: conv1, top: deconv, param: {lr_mult: 0.1},
     convolution_param: {num_output: 1, kernel_size: 9, stride: 3, pad: 3,
                         weight_filler: {type: gaussian, std: 0.01}}}
  - {name: loss, type: EuclideanLoss, bottom: [deconv, Ground], top: loss}
"""
TINY_SOLVER = """net: "{net}"
base_lr: 0.01
momentum: 0.9
weight_decay: 0.001
lr_policy: "fixed"
max_iter: 3
snapshot_prefix: "{prefix}"
solver_mode: CPU
random_seed: 3
"""


def test_v1_files_train_to_the_same_weights_as_their_current_twins(tmp_path):
    write_h5(tmp_path / "train.h5", 32, seed=1)
    (tmp_path / "train.txt").write_text(f"{tmp_path / 'train.h5'}\n")
    (tmp_path / "v1_net.prototxt").write_text(V1_TINY_NET.replace("{folder}", str(tmp_path)))
    (tmp_path / "net.yaml").write_text(CURRENT_TINY_NET.replace("{folder}", str(tmp_path)))
    (tmp_path / "v1_solver.prototxt").write_text(
        TINY_SOLVER.format(net="v1_net.prototxt", prefix=tmp_path / "v1")
        + "solver_type: NESTEROV\n")
    (tmp_path / "solver.yaml").write_text(
        TINY_SOLVER.format(net="net.yaml", prefix=tmp_path / "current") + "type: Nesterov\n")
    weights = {}
    for name in ("v1_solver.prototxt", "solver.yaml"):
        setup = loading.load_solver(tmp_path / name)
        train(setup, TrainOptions(log=False))
        weights[name] = snapshot.load_model(snapshot.newest_snapshot(setup.solver.snapshot_prefix))
    first, second = weights.values()
    assert first.iteration == second.iteration == 3 and set(first.blobs) == {"conv1", "deconv"}
    second_blobs = second.read_blobs()
    for layer, blobs in first.read_blobs().items():
        for ours, theirs in zip(blobs, second_blobs[layer]):
            np.testing.assert_array_equal(ours, theirs)


# --------------------------------------------------------------------------- bytes as Caffe reads

CURRENT_NET = (ROOT / "configs" / "fsrcnn_net.prototxt").read_bytes()
YAML_NET = (ROOT / "configs" / "fsrcnn_net.yaml").read_bytes()
# "réseau à convolution" in Latin-1, and "卷积层" (convolution layer) in GBK
LATIN1 = "réseau à convolution".encode("latin-1")
GBK = "卷积层".encode("gbk")


@pytest.mark.parametrize("encoded", [LATIN1, GBK], ids=["latin1", "gbk"])
@pytest.mark.parametrize("original, suffix", [(CURRENT_NET, ".prototxt"), (YAML_NET, ".yaml")],
                         ids=["prototxt", "yaml"])
def test_comment_bytes_that_are_not_utf8_are_skipped(tmp_path, encoded, original, suffix):
    with pytest.raises(UnicodeDecodeError):
        encoded.decode("utf-8")
    lines = original.split(b"\n")
    # a comment line of its own, and a comment after a key on the net's name line
    lines.insert(0, b"# " + encoded)
    lines = [line + b"  # " + encoded if line.startswith(b"name:") else line for line in lines]
    path = tmp_path / f"net{suffix}"
    path.write_bytes(b"\n".join(lines))
    original_path = ROOT / "configs" / f"fsrcnn_net{suffix}"
    assert loading.load(schema.NetParameter, path) == \
        loading.load(schema.NetParameter, original_path)


@pytest.mark.parametrize("line, suffix", [
    (b'name: "r\xe9seau"', ".prototxt"),                # in a string: not a comment
    (b'name: "a # b \xe9"', ".prototxt"),               # a # inside a string starts nothing
    (b"name: net#\xe9", ".yaml"),                       # YAML: # after a non-space is text
    (b"name: 'it''s # \xe9'", ".yaml"),                 # '' is a quote inside '...'
], ids=["string", "hash_in_string", "yaml_hash_without_space", "yaml_doubled_quote"])
def test_bytes_that_are_not_utf8_outside_comments_name_file_and_line(tmp_path, capfd, line,
                                                                     suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"# a first line\n" + line + b"\n")
    assert_one_line_error(run_main(capfd, "time", "--net", path), f"bad{suffix}: line 2: byte "
                          "0xe9", "is not UTF-8 text; only comments may hold other bytes")


# --------------------------------------------------------------------------- runner upgrade

@pytest.mark.parametrize("name", ["srcnn_v1_net.prototxt", "fsrcnn_s_v1_deploy.prototxt",
                                  "srcnn_v1_solver.prototxt"])
@pytest.mark.parametrize("to", [None, "yaml", "prototxt"])
def test_runner_upgrade_writes_a_file_that_reads_the_same(tmp_path, capfd, name, to):
    kind = schema.SolverParameter if "solver" in name else schema.NetParameter
    result = run_main(capfd, "upgrade", LEGACY / name, "--out", f"{tmp_path}/out/",
                      *(["--to", to] if to else []))
    assert result.returncode == 0, result.stderr
    written = tmp_path / "out" / (Path(name).stem + (".yaml" if to == "yaml" else ".prototxt"))
    assert result.stdout.startswith(f"wrote {written} (") and "into" in result.stdout
    config, notes = loading.parse_upgraded(kind, written.read_text(), str(written))
    assert notes == [] and config == loading.load(kind, LEGACY / name)


def test_runner_upgrade_never_replaces_its_input_unless_told(tmp_path, capfd):
    net_file = tmp_path / "srcnn.prototxt"
    net_file.write_bytes((LEGACY / "srcnn_v1_net.prototxt").read_bytes())
    before = net_file.read_bytes()
    assert_one_line_error(run_main(capfd, "upgrade", net_file), "srcnn.prototxt: is the file "
                          "being upgraded: give --out PATH, or --overwrite to replace it")
    assert net_file.read_bytes() == before and list(tmp_path.iterdir()) == [net_file]
    result = run_main(capfd, "upgrade", net_file, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert net_file.read_text().startswith("# Written by `runner upgrade` from srcnn.prototxt "
                                           "(8 V1 `layers` entries into `layer`).")
    assert load("srcnn_v2_net.prototxt") == loading.load(schema.NetParameter, net_file)
    again = run_main(capfd, "upgrade", net_file, "--to", "yaml")
    assert again.stdout == f"wrote {tmp_path / 'srcnn.yaml'} (nothing to upgrade)\n"


@pytest.mark.parametrize("text, arguments, problem", [
    ("base_rl: 0.1\n", (), "neither a net nor a solver file (its first key is 'base_rl')"),
    ("# only a comment\n", (), "neither a net nor a solver file (its first key is 'missing')"),
    ('name: "x"\n', ("--out", "x.yaml", "--to", "prototxt"),
     "x.yaml: a prototxt file needs the suffix .prototxt"),
], ids=["unknown_key", "empty", "suffix"])
def test_runner_upgrade_bad_input_is_one_error_line(tmp_path, capfd, text, arguments, problem):
    path = tmp_path / "in.prototxt"
    path.write_text(text)
    assert_one_line_error(run_main(capfd, "upgrade", path, *arguments), problem)
