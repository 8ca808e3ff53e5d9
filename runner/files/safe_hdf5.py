"""HDF5 files read safely: the one place where `.model`, `.solverstate` and training `.h5` files
are opened and their members reached.

An HDF5 file can make a reader read other files: an external link, a virtual dataset or external
raw storage points at another file the user can read, whose bytes would then flow into exported
models or fine-tuned snapshots. Here only members stored in the file itself are reached (hard
links; datasets with contiguous, chunked or compact storage); anything else is one error line
naming the file and the member, as are members of the wrong kind (a group where a dataset
belongs), of a non-numeric type, or declaring more data than this machine's memory holds.
Nothing is read before its declared shape has been checked.

Snapshots written by `seal_dataset` / `seal_attributes` carry a sha256 of each dataset's values
and of an object's attributes, verified as they are read, so corruption is one line naming the
file rather than a failure far from it.
"""
import contextlib
import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from runner.config import memory
from runner.errors import UserError

CHECKSUM = "sha256"                      # the attribute holding a dataset's or object's checksum
STORED_LAYOUTS = (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT)
NUMERIC_KINDS = "fiu"                    # float, signed and unsigned integer dtypes
# h5py's errors for damage found while reading (its own, numpy's conversions, HDF5's)
DAMAGE = (OSError, KeyError, ValueError, TypeError, RuntimeError)


@contextlib.contextmanager
def opened(path, kind):
    """An HDF5 file open for reading; any sign of damage inside the block becomes one UserError
    naming the file. Only a regular file is opened."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise UserError(path, f"no such {kind}") from None
    if not stat.S_ISREG(mode):
        raise UserError(path, f"is not a regular file (a {kind} must be one)")
    try:
        with h5py.File(path, "r") as h5:
            yield h5
    except UserError:
        raise
    except DAMAGE as error:
        raise UserError(path, f"not a valid {kind} (damaged, truncated or not HDF5: "
                        f"{str(error).splitlines()[0] if str(error) else type(error).__name__})"
                        ) from None


def _full_name(group, name):
    return f"{group.name.rstrip('/')}/{name}".lstrip("/")


def member(group, name, path, kind=h5py.Dataset):
    """The dataset (or, with kind=h5py.Group, the group) stored in the file under `name`: a
    UserError unless it is a hard link to an object of that kind."""
    full = _full_name(group, name)
    what = "dataset" if kind is h5py.Dataset else "group"
    link = group.get(name, getlink=True)
    if link is None:
        present = ", ".join(group.keys()) or "nothing"
        raise UserError(path, f"no {what} {full!r} (has: {present})")
    if isinstance(link, h5py.ExternalLink):
        raise UserError(path, f"{full!r} is an external link to {link.filename}:{link.path}; "
                        "only what the file itself stores is read")
    if isinstance(link, h5py.SoftLink):
        raise UserError(path, f"{full!r} is a soft link to {link.path}; only objects stored "
                        "under their own name are read")
    found = group[name]
    if not isinstance(found, kind):
        raise UserError(path, f"{full!r} is a {type(found).__name__.lower()}, expected a {what}")
    return found


def members(group, path, kind=h5py.Dataset):
    """{name: member} of every member of a group, in the file's order, each checked."""
    return {name: member(group, name, path, kind) for name in group.keys()}


def check_dataset(dataset, path, expected_shape=None, itemsize=None, complete=False):
    """A UserError unless `dataset` keeps numeric data in the file itself, has
    `expected_shape` (when given) and fits in memory at `itemsize` bytes per value (default:
    its own); with `complete`, also unless the file stores every byte it declares (as
    snapshots write their data: uncompressed, all of it), so reading it reads only what the
    file holds. Reads no data."""
    name = dataset.name.lstrip("/")
    properties = dataset.id.get_create_plist()
    if dataset.is_virtual:
        sources = sorted({source.file_name for source in dataset.virtual_sources()})
        raise UserError(path, f"dataset {name!r} is a virtual dataset of {', '.join(sources)}; "
                        "only data stored in the file itself is read")
    if properties.get_external_count():
        files = sorted({entry[0] for entry in dataset.external})
        raise UserError(path, f"dataset {name!r} keeps its data in external file(s) "
                        f"{', '.join(files)}; only data stored in the file itself is read")
    if properties.get_layout() not in STORED_LAYOUTS:
        raise UserError(path, f"dataset {name!r} has a storage layout that is not contiguous, "
                        "chunked or compact")
    if dataset.dtype.kind not in NUMERIC_KINDS or dataset.dtype.fields:
        described = "text" if h5py.check_string_dtype(dataset.dtype) else str(dataset.dtype)
        raise UserError(path, f"dataset {name!r} holds {described} values, expected numbers")
    shape = tuple(int(size) for size in dataset.shape or ())
    if expected_shape is not None and shape != tuple(expected_shape):
        raise UserError(path, f"dataset {name!r} has shape {shape}, expected "
                        f"{tuple(expected_shape)}")
    values = math.prod(shape)
    memory.check_fits(values * (itemsize or dataset.dtype.itemsize), path,
                      f"dataset {name!r} of shape {shape}")
    stored = dataset.id.get_storage_size()
    if complete and stored < values * dataset.dtype.itemsize:
        raise UserError(path, f"dataset {name!r} declares {values * dataset.dtype.itemsize:,} "
                        f"bytes but the file stores {stored:,} of them")
    return shape


