"""`runner ship`: a training run's snapshot made into a model we ship, under `results/models/`.

From one `.solverstate`: `<name>.model` (the model file it belongs to, checksum checked) and a
folder `<name>/` holding what produced it, all taken from the run's own files rather than from
`configs/` (which may have moved on): the solver and net texts stored in the solverstate, the
prep config stored in the training HDF5 file (and its scale, in the model, where a snapshot
predates keeping it), the run's Caffe log and JSON-lines log, and the
curves `runner plot` draws from them. The folder is written beside and renamed into place, so
a failure leaves a shipped model as it was. What stands at the destination names is replaced:
a symbolic link there is removed, never the folder it points to.
"""
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from runner.errors import UserError, stored_in

DEFAULT_FOLDER = Path("results/models")


def ship(state_path, name, folder=DEFAULT_FOLDER):
    """Ship the model of `state_path` as `<folder>/<name>.model` plus `<folder>/<name>/`;
    returns the paths written."""
    # imported here, not above: `runner ship --help` reads DEFAULT_FOLDER and should not wait
    # for h5py and matplotlib
    from runner.files import outputs, snapshot
    from runner.net import feeds
    from runner.score import plot
    from runner.train import train_log
    if not name or Path(name).name != name or name.startswith("."):
        raise UserError("--name", f"{name!r} is not a plain file name (e.g. fsrcnn_x3)")
    state_path = Path(state_path)
    state, setup = _run_of(state_path)
    model_path = snapshot.model_of(state_path, state)
    with stored_in(state_path, state.stored_names):
        data_attributes = feeds.train_data_attributes(setup.train_net, setup.net_sources[0][0])
    log_text, log_records = train_log.log_paths(setup.solver.snapshot_prefix)
    if not log_records.is_file():
        raise UserError(state_path, f"its run's log {log_records} is missing")
    files = _config_files(state_path, state, data_attributes)
    folder = outputs.writable_folder(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
    staging.chmod(0o755)          # mkdtemp makes it private; a shipped folder is not
    try:
        for file_name, text in files.items():
            (staging / file_name).write_text(text, encoding="utf-8")
        shutil.copyfile(log_records, staging / "log.jsonl")
        if log_text.is_file():
            shutil.copyfile(log_text, staging / "train.log")
        plot.plot_log(staging / "log.jsonl", staging / "curves.png", title=name)
        model, data_scale = snapshot.load_model(model_path), int(data_attributes.get("scale", 0))
        if model.scale or not data_scale:
            shutil.copyfile(model_path, staging / "model.tmp")
        else:           # a snapshot from before .model files kept their data's scale
            snapshot.save_model(staging / "model.tmp", replace(model, scale=data_scale))
        target, model_target = folder / name, folder / f"{name}.model"
        _remove(target)
        if model_target.is_dir():
            _remove(model_target)
        (staging / "model.tmp").replace(model_target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [model_target, target]


@dataclass(frozen=True)
class Choice:
    """The snapshot of a run its test net scored best."""

    path: Path          # its .solverstate
    iteration: int
    psnr: float         # test net #0's PSNR at that iteration
    tested: int         # how many of the run's snapshots had a test to choose among


def best_tested(state_path):
    """The Choice among the snapshots (.solverstate files) of the run `state_path` belongs to:
    the one whose iteration test net #0 scored the highest PSNR in the run's log. Honest only
    when that test net is a validation split, not a benchmark set."""
    from runner.files import snapshot
    from runner.train import train_log
    state_path = Path(state_path)
    _, setup = _run_of(state_path)
    prefix = setup.solver.snapshot_prefix
    _, log_records = train_log.log_paths(prefix)
    try:
        psnr_at = dict(train_log.test_points(train_log.read_records(log_records)))
    except FileNotFoundError:
        raise UserError(state_path, f"its run's log {log_records} is missing") from None
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(log_records, f"not a readable training log ({error})") from None
    tested = [(psnr_at[iteration], iteration, path)
              for iteration, path in snapshot.snapshots(prefix, ".solverstate")
              if iteration in psnr_at]
    if not tested:
        raise UserError(state_path, f"no snapshot of its run ({prefix}_iter_*.solverstate) has a "
                        f"test-net PSNR in {log_records} to choose by")
    psnr, iteration, path = max(tested)
    return Choice(path, iteration, psnr, len(tested))


def _run_of(state_path):
    """(the solverstate, the SolverSetup its stored texts make)."""
    from runner.config import loading
    from runner.files import snapshot
    state = snapshot.load_solverstate(state_path)
    with stored_in(state_path, state.stored_names):
        return state, loading.solver_setup_from_texts(state.solver_source, state.solver_text,
                                                      state.net_files)


# names in the shipped folder that are not the solver's and net's files
RESERVED = ("prep.yaml", "log.jsonl", "train.log", "curves.png", "model.tmp")


def _config_files(state_path, state, data_attributes):
    """{file name: text} of the configs that made the model: the solver and net texts stored
    in the solverstate, the prep config stored in the training data."""
    files = {f"solver{Path(state.solver_source).suffix}": state.solver_text}
    for path, text in state.net_files:
        name = Path(path).name
        if not name or name.startswith(".") or name in files or name in RESERVED:
            raise UserError(state_path, f"its stored net file name {path!r} cannot be shipped "
                            "(not a plain file name, or taken)")
        files[name] = text
    if "prep_config" in data_attributes:
        files["prep.yaml"] = data_attributes["prep_config"]
    return files


def _remove(path):
    """Clear a destination name: a folder with its files, a file, or a link (not its target)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
