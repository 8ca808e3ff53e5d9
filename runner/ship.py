"""`runner ship`: a training run's snapshot made into a model we ship, under `results/models/`.

From one `.solverstate`: `<name>.model` (the model file it belongs to, checksum checked) and a
folder `<name>/` holding what produced it, all taken from the run's own files rather than from
`configs/` (which may have moved on): the solver and net texts stored in the solverstate, the
prep config stored in the training HDF5 file (and its scale, in the model, where a snapshot
predates keeping it), the run's Caffe log and JSON-lines log, and the
curves `runner plot` draws from them. The folder is written beside and renamed into place, so
a failure leaves a shipped model as it was. What stands at the destination names is replaced:
a symbolic link there is removed, never the folder it points to.

From several `.solverstate`s (runs fine-tuned from one model, say): the uniform average of their
models' weights, blob by blob (a "model soup", Wortsman et al. 2022), which often scores above
each of them. The model keeps the first snapshot's net text and iteration; the folder holds each
snapshot's files, as above, in a subfolder of its own, and `ingredients.yaml` says which
snapshots were averaged.

Chosen on a validation split (`greedy`, `runner ship --greedy PREP_CONFIG`): Wortsman et al.'s
greedy soup. Each snapshot's model is scored on the images the prep config holds out of
training, whole, as `runner test --validation` scores them; going down that ranking, a snapshot
joins the average only if the average's score does not fall. `greedy_soup.yaml` in the folder
records every score and choice.
"""
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from runner.errors import UserError, stored_in

DEFAULT_FOLDER = Path("results/models")


