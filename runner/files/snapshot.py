"""`.model` and `.solverstate` files: HDF5 in the layout of Caffe's HDF5 snapshots, no pickle.

A `.model` holds each layer's parameter blobs under `data/<layer>/<index>` (Caffe's
`snapshot_format: HDF5` layout) plus the net's config text. A `.solverstate` holds what a
resume needs to continue exactly: iteration, the model file's name and sha256, the update
rule's history, current_step, every random generator and data reader position, and the
solver and net texts. When the run keeps a moving average of the weights (`ema_decay`), its
`.model` holds the average and its `.solverstate` the weights themselves, under `weights`.
Reading either can never execute code: it is arrays and strings only, reached through
`runner/files/safe_hdf5.py` (nothing outside the file, nothing read before its shape is
checked), and each dataset and attribute set carries its sha256, checked on load.
Both are written to a temporary name, flushed and renamed, so a crash mid-write leaves the
previous pair intact; what a killed run leaves behind is removed by the next
(`remove_leftovers`).
"""
import contextlib
import glob
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from runner.errors import UserError
from runner.files import outputs, safe_hdf5
from runner.files.safe_hdf5 import StoredArray

MODEL_FORMAT = "srcaffe-model-2"
SOLVERSTATE_FORMAT = "srcaffe-solverstate-2"
# format -> whether its datasets and attributes carry checksums (format 1 predates them)
MODEL_FORMATS = {"srcaffe-model-1": False, MODEL_FORMAT: True}
SOLVERSTATE_FORMATS = {"srcaffe-solverstate-1": False, SOLVERSTATE_FORMAT: True}
MODEL_KIND, SOLVERSTATE_KIND = "model file", "solverstate file"


def snapshot_paths(prefix, iteration):
    """Caffe's names: `<prefix>_iter_<N>.model` and `<prefix>_iter_<N>.solverstate`."""
    stem = f"{prefix}_iter_{iteration}"
    return Path(f"{stem}.model"), Path(f"{stem}.solverstate")


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_h5(path):
    """An HDF5 file open for writing under a temporary name, renamed to `path` on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(path.parent, f"cannot write here ({error.strerror})") from None
    temporary = outputs.temporary_beside(path)
    try:
        with h5py.File(temporary, "w", track_order=True) as h5:
            yield h5
        outputs.commit(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def remove_leftovers(prefix):
    """Remove the temporaries of this prefix's snapshots that a killed run left behind;
    returns their paths."""
    prefix = Path(prefix)
    return outputs.remove_stale_temporaries(prefix.parent, re.escape(prefix.name) + r"_iter_\d+")


def _format_sealed(h5, path, formats, kind):
    """Whether a file of one of `formats` carries checksums; a UserError for another format."""
    found = h5.attrs.get("format")
    if found not in formats:
        raise UserError(path, f"not a {kind} (format {found!r}, expected {list(formats)[-1]!r})")
    if formats[found]:
        safe_hdf5.verify_attributes(h5, path)
    return formats[found]


def check_blob_shapes(theirs, ours, where):
    """A UserError unless every layer both name has blobs of the same shapes (layer name ->
    list of objects with a `shape`): what Caffe's CopyTrainedLayersFrom checks."""
    for name in [name for name in ours if name in theirs]:
        if len(theirs[name]) != len(ours[name]):
            raise UserError(where, f"layer {name!r}: {len(theirs[name])} blobs in the source, "
                            f"{len(ours[name])} in the net")
        for index, (their_blob, our_blob) in enumerate(zip(theirs[name], ours[name])):
            if tuple(their_blob.shape) != tuple(our_blob.shape):
                raise UserError(where, f"layer {name!r}: blob {index} has shape "
                                f"{tuple(their_blob.shape)} in the source but "
                                f"{tuple(our_blob.shape)} in the net")


def read_array(blob, expected_shape=None, dtype=np.float32, where=""):
    """A blob's values as `dtype`: an array as it is, a StoredArray read from its file; when
    `expected_shape` is given, a UserError naming the file (else `where`) unless the blob has
    that shape, found before anything is read."""
    if isinstance(blob, StoredArray):
        return blob.read(expected_shape, dtype)
    if expected_shape is not None and tuple(np.shape(blob)) != tuple(expected_shape):
        raise UserError(where, f"an array has shape {tuple(np.shape(blob))}, expected "
                        f"{tuple(expected_shape)}")
    return np.asarray(blob, dtype)


@dataclass
class ModelFile:
    """The weights of a net by Caffe layer name, and what the model was trained as."""

    blobs: dict                       # layer name -> list of arrays (weights, bias, ...), or of
                                      # StoredArray when loaded: read by read_blobs
    net_text: str = ""                # the net config it was trained with
    net_source: str = ""              # that config's file name (its suffix tells the format)
    iteration: int = 0
    scale: int = 0                    # the training data's upscaling factor (0: not known); the
                                      # only record of it for a net without a Deconvolution

    def read_blobs(self, net_blobs=None, where=""):
        """{layer: [float32 arrays]} of the layers both here and in `net_blobs` (layer name ->
        the blobs, or anything with their shapes, that a net holds; None: every layer here),
        each checked to have the net's shape before anything is read; other layers are not
        read at all."""
        if net_blobs is None:
            net_blobs = self.blobs
        check_blob_shapes(self.blobs, net_blobs, where)
        return {layer: [read_array(blob) for blob in blobs] for layer, blobs in self.blobs.items()
                if layer in net_blobs}


