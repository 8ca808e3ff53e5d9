"""`.model` and `.solverstate` files: HDF5 in the layout of Caffe's HDF5 snapshots, no pickle.

A `.model` holds each layer's parameter blobs under `data/<layer>/<index>` (Caffe's
`snapshot_format: HDF5` layout) plus the net's config text. A `.solverstate` holds what a
resume needs to continue exactly: iteration, the model file's name and sha256, the update
rule's history, current_step, every random generator and data reader position, and the
solver and net texts. Reading either can never execute code: it is arrays and strings only.
Both are written to a temporary name and renamed, so a crash mid-write leaves the previous
pair intact.
"""
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from runner.errors import UserError

MODEL_FORMAT = "srcaffe-model-1"
SOLVERSTATE_FORMAT = "srcaffe-solverstate-1"


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
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise UserError(path.parent, f"cannot write here ({error.strerror})") from None
    try:
        with h5py.File(temporary, "w", track_order=True) as h5:
            yield h5
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def _reading(path, kind):
    """Open a snapshot file; any sign of damage becomes one UserError line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(path, f"no such {kind} file")
    try:
        with h5py.File(path, "r") as h5:
            yield h5
    except UserError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise UserError(path, f"not a valid {kind} file (damaged or not HDF5: "
                        f"{str(error).splitlines()[0]})") from None


def _check_format(h5, path, expected, kind):
    found = h5.attrs.get("format")
    if found != expected:
        raise UserError(path, f"not a {kind} file (format {found!r}, expected {expected!r})")


@dataclass
class ModelFile:
    """The weights of a net by Caffe layer name, and what the model was trained as."""

    blobs: dict                       # layer name -> list of numpy arrays (weights, bias, ...)
    net_text: str = ""                # the net config it was trained with
    net_source: str = ""              # that config's file name (its suffix tells the format)
    iteration: int = 0
    scale: int = 0                    # the training data's upscaling factor (0: not known); the
                                      # only record of it for a net without a Deconvolution


def save_model(path, model):
    with atomic_h5(path) as h5:
        h5.attrs.update(format=MODEL_FORMAT, net_text=model.net_text,
                        net_source=model.net_source, iteration=model.iteration,
                        scale=model.scale)
        data = h5.create_group("data", track_order=True)
        for layer, blobs in model.blobs.items():
            group = data.create_group(layer, track_order=True)
            for index, blob in enumerate(blobs):
                group.create_dataset(str(index), data=np.asarray(blob, dtype=np.float32))


def load_model(path):
    with _reading(path, "model") as h5:
        _check_format(h5, path, MODEL_FORMAT, "model")
        blobs = {layer: [np.asarray(group[str(index)]) for index in range(len(group))]
                 for layer, group in h5["data"].items()}
        return ModelFile(blobs, str(h5.attrs["net_text"]), str(h5.attrs["net_source"]),
                         int(h5.attrs["iteration"]), int(h5.attrs.get("scale", 0)))


@dataclass
class SolverState:
    """Everything a resume needs, Caffe's SolverState fields first."""

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


def save_solverstate(path, state):
    with atomic_h5(path) as h5:
        h5.attrs.update(format=SOLVERSTATE_FORMAT, iter=state.iteration,
                        learned_net=state.learned_net,
                        learned_net_sha256=state.learned_net_sha256,
                        current_step=state.current_step, solver_source=state.solver_source,
                        solver_text=state.solver_text,
                        net_paths=[path for path, _ in state.net_files],
                        net_texts=[text for _, text in state.net_files])
        history = h5.create_group("history", track_order=True)
        for index, blob in enumerate(state.history):
            history.create_dataset(str(index), data=np.asarray(blob))
        randoms = h5.create_group("random_states", track_order=True)
        for name, value in state.random_states.items():
            randoms.create_dataset(name, data=np.asarray(value, dtype=np.uint8))
        readers = h5.create_group("readers", track_order=True)
        for key, reader in state.readers.items():
            group = readers.create_group(key)
            group.create_dataset("order", data=reader["order"])
            group.create_dataset("generator", data=reader["generator"])
            group.attrs.update(cursor=reader["cursor"], epoch=reader["epoch"])


def load_solverstate(path):
    with _reading(path, "solverstate") as h5:
        _check_format(h5, path, SOLVERSTATE_FORMAT, "solverstate")
        attrs = h5.attrs
        readers = {key: {"order": np.asarray(group["order"]),
                         "generator": np.asarray(group["generator"]),
                         "cursor": int(group.attrs["cursor"]),
                         "epoch": int(group.attrs["epoch"])}
                   for key, group in h5["readers"].items()}
        return SolverState(
            iteration=int(attrs["iter"]), learned_net=str(attrs["learned_net"]),
            learned_net_sha256=str(attrs["learned_net_sha256"]),
            current_step=int(attrs["current_step"]),
            history=[np.asarray(h5["history"][str(index)])
                     for index in range(len(h5["history"]))],
            solver_source=str(attrs["solver_source"]), solver_text=str(attrs["solver_text"]),
            net_files=list(zip(map(str, attrs["net_paths"]), map(str, attrs["net_texts"]))),
            random_states={name: np.asarray(value)
                           for name, value in h5["random_states"].items()},
            readers=readers)


def model_of(state_path, state):
    """The .model a solverstate belongs to, checked to be present and unchanged."""
    model_path = Path(state_path).parent / state.learned_net
    if not model_path.is_file():
        raise UserError(state_path, f"its model file {model_path} is missing")
    if file_sha256(model_path) != state.learned_net_sha256:
        raise UserError(state_path, f"its model file {model_path} has changed since the "
                        "snapshot (sha256 differs)")
    return model_path


def newest_snapshot(prefix, suffix=".model"):
    """The highest-iteration `<prefix>_iter_<N><suffix>` (a .model, or a .solverstate), or
    None."""
    prefix = Path(prefix)
    candidates = []
    for path in prefix.parent.glob(f"{prefix.name}_iter_*{suffix}"):
        number = path.stem.rsplit("_iter_", 1)[-1]
        if number.isdigit():
            candidates.append((int(number), path))
    return max(candidates)[1] if candidates else None
