"""The schema, YAML and prototxt loaders, and the generated .proto."""
from pathlib import Path

import pytest

from runner.config import caffe_proto, loading, schema
from runner.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

TUTORIAL_SOLVER = """# the Intel tutorial's solver, as Caffe reads it
net: "fsrcnn_net.prototxt"
test_iter: 100
test_interval: 5000
base_lr: 0.001
momentum: 0.9
weight_decay: 0
lr_policy: "fixed"
display: 1000
max_iter: 1000000
snapshot: 5000
snapshot_prefix: "FSRCNN-56_12_4"
solver_mode: CPU
"""


def test_caffe_defaults_apply_when_keys_are_absent():
    solver = schema.from_mapping(schema.SolverParameter, {"lr_policy": "fixed"}, "s.yaml")
    assert solver.type == "SGD"
    assert solver.solver_mode == "GPU"          # caffe.proto's default
    assert solver.test_initialization is True
    assert solver.average_loss == 1 and solver.iter_size == 1
    assert solver.clip_gradients == -1 and solver.random_seed == -1
    assert solver.momentum2 == 0.999 and solver.delta == 1e-8
    assert solver.snapshot_after_train is True and solver.regularization_type == "L2"
    layer = schema.from_mapping(schema.LayerParameter, {"type": "PReLU"}, "n.yaml")
    assert layer.prelu_param.filler == schema.FillerParameter(type="constant", value=0.25)
    assert layer.convolution_param.bias_term is True and layer.convolution_param.group == 1
    assert schema.ParamSpec().lr_mult == 1 and schema.ParamSpec().decay_mult == 1


def test_tutorial_solver_prototxt_parses_unchanged():
    solver = caffe_proto.parse_text(schema.SolverParameter, TUTORIAL_SOLVER, "solver.prototxt")
    assert solver.net == "fsrcnn_net.prototxt"
    assert solver.test_iter == [100]
    assert solver.base_lr == 0.001          # float32 in the proto, read back as written
    assert solver.momentum == 0.9
    assert solver.max_iter == 1_000_000 and solver.snapshot == 5000
    assert solver.solver_mode == "CPU" and solver.lr_policy == "fixed"


def test_yaml_and_prototxt_give_the_same_solver(tmp_path):
    yaml_text = "\n".join(line.replace('"', "") for line in TUTORIAL_SOLVER.splitlines())
    from_yaml = loading.parse_config(schema.SolverParameter, yaml_text, "solver.yaml")
    from_proto = loading.parse_config(schema.SolverParameter, TUTORIAL_SOLVER, "solver.prototxt")
    assert from_yaml == from_proto


def test_schema_round_trips_through_protobuf():
    solver = caffe_proto.parse_text(schema.SolverParameter, TUTORIAL_SOLVER, "s.prototxt")
    message = caffe_proto.from_schema(solver)
    again = schema.from_mapping(schema.SolverParameter, caffe_proto.to_mapping(message), "x")
    assert again == solver


def test_committed_proto_file_is_generated_from_the_schema():
    committed = (ROOT / "runner" / "config" / "proto" / "srcaffe.proto").read_text()
    assert committed == caffe_proto.proto_source() + "\n", \
        "regenerate runner/config/proto/srcaffe.proto from runner.config.caffe_proto.proto_source()"


def test_field_numbers_are_caffes():
    numbers = {key.name: key.metadata["number"] for key in schema.keys(schema.SolverParameter)}
    assert numbers["base_lr"] == 5 and numbers["net"] == 24 and numbers["type"] == 40
    layer_numbers = {key.name: key.metadata["number"]
                     for key in schema.keys(schema.LayerParameter)}
    assert layer_numbers["convolution_param"] == 106 and layer_numbers["include"] == 8
    assert {key.name: key.metadata["number"] for key in
            schema.keys(schema.NetParameter)}["layer"] == 100