def save_model(path, model):
    with atomic_h5(path) as h5:
        h5.attrs.update(format=MODEL_FORMAT, net_text=model.net_text,
                        net_source=model.net_source, iteration=model.iteration,
                        scale=model.scale)
        safe_hdf5.seal_attributes(h5)
        data = h5.create_group("data", track_order=True)
        for layer, blobs in model.blobs.items():
            _write_indexed(data, layer, blobs)


def _write_indexed(parent, name, blobs):
    """Blobs as float32 datasets `0`, `1`, ... of a new group `name` (what _indexed reads)."""
    group = parent.create_group(name, track_order=True)
    for index, blob in enumerate(blobs):
        safe_hdf5.seal_dataset(group, str(index), read_array(blob))


def _indexed(group, path, kind, sealed):
    """StoredArrays of a group's datasets `0`, `1`, ... in order."""
    return [StoredArray.of(safe_hdf5.member(group, str(index), path), path, kind, sealed)
            for index in range(len(group))]


def load_model(path):
    """The ModelFile of a `.model`: its attributes read and checked, its blobs found and
    checked but not yet read (ModelFile.read_blobs)."""
    with safe_hdf5.opened(path, MODEL_KIND) as h5:
        sealed = _format_sealed(h5, path, MODEL_FORMATS, MODEL_KIND)
        layers = safe_hdf5.members(safe_hdf5.member(h5, "data", path, h5py.Group), path,
                                   h5py.Group)
        return ModelFile({layer: _indexed(group, path, MODEL_KIND, sealed)
                          for layer, group in layers.items()},
                         safe_hdf5.text_attribute(h5, "net_text", path),
                         safe_hdf5.text_attribute(h5, "net_source", path),
                         safe_hdf5.count_attribute(h5, "iteration", path),
                         safe_hdf5.count_attribute(h5, "scale", path, default=0))


@dataclass
class SolverState:
    """Everything a resume needs, Caffe's SolverState fields first. Loaded from a file, its
    arrays are StoredArray, read (with their shapes checked) by the solver that resumes."""

    iteration: int
    learned_net: str                  # the .model file's name, next to the solverstate
    learned_net_sha256: str
    current_step: int
    history: list                     # update-rule history blobs, in the update rule's order
    solver_source: str
    solver_text: str
    net_files: list                   # (path, text) of each net file the solver named
    random_states: dict = field(default_factory=dict)   # name -> uint8 array
    readers: dict = field(default_factory=dict)          # feeder key -> HDF5Feeder.state()
    weights: list = field(default_factory=list)          # the net's parameter blobs, each
                                                         # shared one once, when the .model
                                                         # holds their moving average; else none
    seconds: float = 0.0              # the training clock (max_seconds's) at the snapshot

    def arrays(self):
        """Every array it holds: history, generators, reader orders and generators, weights."""
        return [*self.history, *self.weights, *self.random_states.values(),
                *(reader[name] for reader in self.readers.values()
                  for name in ("file_order", "order", "generator") if name in reader)]

    @property
    def stored_names(self):
        """The recorded names of the solver and net texts it stores (errors.stored_in)."""
        return [self.solver_source, *(path for path, _ in self.net_files)]


def save_solverstate(path, state):
    with atomic_h5(path) as h5:
        h5.attrs.update(format=SOLVERSTATE_FORMAT, iter=state.iteration,
                        learned_net=state.learned_net,
                        learned_net_sha256=state.learned_net_sha256,
                        current_step=state.current_step, seconds=state.seconds,
                        solver_source=state.solver_source,
                        solver_text=state.solver_text,
                        net_paths=[path for path, _ in state.net_files],
                        net_texts=[text for _, text in state.net_files])
        safe_hdf5.seal_attributes(h5)
        _write_indexed(h5, "history", state.history)
        randoms = h5.create_group("random_states", track_order=True)
        for name, value in state.random_states.items():
            safe_hdf5.seal_dataset(randoms, name, read_array(value, dtype=np.uint8))
        readers = h5.create_group("readers", track_order=True)
        for key, reader in state.readers.items():
            group = readers.create_group(key)
            for name in ("file_order", "order"):
                safe_hdf5.seal_dataset(group, name, read_array(reader[name], dtype=np.int64))
            safe_hdf5.seal_dataset(group, "generator",
                                   read_array(reader["generator"], dtype=np.uint8))
            group.attrs.update(file_index=reader["file_index"], cursor=reader["cursor"],
                               epoch=reader["epoch"])
            safe_hdf5.seal_attributes(group)
        if state.weights:       # absent otherwise: a run without an average writes what it did
            _write_indexed(h5, "weights", state.weights)


