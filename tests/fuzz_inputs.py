"""Bad inputs for the fuzz suite (tests/test_fuzz.py), each wrong by construction: configs and
their prototxt form, HDF5 training data, snapshot mutations, image files. Pure builders: the
Hypothesis strategies that choose their parameters live in the test module."""
import json
import shutil
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import yaml

from runner.config import schema

# More bytes than any machine running the suite has (and than a fuzz case's capped memory).
BEYOND_MEMORY = 1 << 40


# --------------------------------------------------------------------------- configs

def dump_yaml(mapping):
    return yaml.safe_dump(mapping, sort_keys=False, allow_unicode=False)


def _scalar_text(kind, value):
    """A scalar as prototxt writes it: enums bare, strings quoted, booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if np.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if isinstance(kind, schema.ProtoEnum) else json.dumps(value)
    return str(value)


def to_prototxt(message_class, mapping, indent=""):
    """Prototxt text of a mapping of `message_class` (keys it does not declare are written too,
    as a fuzz case wants them)."""
    declared = {key.name: key.metadata["kind"] for key in schema.keys(message_class)} \
        if message_class else {}
    lines = []
    for name, value in mapping.items():
        kind = declared.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                nested = kind if schema.is_message(kind) else None
                lines += [f"{indent}{name} {{", *to_prototxt(nested, item, indent + "  "),
                          f"{indent}}}"]
            else:
                lines.append(f"{indent}{name}: {_scalar_text(kind, item)}")
    return lines


def write_config(path, message_class, mapping):
    """Write a config mapping as YAML or prototxt, chosen by the path's suffix."""
    path = Path(path)
    if path.suffix == ".prototxt":
        path.write_text("\n".join(to_prototxt(message_class, mapping)) + "\n")
    else:
        path.write_text(dump_yaml(mapping))
    return path


def set_path(mapping, path, value):
    """Set a key path (`("layer", 2, "convolution_param", "num_output")`) in nested data; a
    repeated message on the way is entered at its first item."""
    node = mapping
    for part, following in zip(path, path[1:]):
        node = node[part] if isinstance(part, int) else node.setdefault(part, {})
        if isinstance(node, list) and isinstance(following, str):
            node = node[0]
    node[path[-1]] = value


# --------------------------------------------------------------------------- HDF5 files

def write_dataset(group, name, defect, values, secret):
    """Write dataset `name` of `values` into `group`, or the named `defect` in its place:
    something the training data reader must refuse."""
    kind = defect["kind"]
    if kind == "missing":
        return
    if kind == "group":
        group.create_group(name).create_dataset("0", data=values)
    elif kind == "rank":
        group.create_dataset(name, data=np.zeros(defect["shape"], np.float32))
    elif kind == "empty":
        group.create_dataset(name, data=np.zeros(defect["shape"], np.float32))
    elif kind == "dtype":
        group.create_dataset(name, data=_of_dtype(defect["dtype"], values.shape[0]))
    elif kind == "nonfinite":
        spoiled = values.copy()
        spoiled.flat[defect["index"] % spoiled.size] = defect["value"]
        group.create_dataset(name, data=spoiled)
    elif kind == "huge":
        group.create_dataset(name, shape=defect["shape"], dtype=np.float32,
                             chunks=(1, *defect["shape"][1:]))
    elif kind == "external_link":
        group[name] = h5py.ExternalLink(str(secret["h5"]), "/secret")
    elif kind == "soft_link":
        group[name] = h5py.SoftLink(defect["target"])
    elif kind == "virtual":
        layout = h5py.VirtualLayout(shape=values.shape, dtype=np.float32)
        layout[:] = h5py.VirtualSource(str(secret["h5"]), "secret", shape=values.shape)
        group.create_virtual_dataset(name, layout)
    elif kind == "external_storage":
        # sized as float32, whatever the member's own type (a generator's state is bytes)
        group.create_dataset(name, shape=values.shape, dtype=np.float32,
                             external=[(str(secret["raw"]), 0, 4 * values.size)])
    elif kind == "shape":
        group.create_dataset(name, data=np.zeros(defect["shape"], np.float32))
    elif kind == "count":
        group.create_dataset(name, data=values[:defect["count"]])
    else:
        raise ValueError(kind)