@pytest.mark.parametrize("text, message", [
    ("base_rl: 0.1\nlr_policy: fixed", "unknown key 'base_rl' (did you mean 'base_lr'?)"),
    ("base_lr: fast\nlr_policy: fixed", "base_lr: expected float, got str 'fast'"),
    ("base_lr: 0.1\nlr_policy: cosine", "lr_policy: 'cosine' is not one of"),
    ("max_iter: true\nlr_policy: fixed", "max_iter: expected int64, got bool True"),
    ("display: -5\nlr_policy: fixed", "display: must be at least 0, got -5"),
    ("solver_mode: TPU\nlr_policy: fixed", "solver_mode: 'TPU' is not one of CPU, GPU"),
    ("type: Adamm\nlr_policy: fixed", "(did you mean 'Adam'?)"),
    ("- just\n- a list", "expected a mapping of keys"),
    ("base_lr: [0.1", "invalid YAML"),
])
def test_bad_yaml_solver_gives_one_line(text, message):
    with pytest.raises(UserError) as raised:
        loading.parse_config(schema.SolverParameter, text, "configs/s.yaml")
    line = str(raised.value)
    assert line.startswith("configs/s.yaml: ") and "\n" not in line
    assert message in line


@pytest.mark.parametrize("text, message", [
    ('base_rl: 0.1', "line 1: SolverParameter: unknown key 'base_rl' (did you mean 'base_lr'?)"),
    ('solver_mode: TPU', "line 1:"),
    ('base_lr: "x"', "line 1:"),
])
def test_bad_prototxt_solver_gives_one_line(text, message):
    with pytest.raises(UserError) as raised:
        loading.parse_config(schema.SolverParameter, text, "s.prototxt")
    assert str(raised.value).startswith("s.prototxt: ") and message in str(raised.value)


@pytest.mark.parametrize("text, source", [
    ('layer { name: "norm" type: "LRN" lrn_param { local_size: 5 } }', "n.prototxt"),
    ("layer: [{name: norm, lrn_param: {local_size: 5}, type: LRN}]", "n.yaml"),
])
def test_unsupported_layer_type_is_named_before_its_parameters(text, source):
    # the type is reported (with the supported ones), not `unknown key 'lrn_param'`
    with pytest.raises(UserError) as raised:
        loading.parse_config(schema.NetParameter, text, source)
    message = str(raised.value)
    assert "layer[0].type: 'LRN' is not one of" in message, message
    assert "Eltwise" in message and "BatchNorm" in message and "lrn_param" not in message


def test_an_unknown_key_of_a_supported_layer_is_still_named():
    text = 'layer { name: "pool" type: "Pooling" pooling_param { kernel: 2 } }'
    with pytest.raises(UserError, match="PoolingParameter: unknown key 'kernel'"):
        loading.parse_config(schema.NetParameter, text, "n.prototxt")


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        loading.load(schema.SolverParameter, tmp_path / "absent.yaml")


def test_solver_cross_checks(tmp_path):
    with pytest.raises(UserError, match="stepsize must be positive"):
        loading.check_solver(schema.SolverParameter(lr_policy="step"), "s.yaml")
    with pytest.raises(UserError, match="lr_policy is required"):
        loading.check_solver(schema.SolverParameter(), "s.yaml")
    with pytest.raises(UserError, match="max_seconds must be positive for lr_policy "
                       "'poly_seconds'"):
        loading.check_solver(schema.SolverParameter(lr_policy="poly_seconds"), "s.yaml")


def test_solver_names_nets_relative_to_itself(tmp_path):
    (tmp_path / "net.yaml").write_text("name: tiny\nlayer: []\n")
    (tmp_path / "solver.yaml").write_text("net: net.yaml\nlr_policy: fixed\nmax_iter: 3\n")
    setup = loading.load_solver(tmp_path / "solver.yaml")
    assert setup.train_net.name == "tiny"
    assert setup.solver.snapshot_prefix == str(tmp_path / "solver")
    assert setup.net_sources[0][0] == "net.yaml"


