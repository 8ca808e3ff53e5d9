"""`runner compare RUN_OR_SWEEP ...`: runs side by side, labelled by what differs between them.

Each argument is a run (its folder, `_log.jsonl`, snapshot or prefix, as `runner plot` takes)
or a folder of runs (a sweep: one run per subfolder). What a run was is read from its newest
solverstate (the solver and net texts it trained with), so the keys whose values differ
between the runs are found without being told. For each run: those values; the final and best
test PSNR (test net #0) with their iterations, from its JSON-lines log; the whole-image Set5
PSNR of its final snapshot (the papers' protocol, `runner test`); iterations per second and
wall time (across resumes); weights and multiply-adds per LR pixel of a 512x512 input
(`runner inspect`). Written
as `compare.md`, `compare.csv` and `compare.png`: test PSNR and training loss against
iteration and against wall-clock, every run overlaid.
"""
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402

from runner import inspect  # noqa: E402
from runner.config import loading, overrides, schema  # noqa: E402
from runner.errors import UserError, stored_in  # noqa: E402
from runner.files import outputs, snapshot  # noqa: E402
from runner.infer import torch_engine  # noqa: E402
from runner.score import evaluate, plot, protocol  # noqa: E402
from runner.train.train_log import log_paths, read_records, test_points  # noqa: E402

DEFAULT_FOLDER = Path("results/compare")
REPORT_STEM = "compare"
SCORED_SET = "Set5"
# keys that differ between runs without saying anything about them: where snapshots go, and
# the net files' names (what the nets hold is compared key by key)
IGNORED_KEYS = ("snapshot_prefix", "net", "train_net", "test_net")
# multiply-adds are counted per LR pixel of an input this large: an unpadded net's borders,
# which lower the count per input pixel, then weigh little (as on a whole image)
COUNTED_INPUT = (512, 512)
SHOWN_DIGITS = 4          # of a float in the Markdown table and the labels (the CSV: all)


@dataclass(frozen=True)
class LogMetrics:
    """What a run's JSON-lines log says about it."""

    final_psnr: float
    final_iteration: int
    best_psnr: float
    best_iteration: int
    iterations: int               # the last iteration logged
    seconds: float                # wall time, resumes included
    iterations_per_second: float


def run_records(snapshot_prefix):
    path = log_paths(snapshot_prefix)[1]
    try:
        return read_records(path)
    except FileNotFoundError:
        raise UserError(path, "no such training log") from None
    except ValueError as error:
        raise UserError(path, f"not a readable training log ({error})") from None


def log_metrics(records):
    tests = test_points(records)
    final_iteration, final_psnr = tests[-1] if tests else (0, math.nan)
    best_iteration, best_psnr = max(tests, key=lambda point: point[1]) if tests else (0, math.nan)
    iterations = max((record["iteration"] for record in records), default=0)
    seconds = max((record.get("seconds", 0.0) for record in records), default=0.0)
    return LogMetrics(final_psnr, final_iteration, best_psnr, best_iteration, iterations,
                      seconds, iterations / seconds if seconds else math.nan)


@dataclass
class Run:
    name: str
    snapshot_prefix: str
    setup: loading.SolverSetup     # from the texts its newest solverstate stores
    model_path: Path               # its final snapshot's .model
    records: list


def load_run(snapshot_prefix, name):
    state_path = snapshot.newest_snapshot(snapshot_prefix, ".solverstate")
    if state_path is None:
        raise UserError(snapshot_prefix, "has no snapshot to compare (no *.solverstate)")
    state = snapshot.load_solverstate(state_path)
    with stored_in(state_path, state.stored_names):
        setup = loading.solver_setup_from_texts(state.solver_source, state.solver_text,
                                               state.net_files)
    return Run(name, snapshot_prefix, setup, snapshot.model_of(state_path, state),
               run_records(snapshot_prefix))


