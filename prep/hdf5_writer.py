"""The HDF5 files Caffe's HDF5Data layer reads, and the source lists that name them.

`Input` (N, 1, h, w) and `Ground` (N, 1, H, W) hold float32 pixel values / 255, so in [0, 1].
Files are written under a temporary name and renamed when complete (`runner.snapshot.atomic_h5`),
so an interrupted prep never leaves an .h5 that looks finished. Datasets are written without
timestamps, so the same pairs and attributes always give the same bytes.
"""
import os
from pathlib import Path

import h5py
import numpy as np

from runner.errors import UserError
from runner.files.snapshot import atomic_h5

# Pairs converted to float32 at a time: bounds the memory of the conversion for augmented sets.
WRITE_BLOCK = 1 << 16


def make_output_folder(folder):
    """Create the output folder (and parents) up front, so a bad path fails before any work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(folder, f"cannot create the output folder ({error.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise UserError(folder, "the output folder is not writable")


def write_pairs(path, inputs, labels, attributes):
    """Write uint8 (N, h, w) inputs and (N, H, W) labels as `Input` and `Ground` in [0, 1].

    `attributes` go on the file's root in their order; a list is stored as an array of strings
    (pass numbers as numpy arrays).
    """
    with atomic_h5(path) as h5:
        for name, value in attributes.items():
            h5.attrs[name] = (np.array(value, dtype=h5py.string_dtype())
                              if isinstance(value, list) else value)
        _write_unit_range(h5, "Input", inputs)
        _write_unit_range(h5, "Ground", labels)


def _write_unit_range(h5, name, pixels):
    dataset = h5.create_dataset(name, shape=(len(pixels), 1, *pixels.shape[1:]),
                                dtype=np.float32, track_times=False)
    for start in range(0, len(pixels), WRITE_BLOCK):
        dataset[start:start + WRITE_BLOCK, 0] = pixels[start:start + WRITE_BLOCK] / np.float32(255)


def write_source_list(path, h5_paths):
    """Caffe's HDF5Data source file: one .h5 path per line, renamed into place when written."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text("".join(f"{h5_path}\n" for h5_path in h5_paths), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        raise UserError(path, f"cannot write the source list ({error.strerror})") from None
    finally:
        temporary.unlink(missing_ok=True)
