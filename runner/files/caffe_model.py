"""Caffe's binary `.caffemodel`: our weights written as one, and read back wherever a `.model` is.

A `.caffemodel` is a serialized NetParameter (message classes from `runner/config/caffe_proto.py`, built
from `runner/config/schema.py`) whose layers carry their parameter blobs as BlobProto: a `shape` and the
float32 `data`, row-major. Caffe's blob layouts are the ones our layers hold (Convolution weights
(out, in/group, kh, kw), Deconvolution weights (in, out/group, kh, kw) as in PyTorch's
ConvTranspose2d, biases (out), PReLU slopes (channels)) with one exception: a channel_shared
PReLU's single slope is a 0-d blob in Caffe and a (1,) tensor here. A 0-d blob is written without
a `shape`, which Caffe reads as 0-d and OpenCV as one value (OpenCV 4 rejects an empty `shape`).

Caffe keeps the net beside the weights, in a prototxt: the net of `X.caffemodel` is read from
`X.prototxt` next to it, the deploy net `runner export` writes there (`read_model`).
"""
import math
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from runner.config import caffe_proto, loading, memory, schema
from runner.errors import UserError
from runner.files import snapshot

SUFFIX = ".caffemodel"
NET_SUFFIX = ".prototxt"
# protobuf parses no message larger than this (Caffe's own limit too: INT_MAX bytes)
MAX_MESSAGE_BYTES = 2 ** 31 - 1


def _caffe_shape(layer, shape):
    """The shape Caffe gives a blob of ours."""
    if layer.type == "PReLU" and layer.prelu_param.channel_shared:
        return ()
    return tuple(shape)


def _our_shape(layer_type, shape):
    """The shape our layer holds for a blob of Caffe's."""
    return (1,) if layer_type == "PReLU" and shape == () else shape


def to_caffemodel(net_param, blobs):
    """A .caffemodel's bytes: every layer of `net_param` (as Caffe's Net::ToProto writes them)
    with its blobs ({layer name: [arrays]}, our layouts) in Caffe's."""
    message = caffe_proto.from_schema(net_param)
    for layer, layer_message in zip(net_param.layer, message.layer):
        for array in blobs.get(layer.name, []):
            array = np.asarray(array, dtype=np.float32)
            blob = layer_message.blobs.add()
            shape = _caffe_shape(layer, array.shape)
            if shape:                         # a 0-d blob has no `shape` (see above)
                blob.shape.dim.extend(shape)
            blob.data.extend(array.ravel().tolist())
    return message.SerializeToString()


LEGACY_SHAPE = ("num", "channels", "height", "width")


def _blob_shape(blob):
    """A BlobProto's shape as Caffe's Blob::FromProto reads it: the legacy 4-D fields of old
    files when any is set, else `shape` (absent: 0-d)."""
    if any(blob.HasField(name) for name in LEGACY_SHAPE):
        return tuple(getattr(blob, name) for name in LEGACY_SHAPE)
    return tuple(blob.shape.dim)


def _check_blob(layer, index, blob, source):
    """A blob's shape, checked to be one its values fill (Python integers: a product beyond
    int64 is just a large number here)."""
    shape = _blob_shape(blob)
    if any(size < 0 for size in shape):
        raise UserError(source, f"layer {layer.name!r}: blob {index} has a negative size in its "
                        f"shape {shape}")
    if math.prod(shape) != len(blob.data):
        raise UserError(source, f"layer {layer.name!r}: blob {index} holds {len(blob.data)} "
                        f"float values, its shape {shape} needs {math.prod(shape)}")
    return shape


def parse_caffemodel(data, source):
    """{layer name: [float32 arrays in our layouts]} of the layers of a .caffemodel's bytes that
    hold blobs; a UserError for anything that is not a readable NetParameter with layers."""
    message = caffe_proto.message_type(schema.NetParameter)()
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise UserError(source, "not a valid .caffemodel (truncated, damaged, or not a Caffe "
                        "NetParameter)") from None
    if not message.layer:
        raise UserError(source, "not a .caffemodel with layers (an empty file, another file, "
                        "or an old V1 caffemodel: upgrade it with Caffe's "
                        "upgrade_net_proto_binary)")
    blobs = {}
    for layer in message.layer:
        if not layer.blobs:
            continue
        if layer.name in blobs:
            raise UserError(source, f"two layers with parameters are named {layer.name!r}")
        blobs[layer.name] = []
        for index, blob in enumerate(layer.blobs):
            shape = _check_blob(layer, index, blob, source)
            array = np.array(blob.data, dtype=np.float32).reshape(shape)
            blobs[layer.name].append(array.reshape(_our_shape(layer.type, shape)))
    return blobs


def net_file(path):
    """The deploy prototxt that goes with a .caffemodel: same name, beside it."""
    return Path(path).with_suffix(NET_SUFFIX)


def read_model(path, need_net=True):
    """A snapshot.ModelFile from a `.model` or a `.caffemodel` (with the net of its prototxt
    beside it when `need_net`; fine-tuning copies layers by name and needs no net)."""
    path = Path(path)
    if path.suffix != SUFFIX:
        return snapshot.load_model(path)
    # parsing holds the file's bytes and the message they decode to
    limit = min(MAX_MESSAGE_BYTES, memory.available_bytes() // 2)
    blobs = parse_caffemodel(loading.read_bytes(path, ".caffemodel file", limit), path)
    prototxt = net_file(path)
    if not need_net:
        return snapshot.ModelFile(blobs)
    if not prototxt.is_file():
        raise UserError(path, f"its deploy net {prototxt} is missing (a .caffemodel's net is "
                        f"read from the {NET_SUFFIX} of the same name beside it)")
    return snapshot.ModelFile(blobs, loading.read_text(prototxt), str(prototxt))