def test_schema_choices_match_the_implementations():
    from runner.train import lr_policy, update_rules
    assert set(schema.LR_POLICIES) == {*lr_policy.POLICIES, *lr_policy.CLOCK_POLICIES}
    assert set(schema.SOLVER_TYPES) == set(update_rules.UPDATE_RULES)


SHIPPED_SOLVERS = sorted((ROOT / "configs").glob("*_solver.*"))


@pytest.mark.parametrize("path", SHIPPED_SOLVERS, ids=lambda path: path.name)
def test_shipped_solvers_and_their_nets_load(path):
    setup = loading.load_solver(path)
    assert setup.train_net.layer and setup.solver.snapshot_prefix.startswith("results/runs/")


def test_shipped_yaml_and_prototxt_solvers_agree():
    from_yaml, from_proto = (loading.load_solver(ROOT / "configs" / f"fsrcnn_solver.{suffix}")
                             for suffix in ("yaml", "prototxt"))
    assert from_yaml.solver == schema.SolverParameter(
        **{**vars(from_proto.solver), "net": "fsrcnn_net.yaml"})


def test_mappings_omit_what_is_at_its_default():
    prelu = schema.from_mapping(schema.LayerParameter, {"type": "PReLU"}, "n.yaml")
    assert schema.to_mapping(prelu) == {"type": "PReLU"}
    zero_slope = schema.from_mapping(
        schema.LayerParameter, {"type": "PReLU", "prelu_param": {"filler": {}}}, "n.yaml")
    assert zero_slope.prelu_param.filler.value == 0
    assert schema.from_mapping(schema.LayerParameter, schema.to_mapping(zero_slope),
                               "n.yaml") == zero_slope


def test_demo_resume_solver_only_raises_max_iter():
    first, more = (loading.load_solver(ROOT / "configs" / name).solver
                   for name in ("demo_solver.yaml", "demo_solver_more.yaml"))
    assert more.max_iter > first.max_iter and first.max_iter % first.snapshot == 0
    assert schema.SolverParameter(**{**vars(more), "max_iter": first.max_iter}) == first


# Each integer type's range, from protobuf's definition (not from the schema): YAML must hold
# a key to it exactly as protobuf holds a prototxt.
TYPE_RANGES = {"int32": (-2 ** 31, 2 ** 31 - 1), "uint32": (0, 2 ** 32 - 1),
               "int64": (-2 ** 63, 2 ** 63 - 1)}
# (integer type, message, prototxt with {} for the value, the same in YAML)
INTEGER_KEYS = [("int64", schema.SolverParameter, "random_seed: {}", "random_seed: {}"),
                ("uint32", schema.NetParameter, "layer {{ convolution_param {{ pad: {} }} }}",
                 "layer: [{{convolution_param: {{pad: [{}]}}}}]"),
                ("int32", schema.NetParameter, "layer {{ blobs {{ num: {} }} }}",
                 "layer: [{{blobs: [{{num: {}}}]}}]")]


@pytest.mark.parametrize("kind, message, prototxt, yaml_text", INTEGER_KEYS,
                         ids=[key[0] for key in INTEGER_KEYS])
def test_integer_ranges_are_the_same_in_yaml_and_prototxt(kind, message, prototxt, yaml_text):
    low, high = TYPE_RANGES[kind]
    for value in (low - 1, low, high, high + 1, 2 ** 70):
        outcomes = []
        for template, source in ((prototxt, "x.prototxt"), (yaml_text, "x.yaml")):
            try:
                loading.parse_config(message, template.format(value), source)
                outcomes.append(True)
            except UserError:
                outcomes.append(False)
        assert outcomes == [low <= value <= high] * 2, (kind, value, outcomes)


def test_a_key_given_twice_is_refused_in_yaml_as_in_prototxt():
    for text, source in (("max_iter: 5\nmax_iter: 6\n", "s.yaml"),
                         ("max_iter: 5\nmax_iter: 6\n", "s.prototxt")):
        with pytest.raises(UserError, match="max_iter"):
            loading.parse_config(schema.SolverParameter, text, source)