def digest(array):
    """The sha256 of an array's type, shape and values."""
    array = np.ascontiguousarray(array)
    header = json.dumps([array.dtype.str, list(array.shape)]).encode()
    return hashlib.sha256(header + array.tobytes()).hexdigest()


def read_dataset(dataset, path, expected_shape=None, dtype=None, sealed=False, complete=False):
    """The values of a checked dataset (check_dataset), converted to `dtype` when given; with
    `sealed`, verified against the checksum stored with them."""
    check_dataset(dataset, path, expected_shape,
                  np.dtype(dtype).itemsize if dtype is not None else None, complete)
    values = dataset[()]
    if sealed:
        stored = dataset.attrs.get(CHECKSUM)
        if stored is None or stored != digest(values):
            raise UserError(path, f"dataset {dataset.name.lstrip('/')!r} does not match its "
                            "checksum: the file is damaged")
    return np.asarray(values, dtype=dtype)


def seal_dataset(group, name, values):
    """Create dataset `name` holding `values`, with their checksum."""
    values = np.asarray(values)
    dataset = group.create_dataset(name, data=values)
    dataset.attrs[CHECKSUM] = digest(values)
    return dataset


def _plain(value):
    """An attribute value as JSON-able plain data (for its checksum)."""
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def _attributes_digest(obj):
    items = sorted((name, _plain(value)) for name, value in obj.attrs.items()
                   if name != CHECKSUM)
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()


def seal_attributes(obj):
    """Store the checksum of an object's attributes (set them all first)."""
    obj.attrs[CHECKSUM] = _attributes_digest(obj)


def verify_attributes(obj, path):
    """A UserError unless an object's attributes match their stored checksum."""
    if obj.attrs.get(CHECKSUM) != _attributes_digest(obj):
        where = obj.name.lstrip("/") or "the file's root"
        raise UserError(path, f"the attributes of {where} do not match their checksum: the "
                        "file is damaged")


def text_attribute(obj, name, path):
    """A string attribute; a UserError when it is absent or not text."""
    value = obj.attrs.get(name)
    if not isinstance(value, str):
        raise UserError(path, f"attribute {name!r} is {_described(value)}, expected text")
    return value


def texts_attribute(obj, name, path):
    """A list-of-strings attribute; a UserError when it is absent or holds anything else."""
    value = obj.attrs.get(name)
    if not isinstance(value, np.ndarray) or value.ndim != 1 or \
            not all(isinstance(item, str) for item in value.tolist()):
        raise UserError(path, f"attribute {name!r} is {_described(value)}, expected a list of "
                        "texts")
    return value.tolist()


def count_attribute(obj, name, path, default=None):
    """A non-negative integer attribute (an iteration, a position); `default` when absent and
    a default is given."""
    value = _scalar_attribute(obj, name, default)
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise UserError(path, f"attribute {name!r} is {_described(value)}, expected an integer")
    if value < 0:
        raise UserError(path, f"attribute {name!r} is {value}, expected at least 0")
    return int(value)


def seconds_attribute(obj, name, path, default=None):
    """A finite, non-negative number attribute (a duration), as a float; `default` when absent
    and a default is given."""
    value = _scalar_attribute(obj, name, default)
    number = isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_))
    if not number or not np.isfinite(value) or value < 0:
        raise UserError(path, f"attribute {name!r} is {_described(value)}, expected seconds "
                        "(a finite number, at least 0)")
    return float(value)


def _scalar_attribute(obj, name, default):
    # h5py reads a scalar attribute written as a 0-d array back as one
    value = obj.attrs.get(name, default)
    return value[()] if isinstance(value, np.ndarray) and value.shape == () else value


def _described(value):
    if value is None:
        return "missing"
    text = repr(_plain(value))
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


@dataclass(frozen=True)
class StoredArray:
    """A dataset of a snapshot, checked where it was found (check_dataset, complete) and read
    only when asked, so that its declared shape can first be compared with what the reader
    expects."""

    path: Path
    name: str              # its full name in the file
    shape: tuple
    kind: str              # what the file is, for error messages (e.g. "model file")
    sealed: bool           # its checksum is stored with it

    @classmethod
    def of(cls, dataset, path, kind, sealed):
        return cls(Path(path), dataset.name, check_dataset(dataset, path, complete=True), kind,
                   sealed)

    def read(self, expected_shape=None, dtype=None):
        """The values, once the declared shape is `expected_shape` (when given)."""
        if expected_shape is not None and self.shape != tuple(expected_shape):
            raise UserError(self.path, f"dataset {self.name.lstrip('/')!r} has shape "
                            f"{self.shape}, expected {tuple(expected_shape)}")
        *groups, name = self.name.strip("/").split("/")
        with opened(self.path, self.kind) as h5:
            group = h5
            for part in groups:
                group = member(group, part, self.path, h5py.Group)
            return read_dataset(member(group, name, self.path), self.path, self.shape, dtype,
                                self.sealed, complete=True)
