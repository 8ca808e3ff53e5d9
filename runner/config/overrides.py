"""`--set KEY=VALUES` (`runner sweep`, and `runner train` with one value each): a solver key by
its name (`base_lr`), a net key by its layer's name (`conv1.convolution_param.num_output`),
checked by the schema as a file's key is, and applied to a solver setup's texts.

A `--set` lists values (`base_lr=0.001,0.005`: a grid axis, or TPE's choices) or gives a
numeric range for TPE to sample (`momentum=0.8:0.99`, `base_lr=log:1e-4:1e-2`). Overridden
configs are written out as YAML texts (`override_texts`), which is what a trial's snapshots
store, so a trial resumes and ships like any run.
"""
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.config import loading, schema
from runner.config.text import YAML_SUFFIXES
from runner.errors import UserError, did_you_mean

SOURCE = "--set"
USAGE = "expected KEY=VALUE[,VALUE...], KEY=LOW:HIGH or KEY=log:LOW:HIGH"
# Keys that name the net files: the texts of the files the solver file names are what `--set`
# edits, so these cannot change.
NET_FILE_KEYS = ("net", "train_net", "test_net")
# Keys a sweep sets itself for every trial (its folder and the net files beside its solver).
SET_BY_THE_SWEEP = NET_FILE_KEYS + ("snapshot_prefix",)
INTEGER_KINDS = ("int32", "uint32", "int64")


@dataclass(frozen=True)
class Override:
    """One `--set`: a key and either its values or a numeric range."""

    key: str
    values: tuple = ()          # the listed values, each of the key's type
    low: float = None           # a range (TPE only): low..high, log-uniform when `log`
    high: float = None
    log: bool = False
    integer: bool = False       # the key holds an integer (a range samples integers)

    @property
    def is_range(self):
        return self.low is not None


def parse_value(text):
    """A value as typed on the command line: an integer, a number, true/false, else text
    (YAML would read `1e-4` as text, hence no yaml here)."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def layer_names(setup):
    """Every layer name of the solver's nets, in order."""
    nets = (setup.train_net, *setup.test_nets)
    return list(dict.fromkeys(layer.name for net in nets for layer in net.layer))


def _schema_key(message_class, path):
    """The dataclass field a dotted path reaches inside `message_class` (None if not there)."""
    key = None
    for name in path:
        if not schema.is_message(message_class):
            return None
        declared = {field.name: field for field in schema.keys(message_class)}
        if name not in declared:
            return None
        key = declared[name]
        message_class = key.metadata["kind"]
    return key


def check_value(key, value, setup, fixed=SET_BY_THE_SWEEP):
    """`value` validated for `key` as a config file's value is; returns it converted (an
    integer for a float key becomes a float), or raises a one-line UserError. The solver keys
    in `fixed` cannot be set."""
    first, *rest = key.split(".")
    solver_keys = [field.name for field in schema.keys(schema.SolverParameter)]
    if first in solver_keys:
        if rest:
            raise UserError(SOURCE, f"{key}: {first} is a solver key and has no keys inside")
        if first in fixed:
            why = ("set by the sweep for each trial" if first not in NET_FILE_KEYS
                   else "names a net file, whose text --set edits")
            raise UserError(SOURCE, f"{key}: {why}; name net keys by their layer "
                            "(conv1.convolution_param.num_output)")
        checked = schema.from_mapping(schema.SolverParameter, {first: value}, SOURCE)
        return _single(getattr(checked, first))
    layers = layer_names(setup)
    if first not in layers:
        raise UserError(SOURCE, f"unknown key {first!r}: neither a solver key nor a layer of "
                        f"{setup.net_sources[0][0]}"
                        f"{did_you_mean(first, solver_keys + layers)}")
    if not rest:
        raise UserError(SOURCE, f"{key}: name a key of layer {first} "
                        "(e.g. conv1.convolution_param.num_output)")
    nested = value
    for name in reversed(rest):
        nested = {name: nested}
    checked = schema.from_mapping(schema.LayerParameter, nested, SOURCE, path=first)
    for name in rest:
        checked = getattr(checked, name)
    return _single(checked)


