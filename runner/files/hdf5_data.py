"""Caffe's HDF5 training data on disk: the source list naming the .h5 files, and the named
datasets of one file: their shapes checked (N x C x H x W, at least one sample, numbers stored
in the file itself, a size that fits in memory) before anything is read, their values read as
float32 and checked to be finite. Every file is reached through `runner/files/safe_hdf5.py`."""
from pathlib import Path

import numpy as np

from runner.config import loading
from runner.errors import UserError
from runner.files import safe_hdf5

DATA_KIND = "HDF5 data file"
# what `python -m prep` records on a file's root, and how each is read
RECORDED = {"scale": safe_hdf5.count_attribute, "prep_config": safe_hdf5.text_attribute}


def read_source_list(source):
    """The .h5 files a Caffe source list names, one per line (relative to the cwd or the list)."""
    if not Path(source).exists():
        raise UserError(source, "no such source list (run `make prep` first?)")
    files = []
    for line in filter(None, (line.strip() for line in
                              loading.read_text(source, "source list").splitlines())):
        path = Path(line)
        if not path.is_absolute() and not path.exists():
            path = Path(source).parent / path
        if not path.exists():
            raise UserError(source, f"lists {line}, which does not exist")
        files.append(path)
    if not files:
        raise UserError(source, "lists no .h5 file")
    return files


def _training_dataset(h5, name, path):
    """(dataset, shape) of one dataset of training data, checked; nothing is read."""
    dataset = safe_hdf5.member(h5, name, path)
    shape = safe_hdf5.check_dataset(dataset, path, itemsize=np.dtype(np.float32).itemsize)
    if len(shape) != 4:
        raise UserError(path, f"dataset {name!r} has shape {shape}, expected N x C x H x W")
    if not all(shape):
        raise UserError(path, f"dataset {name!r} has shape {shape}: "
                        + ("it holds no samples" if not shape[0] else "its samples are empty"))
    return dataset, shape


def dataset_shapes(path, names):
    """{name: shape} of the named datasets of one HDF5 file, checked, read without their data;
    the datasets must hold as many samples each."""
    with safe_hdf5.opened(path, DATA_KIND) as h5:
        shapes = {name: _training_dataset(h5, name, path)[1] for name in names}
    counts = [shape[0] for shape in shapes.values()]
    if len(set(counts)) > 1:
        raise UserError(path, f"datasets {', '.join(names)} hold different sample counts "
                        f"{counts}")
    return shapes


def file_attributes(path):
    """The root attributes of one HDF5 file (what `python -m prep` recorded about the data),
    those srcaffe uses (RECORDED) checked."""
    with safe_hdf5.opened(path, DATA_KIND) as h5:
        attributes = dict(h5.attrs)
        for name, read in RECORDED.items():
            if name in attributes:
                attributes[name] = read(h5, name, path)
    return attributes


def read_datasets(path, names, shapes):
    """The named datasets of one HDF5 file as float32 arrays, once each is checked to have its
    shape in `shapes` (dataset_shapes checked those shapes: equal, they pass its checks too);
    every value must be finite."""
    with safe_hdf5.opened(path, DATA_KIND) as h5:
        arrays = [safe_hdf5.read_dataset(safe_hdf5.member(h5, name, path), path, shapes[name],
                                         np.float32) for name in names]
    for name, array in zip(names, arrays):
        if not np.isfinite(array).all():
            raise UserError(path, f"dataset {name!r} holds values that are not finite (NaN or "
                            "infinity)")
    return arrays