def ship(state_paths, name, folder=DEFAULT_FOLDER, greedy_on=None, report=lambda line: None):
    """Ship the model of each `.solverstate` in `state_paths` (their average, when several) as
    `<folder>/<name>.model` plus `<folder>/<name>/`; returns the paths written. `greedy_on`: a
    prep config whose held-out images choose which of them to average (greedy_soup; `report`
    is called with a line as each score is known)."""
    # imported here, not above: `runner ship --help` reads DEFAULT_FOLDER and should not wait
    # for h5py and matplotlib
    from runner.files import outputs, snapshot
    if not name or Path(name).name != name or name.startswith("."):
        raise UserError("--name", f"{name!r} is not a plain file name (e.g. fsrcnn_x3)")
    runs = [_Run.of(Path(path)) for path in state_paths]
    if len(runs) > 1:
        _check_one_net(runs)
    trials = None
    if greedy_on is not None:
        if len(runs) < 2:
            raise UserError("--greedy", "chooses among several snapshots: give at least two")
        runs, trials = greedy_soup(runs, validation_scorer(greedy_on), report)
    model = runs[0].model if len(runs) == 1 else _average_of(runs)
    folder = outputs.writable_folder(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
    staging.chmod(0o755)          # mkdtemp makes it private; a shipped folder is not
    try:
        if len(runs) == 1:
            runs[0].write(staging, name)
        else:
            for index, run in enumerate(runs, 1):
                run.write(staging / run.folder_name(index), f"{name}: {run.folder_name(index)}")
            (staging / "ingredients.yaml").write_text(_ingredients(runs), encoding="utf-8")
        if trials is not None:
            (staging / "greedy_soup.yaml").write_text(_greedy_record(greedy_on, trials),
                                                      encoding="utf-8")
        if len(runs) == 1 and not runs[0].scale_filled_in:
            shutil.copyfile(runs[0].model_path, staging / "model.tmp")
        else:
            snapshot.save_model(staging / "model.tmp", model)
        target, model_target = folder / name, folder / f"{name}.model"
        _remove(target)
        if model_target.is_dir():
            _remove(model_target)
        (staging / "model.tmp").replace(model_target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [model_target, target]


def _check_one_net(runs):
    """Refuse what is not distinct snapshots of one net: a snapshot given twice, or a layer
    with weights whose type or geometry (convolution_param apart from its fillers) differs from
    the first snapshot's net."""
    seen = set()
    for run in runs:
        resolved = run.state_path.resolve()
        if resolved in seen:
            raise UserError(run.state_path, "given twice: each snapshot is averaged once")
        seen.add(resolved)
    first = runs[0].weighted_layers()
    for run in runs[1:]:
        for name, layer in run.weighted_layers().items():
            if name in first and layer != first[name]:
                raise UserError(run.state_path, f"its layer {name!r} is not computed as in "
                                f"{runs[0].state_path}'s net: only models of one net can be "
                                "averaged")


def _average_of(runs):
    return averaged([run.model for run in runs], [run.model_path for run in runs])


@dataclass(frozen=True)
class Tried:
    """One snapshot as the greedy soup tried it."""

    state_path: Path
    alone: float        # its model's validation PSNR
    soup: float         # the average's once it joined (its own score for the first)
    kept: bool


def greedy_soup(runs, score, report):
    """(the runs kept, [Tried] in the order tried): the runs ranked by `score` (a function of
    a ModelFile and the path that names it, higher better) of their own model, the best first;
    each next one kept in the average only if the average's score does not fall. Ties keep the
    given order."""
    alone = []
    for run in runs:
        alone.append(score(run.model, run.model_path))
        report(f"{run.state_path}: {alone[-1]:.4f} dB alone")
    ranked = sorted(range(len(runs)), key=lambda index: -alone[index])
    kept, best = [runs[ranked[0]]], alone[ranked[0]]
    trials = [Tried(kept[0].state_path, best, best, True)]
    for index in ranked[1:]:
        candidate = kept + [runs[index]]
        value = score(_average_of(candidate), candidate[0].model_path)
        trials.append(Tried(runs[index].state_path, alone[index], value, value >= best))
        report(f"+ {runs[index].state_path}: the average of {len(candidate)} {value:.4f} dB, "
               f"{'kept' if value >= best else 'left out'}")
        if value >= best:
            kept, best = candidate, value
    report(f"the greedy soup: {len(kept)} of {len(runs)} snapshots, {best:.4f} dB")
    return kept, trials


def validation_scorer(prep_config_path):
    """(ModelFile, the path that names it) -> the mean PSNR of its model (torch engine) on the
    images the prep config holds out of training, whole: `runner test --validation`'s figure."""
    from runner.infer import torch_engine
    from runner.score import evaluate
    images = evaluate.held_out_images(prep_config_path)

    def score(model_file, path):
        return evaluate.mean_psnr(torch_engine.inference_model(path, model_file), images)
    return score


def averaged(models, paths):
    """The ModelFile whose every blob is the mean of `models`' (ModelFiles read from `paths`),
    in float64 then rounded to float32; the first model's net text, iteration and scale. The
    models must hold the same layers, blobs of the same shapes, and the same scale."""
    import numpy as np
    first = models[0].read_blobs(where=paths[0])
    sums = {layer: [blob.astype(np.float64) for blob in blobs] for layer, blobs in first.items()}
    for model, path in zip(models[1:], paths[1:]):
        if set(model.blobs) != set(first):
            raise UserError(path, f"its layers with weights ({', '.join(sorted(model.blobs))}) "
                            f"are not those of {paths[0]} ({', '.join(sorted(first))}): "
                            "only models of one net can be averaged")
        if model.scale != models[0].scale:
            raise UserError(path, f"a x{model.scale} model cannot be averaged with "
                            f"{paths[0]}, a x{models[0].scale} one")
        for layer, blobs in model.read_blobs(first, path).items():
            for total, blob in zip(sums[layer], blobs):
                total += blob
    return replace(models[0], blobs={layer: [(total / len(models)).astype(np.float32)
                                             for total in totals]
                                     for layer, totals in sums.items()})


@dataclass
class _Run:
    """A snapshot to ship, with what its run left: the solverstate and its setup, its model,
    the run's logs and the configs that made it."""

    state_path: Path
    state: object
    setup: object
    model_path: Path
    model: object
    scale_filled_in: bool   # its .model predates keeping the data's scale: given it here
    files: dict             # {file name: text} of its configs
    log_records: Path
    log_text: Path

    @classmethod
    def of(cls, state_path):
        from runner.files import snapshot
        from runner.net import feeds
        from runner.train import train_log
        state, setup = _run_of(state_path)
        model_path = snapshot.model_of(state_path, state)
        with stored_in(state_path, state.stored_names):
            data_attributes = feeds.train_data_attributes(setup.train_net,
                                                          setup.net_sources[0][0])
        log_text, log_records = train_log.log_paths(setup.solver.snapshot_prefix)
        if not log_records.is_file():
            raise UserError(state_path, f"its run's log {log_records} is missing")
        model, data_scale = snapshot.load_model(model_path), int(data_attributes.get("scale", 0))
        filled_in = bool(data_scale and not model.scale)
        if filled_in:
            model = replace(model, scale=data_scale)
        return cls(state_path, state, setup, model_path, model, filled_in,
                   _config_files(state_path, state, data_attributes), log_records, log_text)

    def weighted_layers(self):
        """{name: (type, convolution_param without fillers)} of its train net's layers that
        have weights in its model."""
        return {layer.name: (layer.type, layer.convolution_param and replace(
                    layer.convolution_param, weight_filler=None, bias_filler=None))
                for layer in self.setup.train_net.layer if layer.name in self.model.blobs}

    def folder_name(self, index):
        """`<index>_<run folder>_iter_<iteration>`: where its files go among several."""
        return f"{index}_{self.state_path.parent.name}_iter_{self.state.iteration}"

    def write(self, folder, title):
        """Its configs, logs and curves into `folder` (made here)."""
        from runner.score import plot
        folder.mkdir(exist_ok=True)
        for file_name, text in self.files.items():
            (folder / file_name).write_text(text, encoding="utf-8")
        shutil.copyfile(self.log_records, folder / "log.jsonl")
        if self.log_text.is_file():
            shutil.copyfile(self.log_text, folder / "train.log")
        plot.plot_log(folder / "log.jsonl", folder / "curves.png", title=title)


def _ingredients(runs):
    """ingredients.yaml: each averaged snapshot, where its files are, and its model's checksum
    (the solverstate's, which snapshot.model_of has checked the file against)."""
    import yaml
    listed = [{"snapshot": str(run.state_path), "iteration": run.state.iteration,
               "model_sha256": run.state.learned_net_sha256,
               "files": f"{run.folder_name(index)}/"} for index, run in enumerate(runs, 1)]
    return ("# The shipped model is the uniform average of these snapshots' weights (runner ship "
            "with several).\n" + yaml.safe_dump({"ingredients": listed}, sort_keys=False))


def _greedy_record(prep_config_path, trials):
    """greedy_soup.yaml: the validation split, and every snapshot tried in order, with its
    score alone, the average's with it, and whether it stayed."""
    import yaml
    kept = [trial.soup for trial in trials if trial.kept]
    record = {"validation": str(prep_config_path), "shipped_psnr": kept[-1],
              "tried": [{"snapshot": str(trial.state_path), "alone_psnr": trial.alone,
                         "average_psnr": trial.soup, "kept": trial.kept}
                        for trial in trials]}
    return ("# runner ship --greedy: each snapshot's model scored on the images the prep config\n"
            "# holds out (mean PSNR in dB, whole, as runner test --validation scores them), tried\n"
            "# best first, and kept only if the average's score did not fall\n"
            + yaml.safe_dump(record, sort_keys=False))


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
RESERVED = ("prep.yaml", "log.jsonl", "train.log", "curves.png", "model.tmp",
            "greedy_soup.yaml")


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
