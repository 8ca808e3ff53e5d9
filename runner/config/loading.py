"""Read net, solver and prep files (YAML, or Caffe prototxt text) into validated schema objects,
legacy forms upgraded on the way (runner/config/upgrade.py)."""
import os
import stat
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from runner.config import caffe_proto, memory, schema, text, upgrade
from runner.errors import UserError

# Config files are kilobytes; anything this large is not one, and is not read into memory.
MAX_CONFIG_BYTES = 16 << 20


def read_bytes(path, what, limit):
    """A file's bytes, or a UserError naming the file. Only a regular file is read (opening a
    FIFO would wait forever), and only when it holds at most `limit` bytes."""
    path = Path(path)
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
            status = os.fstat(stream.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise UserError(path, f"is not a regular file (a {what} must be one)")
            data = stream.read() if status.st_size <= limit else b""
            size = max(status.st_size, len(data))
    except FileNotFoundError:
        raise UserError(path, "no such file") from None
    except IsADirectoryError:
        raise UserError(path, f"is a folder, not a {what}") from None
    except OSError as error:
        raise UserError(path, f"cannot read ({error.strerror})") from None
    if size > limit:
        raise UserError(path, f"is larger than {memory.describe_bytes(limit)}, too large for "
                        f"a {what}")
    return data


def is_yaml(source):
    return Path(source).suffix.lower() in text.YAML_SUFFIXES


def read_text(path, what="config file"):
    """A text file's contents (a config file, or another `what`): read_bytes, then UTF-8
    except in comments, which may hold other bytes (runner/config/text.py)."""
    return text.decode(read_bytes(path, what, MAX_CONFIG_BYTES), path,
                       yaml_rules=is_yaml(path))


MERGE_TAG = "tag:yaml.org,2002:merge"     # `<<: *defaults`, whose keys a mapping may override
# libyaml's parser where PyYAML was built with it (its wheels are): a net's text parses in a
# tenth of the pure-Python parser's time (0.8 against 7.6 ms for a model's net), which every
# `runner predict` pays before its first pixel
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UniqueKeyLoader(SAFE_LOADER):
    """yaml.safe_load's loader, except that a key given twice in one mapping is an error, as a
    prototxt that repeats a non-repeated field is, rather than the last value silently."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG:
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _plain_data(message_class, config_text, source):
    """The keys and values config text holds; the format follows the file name's suffix."""
    suffix = Path(source).suffix.lower()
    if suffix in text.PROTOTXT_SUFFIXES:
        return caffe_proto.text_to_mapping(message_class, config_text, source)
    if suffix not in text.YAML_SUFFIXES:
        raise UserError(source, f"unknown config format {suffix!r}: use "
                        f"{', '.join(text.YAML_SUFFIXES + text.PROTOTXT_SUFFIXES)}")
    try:
        return yaml.load(config_text, Loader=UniqueKeyLoader)
    except RecursionError:
        raise UserError(source, "invalid YAML: nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(source, f"{where}invalid YAML: {problem}") from None


def parse_upgraded(message_class, config_text, source):
    """(config text validated into `message_class` with its legacy forms upgraded, a note for
    each upgrade made)."""
    mapping, notes = upgrade.upgrade(message_class,
                                     _plain_data(message_class, config_text, source), source)
    return schema.from_mapping(message_class, mapping, source), notes


def parse_config(message_class, config_text, source):
    """Validate config text into `message_class`; a file in a legacy form is upgraded and one
    line on stderr says how (as Caffe logs it)."""
    config, notes = parse_upgraded(message_class, config_text, source)
    if notes:
        print(f"{source}: upgraded from Caffe's legacy syntax: {'; '.join(notes)} (`runner "
              f"upgrade {source}` writes the current form)", file=sys.stderr)
    return config


def load(message_class, path):
    """Read and validate one config file."""
    return parse_config(message_class, read_text(path), str(path))


def resolve(name, relative_to):
    """A path named inside a config file: as given if it exists, else next to that file."""
    path = Path(name)
    if path.is_absolute() or path.exists():
        return path
    beside = Path(relative_to).parent / path
    return beside if beside.exists() else path


@dataclass(frozen=True)
class SolverSetup:
    """A solver with its nets, and the texts they came from (stored in every solverstate)."""

    solver: schema.SolverParameter
    solver_source: str
    solver_text: str
    train_net: schema.NetParameter
    test_nets: tuple
    net_sources: tuple   # (path, text) of each net file read: the train net first
    # Where `snapshot_prefix` and net paths are taken relative to.
    base_path: str


def solver_setup_from_texts(solver_source, solver_text, net_texts):
    """Build a SolverSetup from texts; `net_texts` maps each net path named by the solver to
    its text (what a solverstate stores, so a resume needs no file but the snapshot)."""
    solver = parse_config(schema.SolverParameter, solver_text, solver_source)
    return _solver_setup(solver, solver_source, solver_text, net_texts)


def _solver_setup(solver, solver_source, solver_text, net_texts):
    check_solver(solver, solver_source)
    train_name, test_names = _net_names(solver, solver_source)
    nets = {name: parse_config(schema.NetParameter, net_text, name)
            for name, net_text in net_texts}
    missing = [name for name in (train_name, *test_names) if name not in nets]
    if missing:
        raise UserError(solver_source, f"net file {missing[0]!r} is not available")
    if solver.test_interval and len(solver.test_iter) != len(test_names):
        raise UserError(solver_source, f"test_iter: {len(test_names)} test net(s) need as many "
                        f"test_iter entries, got {len(solver.test_iter)}")
    return SolverSetup(completed_solver(solver, solver_source), solver_source, solver_text,
                       nets[train_name], tuple(nets[name] for name in test_names),
                       tuple(net_texts), solver_source)


def completed_solver(solver, source):
    """The solver with the default that depends on its file's path: snapshot_prefix beside
    it."""
    if solver.snapshot_prefix:
        return solver
    return replace(solver, snapshot_prefix=str(Path(source).with_suffix("")))


def _net_names(solver, source):
    """Train net and test net paths, with Caffe's precedence (train_net/test_net over net)."""
    train = solver.train_net or solver.net
    if not train:
        raise UserError(source, "no net: set `net` (or `train_net`)")
    tests = list(solver.test_net) or ([solver.net] if solver.net else [])
    return train, tests


def load_solver(path):
    """Read a solver file and every net file it names."""
    solver_text = read_text(path)
    solver = parse_config(schema.SolverParameter, solver_text, str(path))
    names = _net_names(solver, str(path))
    net_texts = []
    for name in dict.fromkeys((names[0], *names[1])):
        net_texts.append((name, read_text(resolve(name, path))))
    return _solver_setup(solver, str(path), solver_text, net_texts)


def check_solver(solver, source):
    """Cross-key rules Caffe enforces when the solver starts."""
    if solver.lr_policy is None:
        raise UserError(source, f"lr_policy is required: one of {', '.join(schema.LR_POLICIES)}")
    if solver.lr_policy in ("step", "sigmoid") and solver.stepsize <= 0:
        raise UserError(source, f"stepsize must be positive for lr_policy {solver.lr_policy!r}")
    if solver.lr_policy == "multistep" and not solver.stepvalue:
        raise UserError(source, "stepvalue is required for lr_policy 'multistep'")
    if solver.lr_policy == "multistep" and solver.stepvalue != sorted(solver.stepvalue):
        raise UserError(source, "stepvalue must be increasing")
    if solver.type in ("AdaGrad", "RMSProp") and solver.momentum:
        raise UserError(source, f"momentum must be 0 for type {solver.type!r} (Caffe's rule)")
    if solver.lr_policy == "poly" and solver.max_iter <= 0:
        raise UserError(source, "max_iter must be positive for lr_policy 'poly'")
    if solver.lr_policy == "poly_seconds" and solver.max_seconds <= 0:
        raise UserError(source, "max_seconds must be positive for lr_policy 'poly_seconds'")
    if solver.ema_decay >= 1:
        raise UserError(source, f"ema_decay must be below 1, got {solver.ema_decay}: it is "
                        "the share of the average that each update keeps")