def _reader(group, path, sealed):
    """A feeder's state (HDF5Feeder.state()); one saved before files were read one at a time
    has no file order and file index (the feeder takes it as the one-file state)."""
    if sealed:
        safe_hdf5.verify_attributes(group, path)
    names = ("file_order", "order", "generator") if "file_order" in group else \
        ("order", "generator")
    return {name: StoredArray.of(safe_hdf5.member(group, name, path), path, SOLVERSTATE_KIND,
                                 sealed) for name in names} | \
        {name: safe_hdf5.count_attribute(group, name, path) for name in ("cursor", "epoch")} | \
        {"file_index": safe_hdf5.count_attribute(group, "file_index", path, default=0)}


def load_solverstate(path):
    """The SolverState of a `.solverstate`: attributes read and checked, arrays found and
    checked but not yet read."""
    with safe_hdf5.opened(path, SOLVERSTATE_KIND) as h5:
        sealed = _format_sealed(h5, path, SOLVERSTATE_FORMATS, SOLVERSTATE_KIND)
        net_paths = safe_hdf5.texts_attribute(h5, "net_paths", path)
        net_texts = safe_hdf5.texts_attribute(h5, "net_texts", path)
        if len(net_paths) != len(net_texts):
            raise UserError(path, f"holds {len(net_paths)} net paths but {len(net_texts)} net "
                            "texts")

        def group(name):
            return safe_hdf5.member(h5, name, path, h5py.Group)

        return SolverState(
            iteration=safe_hdf5.count_attribute(h5, "iter", path),
            learned_net=safe_hdf5.text_attribute(h5, "learned_net", path),
            learned_net_sha256=safe_hdf5.text_attribute(h5, "learned_net_sha256", path),
            current_step=safe_hdf5.count_attribute(h5, "current_step", path),
            history=_indexed(group("history"), path, SOLVERSTATE_KIND, sealed),
            solver_source=safe_hdf5.text_attribute(h5, "solver_source", path),
            solver_text=safe_hdf5.text_attribute(h5, "solver_text", path),
            net_files=list(zip(net_paths, net_texts)),
            random_states={name: StoredArray.of(dataset, path, SOLVERSTATE_KIND, sealed)
                           for name, dataset in safe_hdf5.members(group("random_states"),
                                                                  path).items()},
            readers={key: _reader(reader, path, sealed) for key, reader
                     in safe_hdf5.members(group("readers"), path, h5py.Group).items()},
            weights=_indexed(group("weights"), path, SOLVERSTATE_KIND, sealed)
            if "weights" in h5 else [],
            # absent from solverstates written before max_seconds
            seconds=safe_hdf5.seconds_attribute(h5, "seconds", path, default=0.0))


def model_of(state_path, state):
    """The .model a solverstate belongs to, checked to be present and unchanged."""
    if not state.learned_net or Path(state.learned_net).name != state.learned_net:
        raise UserError(state_path, f"its model file name {state.learned_net!r} is not a plain "
                        "file name (the model lies beside its solverstate)")
    model_path = Path(state_path).parent / state.learned_net
    if not model_path.is_file():
        raise UserError(state_path, f"its model file {model_path} is missing")
    try:
        unchanged = file_sha256(model_path) == state.learned_net_sha256
    except OSError as error:
        raise UserError(model_path, f"cannot read ({error.strerror})") from None
    if not unchanged:
        raise UserError(state_path, f"its model file {model_path} has changed since the "
                        "snapshot (sha256 differs)")
    return model_path


def snapshots(prefix, suffix=".model"):
    """(iteration, path) of every `<prefix>_iter_<N><suffix>`, by iteration."""
    prefix = Path(prefix)
    found = []
    for path in prefix.parent.glob(f"{glob.escape(prefix.name)}_iter_*{suffix}"):
        number = path.stem.rsplit("_iter_", 1)[-1]
        if number.isdigit():
            found.append((int(number), path))
    return sorted(found)


def surplus_snapshots(iterations, keep, psnr_at):
    """The snapshot iterations that `snapshot_keep` = `keep` removes: all but the newest
    `keep` and the one scored best in `psnr_at` ({iteration: test PSNR}; the earliest of
    equals). A snapshot not yet tested can only be kept as one of the newest."""
    newest = sorted(iterations)[-keep:]
    tested = [(psnr_at[iteration], -iteration) for iteration in iterations
              if iteration in psnr_at]
    best = [-max(tested)[1]] if tested else []
    return sorted(set(iterations) - set(newest) - set(best))


def newest_snapshot(prefix, suffix=".model"):
    """The highest-iteration `<prefix>_iter_<N><suffix>` (a .model, or a .solverstate), or
    None."""
    found = snapshots(prefix, suffix)
    return found[-1][1] if found else None


def models_without_state(prefix):
    """The `<prefix>_iter_<N>.model` files that have no `.solverstate` beside them (a run
    killed between writing the two), by iteration."""
    return [path for _, path in snapshots(prefix)
            if not path.with_suffix(".solverstate").exists()]