def runs_of(argument):
    """The runs an argument names: one run, or each run in the subfolders of a sweep."""
    path = Path(argument)
    if path.is_dir() and not list(path.glob("*_log.jsonl")):
        # a sweep: its trials that have a snapshot (one that failed before any has nothing
        # to compare)
        prefixes = [str(log)[:-len("_log.jsonl")] for log in sorted(path.glob("*/*_log.jsonl"))]
        prefixes = [prefix for prefix in prefixes
                    if snapshot.newest_snapshot(prefix, ".solverstate")]
        if not prefixes:
            raise UserError(path, "holds no run with a snapshot (no *_log.jsonl and "
                            "*.solverstate in it or its subfolders)")
        return [load_run(prefix, Path(prefix).parent.name) for prefix in prefixes]
    log = plot.find_log(argument)
    prefix = str(log)[:-len("_log.jsonl")]
    return [load_run(prefix, prefix)]


def _flatten(mapping, prefix, into):
    for key, value in mapping.items():
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{key}.", into)
        else:
            into[f"{prefix}{key}"] = value if not isinstance(value, list) else \
                (value[0] if len(value) == 1 else str(value))
    return into


def settings(setup):
    """{key: value} of a run's solver (by name) and nets (by layer name, as --set names them;
    `name@PHASE` where a name has one layer per phase), defaults included."""
    solver = schema.to_mapping(setup.solver, include_defaults=True)
    found = _flatten({key: value for key, value in solver.items() if key not in IGNORED_KEYS},
                     "", {})
    for path, text in setup.net_sources:
        net = loading.parse_config(schema.NetParameter, text, path)
        names = [layer.name for layer in net.layer]
        for layer in net.layer:
            name = layer.name
            if names.count(name) > 1 and layer.include:
                name = f"{name}@{layer.include[0].phase}"
            mapping = schema.to_mapping(layer, include_defaults=True)
            for key in ("name", "include", "exclude", "blobs"):
                mapping.pop(key, None)
            _flatten(mapping, f"{name}.", found)
    return found


def differing_keys(runs):
    """The settings whose values are not the same in every run, in the first run's order."""
    every = [settings(run.setup) for run in runs]
    keys = list(dict.fromkeys(key for found in every for key in found))
    return [key for key in keys if len({repr(found.get(key)) for found in every}) > 1], every


def labels(runs):
    """Each run's label: `key=value, ...` of what differs, else its name."""
    keys, every = differing_keys(runs)
    return keys, [overrides.describe({key: found.get(key) for key in keys}, SHOWN_DIGITS)
                  or run.name for run, found in zip(runs, every)]


def scored_psnrs(model_paths, set_name=SCORED_SET):
    """Mean whole-image PSNR of each model on a benchmark set, by `runner test`'s protocol;
    the models of one scale are scored together, each image degraded once for them all."""
    models = [torch_engine.load_for_inference(path, "cpu") for path in model_paths]
    means = {}
    for scale in sorted({model.scale for model in models}):
        methods = {str(index): evaluate.model_method(model)
                   for index, model in enumerate(models) if model.scale == scale}
        scores = evaluate.evaluate_sets([set_name], protocol.Protocol(scale), methods)
        means.update({int(mean.method): mean.psnr for mean in evaluate.means(scores)})
    return [means[index] for index in range(len(models))]


@dataclass(frozen=True)
class Row:
    run: str
    values: dict          # the differing keys' values
    log: LogMetrics
    set_psnr: float
    weights: int
    multiply_adds_per_pixel: float


def rows(runs):
    keys, every = differing_keys(runs)
    made = []
    psnrs = scored_psnrs([run.model_path for run in runs])
    for run, found, psnr in zip(runs, every, psnrs):
        summary = inspect.summarize_net(run.setup.train_net, run.setup.net_sources[0][0],
                                        COUNTED_INPUT)
        made.append(Row(run.name, {key: found.get(key) for key in keys},
                        log_metrics(run.records), psnr, summary.weights,
                        summary.multiply_adds_per_pixel))
    return keys, made


