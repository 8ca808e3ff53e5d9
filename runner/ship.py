"""`runner ship`: a training run's snapshot made into a model we ship, under `results/models/`.

From one `.solverstate`: `<name>.model` (the model file it belongs to, checksum checked) and a
folder `<name>/` holding what produced it, all taken from the run's own files rather than from
`configs/` (which may have moved on): the solver and net texts stored in the solverstate, the
prep config stored in the training HDF5 file, the run's Caffe log and JSON-lines log, and the
curves `runner plot` draws from them. The folder is written beside and renamed into place, so
a failure leaves a shipped model as it was.
"""
import shutil
import tempfile
from pathlib import Path

import h5py

from runner import config, net, plot, snapshot, train_log
from runner.data import read_source_list
from runner.errors import UserError

DEFAULT_FOLDER = Path("results/models")


def training_prep_config(setup):
    """The prep config text stored in the first training HDF5 file, or None (data not made by
    `python -m prep`)."""
    for layer in net.phase_layers(setup.train_net, "TRAIN", setup.net_sources[0][0]):
        if layer.type == "HDF5Data":
            first = read_source_list(layer.hdf5_data_param.source)[0]
            with h5py.File(first, "r") as h5:
                text = h5.attrs.get("prep_config")
            return None if text is None else str(text)
    return None


def ship(state_path, name, folder=DEFAULT_FOLDER):
    """Ship the model of `state_path` as `<folder>/<name>.model` plus `<folder>/<name>/`;
    returns the paths written."""
    if not name or Path(name).name != name or name.startswith("."):
        raise UserError("--name", f"{name!r} is not a plain file name (e.g. fsrcnn_x3)")
    state_path = Path(state_path)
    state = snapshot.load_solverstate(state_path)
    model_path = snapshot.model_of(state_path, state)
    setup = config.solver_setup_from_texts(state.solver_source, state.solver_text,
                                           state.net_files)
    log_text, log_records = train_log.log_paths(setup.solver.snapshot_prefix)
    if not log_records.is_file():
        raise UserError(state_path, f"its run's log {log_records} is missing")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
    staging.chmod(0o755)          # mkdtemp makes it private; a shipped folder is not
    try:
        files = {f"solver{Path(state.solver_source).suffix}": state.solver_text,
                 **{Path(path).name: text for path, text in state.net_files}}
        prep_text = training_prep_config(setup)
        if prep_text is not None:
            files["prep.yaml"] = prep_text
        for file_name, text in files.items():
            (staging / file_name).write_text(text, encoding="utf-8")
        shutil.copyfile(log_records, staging / "log.jsonl")
        if log_text.is_file():
            shutil.copyfile(log_text, staging / "train.log")
        plot.plot_log(staging / "log.jsonl", staging / "curves.png", title=name)
        shutil.copyfile(model_path, staging / "model.tmp")
        target, model_target = folder / name, folder / f"{name}.model"
        if target.exists():
            shutil.rmtree(target)
        (staging / "model.tmp").replace(model_target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [model_target, target]