def _single(value):
    """A repeated key given one value (kernel_size=5) reads back as that value."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def parse_set(text, setup, fixed=SET_BY_THE_SWEEP):
    """An Override from `KEY=VALUES` text, every value checked against the schema (the solver
    keys in `fixed` refused)."""
    key, equals, spec = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise UserError(SOURCE, f"{text!r}: {USAGE}")
    parts = spec.split(":")
    if len(parts) in (2, 3) and (len(parts) == 2 or parts[0] == "log"):
        return _parse_range(key, parts[-2:], parts[0] == "log" and len(parts) == 3, text,
                            setup, fixed)
    items = [item.strip() for item in spec.split(",")]
    if not any(items):
        raise UserError(SOURCE, f"{text!r}: no values (an empty grid); {USAGE}")
    if not all(items):
        raise UserError(SOURCE, f"{text!r}: an empty value between commas")
    values = tuple(check_value(key, parse_value(item), setup, fixed) for item in items)
    if len(set(map(repr, values))) != len(values):
        raise UserError(SOURCE, f"{text!r}: a value is listed twice")
    return Override(key, values)


def _parse_range(key, bounds, log, text, setup, fixed):
    numbers = [parse_value(bound.strip()) for bound in bounds]
    if not all(isinstance(number, (int, float)) and not isinstance(number, bool)
               for number in numbers):
        raise UserError(SOURCE, f"{text!r}: a range's bounds must be numbers; {USAGE}")
    low, high = (check_value(key, number, setup, fixed) for number in numbers)
    kind = field_of(key).metadata["kind"]
    if kind not in INTEGER_KINDS and kind not in ("float", "double"):
        raise UserError(SOURCE, f"{text!r}: {key} is not a number; list its values instead")
    if not low < high:
        raise UserError(SOURCE, f"{text!r}: the range's low bound must be below its high bound")
    if log and low <= 0:
        raise UserError(SOURCE, f"{text!r}: a log range needs a positive low bound")
    return Override(key, low=low, high=high, log=log, integer=kind in INTEGER_KINDS)


def with_settings(setup, set_texts):
    """`runner train --set KEY=VALUE ...`: the setup with one value set for each key (the
    snapshot_prefix too), built from the overridden texts as a file's would be. The texts,
    which every snapshot stores, say in a first comment line what was set."""
    parsed = [parse_set(text, setup, fixed=NET_FILE_KEYS) for text in set_texts]
    keys = [override.key for override in parsed]
    for override in parsed:
        if override.is_range or len(override.values) != 1:
            raise UserError(SOURCE, f"{override.key}: runner train takes one value per key "
                            "(lists and ranges are for runner sweep)")
        if keys.count(override.key) > 1:
            raise UserError(SOURCE, f"{override.key} is set twice")
    sources = [setup.solver_source, *(path for path, _ in setup.net_sources)]
    not_yaml = next((path for path in sources if Path(path).suffix.lower() not in YAML_SUFFIXES),
                    None)
    if not_yaml:
        raise UserError(not_yaml, "--set edits YAML config files only (`runner upgrade FILE "
                        "--to yaml` writes one)")
    assignments = {override.key: override.values[0] for override in parsed}
    solver_text, net_texts = override_texts(
        setup, assignments, f"# {setup.solver_source} with --set {describe(assignments)}\n")
    return loading.solver_setup_from_texts(setup.solver_source, solver_text, net_texts)


def _set_in(mapping, path, value):
    for name in path[:-1]:
        mapping = mapping.setdefault(name, {})
    mapping[path[-1]] = value


def override_texts(setup, assignments, header=""):
    """YAML texts of the setup's solver and nets with `assignments` ({dotted key: value}) made:
    (solver text, [(net path, net text)]). A net key applies to every layer of that name (a
    data layer's TRAIN and TEST phases alike). Keys are not checked here: the caller validates
    the texts by building a setup from them."""
    solver = schema.to_mapping(setup.solver)
    nets = [(path, schema.to_mapping(loading.parse_config(schema.NetParameter, text, path)))
            for path, text in setup.net_sources]
    for key, value in assignments.items():
        first, *rest = key.split(".")
        if not rest:
            solver[first] = value
            continue
        for _, net in nets:
            for layer in net.get("layer", []):
                if layer.get("name") == first:
                    _set_in(layer, rest, value)
    return (header + _dump(solver),
            [(path, header + _dump(net)) for path, net in nets])


def _dump(mapping):
    return yaml.safe_dump(mapping, sort_keys=False, default_flow_style=None, width=100)


def shown(value, digits=None):
    """A value as text; a float to `digits` significant digits when given (TPE's samples have
    seventeen)."""
    return f"{value:.{digits}g}" if digits and isinstance(value, float) else str(value)


def describe(assignments, digits=None):
    """`key=value, key=value`: how a trial differs from its base, for labels and logs."""
    return ", ".join(f"{key}={shown(value, digits)}" for key, value in assignments.items())


def field_of(key):
    """The schema field of a dotted override key (for its type); None if unknown."""
    first, *rest = key.split(".")
    return (_schema_key(schema.SolverParameter, [first]) if not rest
            else _schema_key(schema.LayerParameter, rest))