def _minutes(seconds):
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def markdown_table(keys, table_rows):
    header = ["run", *keys, "final test PSNR (iter)", "best test PSNR (iter)",
              f"{SCORED_SET} PSNR", "iterations", "iter/s", "wall time", "weights",
              "mult-adds/px"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows:
        log = row.log
        cells = [row.run, *(overrides.shown(row.values[key], SHOWN_DIGITS) for key in keys),
                 f"{log.final_psnr:.2f} ({log.final_iteration})",
                 f"{log.best_psnr:.2f} ({log.best_iteration})", f"{row.set_psnr:.2f}",
                 str(log.iterations), f"{log.iterations_per_second:.1f}",
                 _minutes(log.seconds), f"{row.weights:,}",
                 f"{row.multiply_adds_per_pixel:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_table(keys, table_rows):
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["run", *keys, "final_test_psnr", "final_iteration", "best_test_psnr",
                     "best_iteration", f"{SCORED_SET.lower()}_psnr", "iterations",
                     "iterations_per_second", "wall_seconds", "weights",
                     "multiply_adds_per_pixel"])
    for row in table_rows:
        log = row.log
        writer.writerow([row.run, *(row.values[key] for key in keys), f"{log.final_psnr:.6f}",
                         log.final_iteration, f"{log.best_psnr:.6f}", log.best_iteration,
                         f"{row.set_psnr:.6f}", log.iterations,
                         f"{log.iterations_per_second:.4f}", f"{log.seconds:.3f}", row.weights,
                         f"{row.multiply_adds_per_pixel:.2f}"])
    return stream.getvalue()


def curves(records):
    """(test: [(iteration, seconds, PSNR)], train: [(iteration, seconds, loss)]) of a log."""
    test = [(r["iteration"], r.get("seconds", 0.0), r["test_psnr"]) for r in records
            if "test_psnr" in r and r.get("test_net", 0) == 0]
    train = [(r["iteration"], r.get("seconds", 0.0), r["loss"]) for r in records if "loss" in r]
    return test, train


def draw(runs, run_labels, out_path):
    """Test PSNR and training loss against iteration and wall-clock, runs overlaid."""
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    trained_psnrs = []
    for run, label in zip(runs, run_labels):
        test, train = curves(run.records)
        for column in (0, 1):
            if test:
                axes[0][column].plot([p[column] for p in test], [p[2] for p in test],
                                     marker="o", markersize=3, label=label)
            if train:
                axes[1][column].plot([p[column] for p in train], [p[2] for p in train],
                                     label=label)
        # the untrained net's first test (near 5 dB) would flatten the curves that matter
        trained_psnrs += [point[2] for point in test[1:]]
    if trained_psnrs:
        for column in (0, 1):
            axes[0][column].set_ylim(min(trained_psnrs) - 0.5, max(trained_psnrs) + 0.5)
    for column, unit in enumerate(("iteration", "wall-clock seconds")):
        axes[0][column].set_ylabel("test PSNR (dB)")
        axes[1][column].set_ylabel("training loss (Euclidean)")
        axes[1][column].set_yscale("log")
        for row in (0, 1):
            axes[row][column].set_xlabel(unit)
            axes[row][column].grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return plot.save_figure(figure, out_path)


def compare(arguments, out=None):
    """Compare the runs the arguments name; write compare.md, .csv and .png into `out`
    (default: the sweep's folder when given one sweep, else results/compare). Returns the
    Markdown table and the paths written."""
    runs = [run for argument in arguments for run in runs_of(argument)]
    names = [run.name for run in runs]
    if len(set(names)) != len(names):       # trials of several sweeps: name them in full
        for run in runs:
            run.name = run.snapshot_prefix
    if out is None:
        single_sweep = len(arguments) == 1 and Path(arguments[0]).is_dir() and \
            not list(Path(arguments[0]).glob("*_log.jsonl"))
        out = Path(arguments[0]) if single_sweep else DEFAULT_FOLDER
    keys, table_rows = rows(runs)
    outputs.writable_folder(out)
    stem = Path(out) / REPORT_STEM
    table = markdown_table(keys, table_rows)
    written = outputs.write_files({stem.with_suffix(".md"): table,
                                   stem.with_suffix(".csv"): csv_table(keys, table_rows)})
    written.append(draw(runs, labels(runs)[1], stem.with_suffix(".png")))
    return table, written
