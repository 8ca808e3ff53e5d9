"""Caffe's legacy net and solver forms, upgraded on read to the current ones, as Caffe's
`src/caffe/util/upgrade_proto.cpp` upgrades them (UpgradeNetAsNeeded, UpgradeSolverAsNeeded):

- V1 nets (`layers` entries, before 2015): enum types (CONVOLUTION -> Convolution, ...),
  `blobs_lr`, `weight_decay`, `param` names and `blob_share_mode` into `param { name share_mode
  lr_mult decay_mult }`, the rest field for field (UpgradeV1Net);
- the net inputs `input` with `input_shape` or `input_dim` into an Input layer first
  (UpgradeNetInput);
- BatchNorm layers with three `param` entries (its statistics once declared as parameters): their
  multipliers set to 0, as the statistics are not learned (UpgradeNetBatchNorm);
- the solver's `solver_type` enum into `type` (UpgradeSolverType).

The upgrades work on the plain data a file holds (YAML, or prototxt through
`caffe_proto.text_to_mapping`), before it is validated, so a file in the current form and its
legacy twin validate into the same schema objects. The V0 form (`layers { layer { ... } }`,
2013) is not upgraded: `schema.unknown_key` says so.
"""
from runner.config import schema
from runner.errors import UserError

INPUT_KEYS = ("input", "input_shape", "input_dim")
# Caffe's UpgradeSolverType
SOLVER_TYPE_NAMES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                     "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


def upgrade(message_class, mapping, source):
    """(the mapping in the current form, a note for each upgrade made) for a file's plain data;
    anything but a net or a solver, or what is not a mapping, comes back unchanged."""
    upgrades = {schema.NetParameter: upgrade_net, schema.SolverParameter: upgrade_solver}
    if message_class not in upgrades or not isinstance(mapping, dict):
        return mapping, []
    return upgrades[message_class](dict(mapping), source)


def _items(value):
    """A repeated key's entries: YAML may give a single one where a prototxt repeats a key."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def upgrade_net(net, source):
    notes = []
    v1_layers = _items(net.pop("layers", None))
    if v1_layers:
        if _items(net.get("layer")):
            raise UserError(source, "the net has both `layer` entries and V1 `layers` entries: "
                            "Caffe ignores the `layer` ones then; give one form")
        net["layer"] = [v1_layer(entry, source, f"layers[{index}]")
                        for index, entry in enumerate(v1_layers)]
        notes.append(f"{len(v1_layers)} V1 `layers` entries into `layer`")
    legacy_inputs = {key: net.pop(key) for key in INPUT_KEYS if key in net}
    input_layer = net_input_layer(
        schema.from_mapping(schema.NetParameter, legacy_inputs, source), source)
    if input_layer:
        net["layer"] = [schema.to_mapping(input_layer)] + _items(net.get("layer"))
        notes.append("the net inputs (`input`) into an Input layer")
    fixed = sum(fix_batch_norm(layer) for layer in _items(net.get("layer")))
    if fixed:
        notes.append(f"the `param` multipliers of {fixed} BatchNorm layer(s) set to 0")
    return net, notes


def v1_layer(entry, source, path):
    """A V1 `layers` entry as a `layer` entry (Caffe's UpgradeV1LayerParameter), validated here
    so that errors name the entry as the file does (`layers[3]`)."""
    v1 = schema.from_mapping(schema.V1LayerParameter, entry, source, path)
    layer = schema.to_mapping(v1)
    _, layer_type = schema.V1_LAYER_TYPES[layer.pop("type", "NONE")]
    if layer_type:
        layer["type"] = layer_type
    specs = param_specs(name=layer.pop("param", []),
                        share_mode=layer.pop("blob_share_mode", []),
                        lr_mult=layer.pop("blobs_lr", []),
                        decay_mult=layer.pop("weight_decay", []))
    if specs:
        layer["param"] = specs
    schema.from_mapping(schema.LayerParameter, layer, source, path)
    return layer


def param_specs(**values_by_key):
    """`param` entries from V1's parallel lists ({ParamSpec key: [value of blob 0, 1, ...]}):
    as many as the longest list, each with the values its blob has."""
    count = max(map(len, values_by_key.values()))
    return [{key: values[index] for key, values in values_by_key.items() if index < len(values)}
            for index in range(count)]


def net_input_layer(net_param, source):
    """The Input layer Caffe's UpgradeNetInput makes of the deprecated NetParameter `input` +
    `input_shape`/`input_dim` (None when the net has no such inputs)."""
    if not net_param.input:
        return None
    count = len(net_param.input)
    if net_param.input_shape:
        shapes = [shape.dim for shape in net_param.input_shape]
    else:
        dims = net_param.input_dim
        shapes = [dims[index:index + 4] for index in range(0, len(dims), 4)]
    if len(shapes) != count or (net_param.input_dim and len(net_param.input_dim) != 4 * count):
        raise UserError(source, f"{count} net inputs need {count} input_shape entries or "
                        f"{4 * count} input_dim values")
    return schema.LayerParameter(
        name="input", type="Input", top=list(net_param.input),
        input_param=schema.InputParameter(shape=[schema.BlobShape(dim=list(shape))
                                                 for shape in shapes]))


def fix_batch_norm(layer):
    """Caffe's UpgradeNetBatchNorm on one `layer` entry, in place: a BatchNorm layer with three
    `param` entries gets lr_mult and decay_mult 0 in each. True when it changed the entry."""
    if not isinstance(layer, dict) or layer.get("type") != "BatchNorm":
        return False
    params = _items(layer.get("param"))
    if len(params) != 3 or not all(isinstance(spec, dict) for spec in params):
        return False
    fixed = [{**spec, "lr_mult": 0.0, "decay_mult": 0.0} for spec in params]
    if fixed == params:
        return False
    layer["param"] = fixed
    return True


def upgrade_solver(solver, source):
    if "solver_type" not in solver:
        return solver, []
    if "type" in solver:
        raise UserError(source, "give `type` or the deprecated `solver_type`, not both (Caffe "
                        "refuses both)")
    enum = schema.from_mapping(schema.SolverParameter,
                               {"solver_type": solver.pop("solver_type")}, source).solver_type
    solver["type"] = SOLVER_TYPE_NAMES[enum]
    return solver, [f"solver_type {enum} into type {solver['type']}"]
