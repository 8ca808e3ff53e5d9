"""Caffe's HDF5 training data on disk: the source list naming the .h5 files, and the named
datasets of one file read as float32 N x C x H x W arrays, each checked as it is read."""
from pathlib import Path

import h5py
import numpy as np

from runner.errors import UserError


def read_source_list(source):
    """The .h5 files a Caffe source list names, one per line (relative to the cwd or the list)."""
    try:
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(source, "no such source list (run `make prep` first?)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(source, f"cannot read the source list: {error}") from None
    files = []
    for line in filter(None, (line.strip() for line in lines)):
        path = Path(line)
        if not path.is_absolute() and not path.exists():
            path = Path(source).parent / path
        if not path.exists():
            raise UserError(source, f"lists {line}, which does not exist")
        files.append(path)
    if not files:
        raise UserError(source, "lists no .h5 file")
    return files


def dataset_shapes(path, names):
    """{name: shape} of the named datasets of one HDF5 file, read without their data."""
    try:
        with h5py.File(path, "r") as h5:
            shapes = {}
            for name in names:
                if name not in h5:
                    raise UserError(path, f"no dataset {name!r} (has: {', '.join(h5)})")
                shapes[name] = h5[name].shape
    except OSError as error:
        raise UserError(path, f"not a readable HDF5 file ({error})") from None
    return shapes


def file_attributes(path):
    """The root attributes of one HDF5 file (what `python -m prep` recorded about the data)."""
    try:
        with h5py.File(path, "r") as h5:
            return dict(h5.attrs)
    except OSError as error:
        raise UserError(path, f"not a readable HDF5 file ({error})") from None


def read_datasets(path, names):
    """The named datasets of one HDF5 file as float32 arrays, checked to be N x C x H x W."""
    try:
        with h5py.File(path, "r") as h5:
            arrays = []
            for name in names:
                if name not in h5:
                    raise UserError(path, f"no dataset {name!r} (has: {', '.join(h5.keys())})")
                dataset = h5[name]
                if dataset.ndim != 4:
                    raise UserError(path, f"dataset {name!r} has shape {dataset.shape}, "
                                    "expected N x C x H x W")
                arrays.append(np.asarray(dataset, dtype=np.float32))
    except OSError as error:
        raise UserError(path, f"not a readable HDF5 file ({error})") from None
    counts = {len(array) for array in arrays}
    if len(counts) != 1:
        raise UserError(path, f"datasets {', '.join(names)} hold different sample counts "
                        f"{[len(array) for array in arrays]}")
    return arrays