def _of_dtype(kind, count):
    if kind == "string":
        return np.array([f"sample {index}" for index in range(count)],
                        dtype=h5py.string_dtype())
    if kind == "bytes":
        return np.array([b"abc"] * count, dtype="S3")
    if kind == "opaque":
        return np.zeros(count, dtype="V8")
    if kind == "compound":
        return np.zeros(count, dtype=[("a", np.float32), ("b", np.int16)])
    if kind == "bool":
        return np.zeros((count, 1, 2, 2), dtype=bool)
    raise ValueError(kind)


def write_secret(folder):
    """Files outside the ones a case names, which no command may read: an HDF5 file and raw
    bytes, each holding a marker that must never appear in any output."""
    folder = Path(folder)
    marker = np.full((4096,), 1234.5, np.float32)
    with h5py.File(folder / "secret.h5", "w") as h5:
        h5.create_dataset("secret", data=marker)
    (folder / "secret.raw").write_bytes(marker.tobytes() * 64)
    return {"h5": folder / "secret.h5", "raw": folder / "secret.raw"}


def truncate(path, fraction):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:int(len(data) * fraction)])


# --------------------------------------------------------------------------- snapshots

def dataset_names(path):
    """Every dataset of an HDF5 file, by full name."""
    found = []
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, item: found.append(name)
                      if isinstance(item, h5py.Dataset) else None)
    return found


def flip_bit(path, dataset, position):
    """Flip one bit of a contiguous dataset's stored values, in place."""
    with h5py.File(path, "r") as h5:
        offset, size = h5[dataset].id.get_offset(), h5[dataset].id.get_storage_size()
    bit = position % (size * 8)
    with open(path, "r+b") as stream:
        stream.seek(offset + bit // 8)
        byte = stream.read(1)[0]
        stream.seek(offset + bit // 8)
        stream.write(bytes([byte ^ (1 << (bit % 8))]))


def replace_member(path, name, defect, secret, reseal):
    """Put `defect` (as write_dataset takes it) where member `name` of a snapshot is; with
    `reseal`, the new dataset gets a valid checksum, so only the defect itself is wrong."""
    from runner.files import safe_hdf5
    with h5py.File(path, "a") as h5:
        group_name, _, leaf = name.rpartition("/")
        group = h5[group_name] if group_name else h5
        values = np.asarray(group[leaf]) if isinstance(group.get(leaf), h5py.Dataset) \
            else np.zeros((4,), np.float32)
        del group[leaf]
        if defect["kind"] == "dataset_for_group":
            group.create_dataset(leaf, data=np.zeros(3, np.float32))
            return
        write_dataset(group, leaf, defect, values, secret)
        if reseal and isinstance(group.get(leaf, getlink=True), h5py.HardLink) \
                and isinstance(group[leaf], h5py.Dataset) and group[leaf].dtype.kind in "fiu" \
                and group[leaf].id.get_storage_size():
            group[leaf].attrs[safe_hdf5.CHECKSUM] = safe_hdf5.digest(group[leaf][()])


def set_attribute(path, group_name, name, value, reseal):
    """Set (or, with value None, delete) an attribute of a snapshot; with `reseal`, its
    attribute checksum is made to match, so only the value itself is wrong."""
    from runner.files import safe_hdf5
    with h5py.File(path, "a") as h5:
        target = h5[group_name] if group_name else h5
        if value is None:
            del target.attrs[name]
        else:
            target.attrs[name] = value
        if reseal:
            safe_hdf5.seal_attributes(target)


def copy_pair(source_state, folder):
    """Copy a .solverstate and its .model into `folder`; returns the copies' paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = Path(shutil.copy(source_state, folder))
    model = Path(shutil.copy(Path(source_state).with_suffix(".model"), folder))
    return state, model


# --------------------------------------------------------------------------- images

def png_declaring(width, height, payload=b""):
    """A PNG whose header declares width x height 8-bit grey pixels, with `payload` as its
    (compressed) image data: its size is read from the header, its pixels never."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(payload or b"\0" * 64)) + chunk(b"IEND", b""))


def bmp_declaring(width, height):
    """A BMP header declaring width x height 24-bit pixels, with almost none of them."""
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return header + info + b"\0" * 16
