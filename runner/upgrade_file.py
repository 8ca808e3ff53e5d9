"""`runner upgrade FILE`: a net or solver file in Caffe's legacy syntax (runner/config/upgrade.py)
written in the current form, as YAML or prototxt (Caffe's upgrade_net_proto_text, and a
converter between our two formats).

Whether FILE is a net or a solver is told by its first key. The output is the input's format
unless `--to` (or the suffix of `--out`) says otherwise, beside the input with that format's
suffix unless `--out` names a file or folder; it never replaces the input without `--overwrite`.
"""
import os
import re
from pathlib import Path

import yaml
from google.protobuf import text_format

from runner.config import caffe_proto, loading, schema, text
from runner.errors import UserError
from runner.files import outputs

KINDS = (schema.NetParameter, schema.SolverParameter)
FIRST_KEY = re.compile(r"[A-Za-z_]\w*")


def file_kind(config_text, source):
    """NetParameter or SolverParameter: the message that declares the file's first key."""
    lines = (line.strip() for line in config_text.splitlines())
    first = next((line for line in lines if line and not line.startswith(("#", "---"))), "")
    key = FIRST_KEY.match(first)
    for kind in KINDS:
        if key and key.group() in {field.name for field in schema.keys(kind)}:
            return kind
    raise UserError(source, "neither a net nor a solver file (its first key is "
                    f"{key.group() if key else 'missing'!r})")


def format_of(path):
    """'yaml' or 'prototxt' for a config file name, None for another suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in text.YAML_SUFFIXES:
        return "yaml"
    return "prototxt" if suffix in text.PROTOTXT_SUFFIXES else None


def render(config, format_name, header):
    """A schema object as the text of a `format_name` file, after a `#` header line."""
    if format_name == "yaml":
        body = yaml.safe_dump(schema.to_mapping(config), sort_keys=False,
                              default_flow_style=None, width=100)
    else:
        body = text_format.MessageToString(caffe_proto.from_schema(config))
    return f"# {header}\n{body}"


def output_path(path, format_name, out):
    """Where the upgraded file goes: `out` (a file, or a folder to write into), else beside the
    input, named after it with the format's suffix."""
    named = path.with_suffix(text.WRITTEN_SUFFIXES[format_name]).name
    if out is None:
        return path.with_name(named)
    folder = str(out).endswith(("/", os.sep)) or Path(out).is_dir()
    return Path(out) / named if folder else Path(out)


def upgrade_file(path, to=None, out=None, overwrite=False):
    """Write the current form of a net or solver file; returns (the path written, what was
    upgraded, in words)."""
    path = Path(path)
    config_text = loading.read_text(path)
    config, notes = loading.parse_upgraded(file_kind(config_text, path), config_text, str(path))
    format_name = to or (out and format_of(out)) or format_of(path)
    if format_name is None:
        raise UserError(path, "not a .yaml or .prototxt file: give --to yaml or --to prototxt")
    target = output_path(path, format_name, out)
    if format_of(target) != format_name:
        raise UserError(target, f"a {format_name} file needs the suffix "
                        f"{text.WRITTEN_SUFFIXES[format_name]}")
    if target.resolve() == path.resolve() and not overwrite:
        raise UserError(target, "is the file being upgraded: give --out PATH, or --overwrite to "
                        "replace it")
    done = "; ".join(notes) if notes else "nothing to upgrade"
    header = f"Written by `runner upgrade` from {path.name} ({done})."
    outputs.writable_folder(target.parent)
    outputs.write_files({target: render(config, format_name, header)})
    return target, done
