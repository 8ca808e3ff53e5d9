"""Blobs fed to a net from outside: the tops of data layers (HDF5Data, Input), which build no
module. Their shapes come from the caller, from the Input layer, or from the first .h5 file an
HDF5Data layer's source list names (Caffe's HDF5Data setup reads that file too)."""
from dataclasses import dataclass

from runner.errors import UserError
from runner.files.hdf5_data import dataset_shapes, file_attributes, read_source_list
from runner.net.structure import phase_layers


@dataclass(frozen=True)
class Feed:
    """A blob fed from outside the net: its shape and where that shape came from."""

    shape: tuple
    where: str            # the file that errors about this blob's shape name
    note: str = ""        # what the blob is there, e.g. "'label' is dataset 'Ground'"
    size_key: str = ""    # the net's key that sets its size (named when it cannot be allocated)


def dataset_names(layer, source="<net>"):
    """The HDF5 dataset an HDF5Data layer reads for each of its tops (default: the top names,
    as in Caffe; `hdf5_data_param.dataset` maps them, e.g. top `data` to dataset `Input`)."""
    names = list(layer.hdf5_data_param.dataset) or list(layer.top)
    if len(names) != len(layer.top):
        raise UserError(source, f"layer {layer.name!r}: {len(layer.top)} tops but "
                        f"{len(names)} hdf5_data_param.dataset names")
    return names


def hdf5_feeds(layer, source, needed):
    """Feeds of an HDF5Data layer's `needed` tops: (batch_size, *sample shape) of each dataset
    in the first .h5 file of the source list (the files must agree; the feeder checks)."""
    param = layer.hdf5_data_param
    for key in ("source", "batch_size"):
        if getattr(param, key) is None:
            raise UserError(source, f"layer {layer.name!r}: hdf5_data_param.{key} is required")
    names = dict(zip(layer.top, dataset_names(layer, source)))
    if not needed:
        return {}
    path = read_source_list(param.source)[0]
    shapes = dataset_shapes(path, [names[top] for top in needed])
    return {top: Feed((param.batch_size, *shapes[names[top]][1:]), str(path),
                      f"{top!r} is dataset {names[top]!r}", "hdf5_data_param.batch_size")
            for top in needed}


def train_data_file(net_param, source):
    """The first .h5 file the TRAIN phase's HDF5Data layer reads (None without one)."""
    for layer in phase_layers(net_param, "TRAIN", source):
        if layer.type == "HDF5Data":
            return read_source_list(layer.hdf5_data_param.source)[0]
    return None


def train_data_attributes(net_param, source):
    """The root attributes of train_data_file: what `python -m prep` recorded about the data
    (scale, prep_config, ...); {} without such data."""
    path = train_data_file(net_param, source)
    if path is None:
        return {}
    return file_attributes(path)


def input_feeds(layer, source, needed):
    """Feeds of an Input layer's `needed` tops: one shape for all tops, or one per top."""
    shapes = [tuple(shape.dim) for shape in layer.input_param.shape]
    if len(shapes) not in (0, 1, len(layer.top)):
        raise UserError(source, f"layer {layer.name!r}: {len(shapes)} input_param shapes for "
                        f"{len(layer.top)} tops (give one, or one per top)")
    if needed and not shapes:
        raise UserError(source, f"layer {layer.name!r}: no shape for top {needed[0]!r} (set "
                        "input_param.shape)")
    for shape in shapes:          # Caffe's Blob::Reshape checks every size is at least 0
        if any(size < 0 for size in shape):
            raise UserError(source, f"layer {layer.name!r}: input_param.shape {shape} has a "
                            "negative size")
    by_top = dict(zip(layer.top, shapes * len(layer.top) if len(shapes) == 1 else shapes))
    return {top: Feed(by_top[top], source, size_key="input_param.shape") for top in needed}


# Caffe type name -> how the shapes of its fed tops are found
FED_LAYERS = {"HDF5Data": hdf5_feeds, "Input": input_feeds}
