"""`make bench-train` (`python -m runner.bench.time_to_quality`): Set5 PSNR against wall-clock
time for FSRCNN(56,12,4) x3 trained from random weights, by three contenders given the same
budget:

- recipe: `runner train --solver configs/fsrcnn_x3_fast_solver.yaml` (its data:
  configs/prep_x3_fast.yaml), the time-to-quality recipe;
- tutorial: `runner train --solver configs/fsrcnn_solver.yaml` (SGD, `make prep`'s data), with
  its Set5-patch test net off (test_interval 0), which would only cost it time;
- reference: yjn870/FSRCNN-pytorch's loop (runner/bench/reference_loop.py) on the paper's
  augmented T91 pairs (configs/prep_x3_augment.yaml).

They run one after the other, each alone on the machine, each as a child process whose clock
starts at its launch: start-up, data loading and training all count. Every budget/30 s the
bench sends the child SIGHUP (write a checkpoint and go on: runner train's own signal, which
the reference loop shares) and at the budget SIGINT (a checkpoint, then stop); a child that
reaches its max_iter earlier just ends, as the recipe does: its schedule is sized by the clock
(max_seconds, set from the budget), so that its rate reaches 0 as the budget ends. The
children start with SIGHUP ignored, so a request that comes before a child's handler is
installed is dropped instead of killing it. A checkpoint's time is its file's modification
time less the launch time. runner train's children are told where to snapshot by `--set`, and
to snapshot only when asked (snapshot=0); their files are not edited.

After all training, every checkpoint is scored on Set5, whole images, by the papers' protocol
(runner/score/evaluate.py, what `runner test` runs). Preparing data and scoring are not
timed. Set5 only measures: nothing is chosen by it; a contender's result at the budget is its
last checkpoint.
"""
import argparse
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from runner.bench import reference_loop  # noqa: E402
from runner.bench.measure import DEFAULT_THREADS, REPO_ROOT, compile_sources, cpu_name  # noqa: E402
from runner.bench.prep_time import ensure_prepared, prepared_source, solver_source  # noqa: E402
from runner.config import loading  # noqa: E402
from runner.errors import UserError  # noqa: E402
from runner.files import outputs, snapshot  # noqa: E402
from runner.infer import torch_engine  # noqa: E402
from runner.score import evaluate, plot  # noqa: E402

CONFIGS = REPO_ROOT / "configs"
DEFAULT_BUDGET = 900.0
DEFAULT_CHECKPOINTS = 30            # per budget: the curve's points
TARGET_PSNR = 33.0                  # dB on Set5 x3: issue 15's goal
SCALE = 3
TEST_SET = "Set5"
# The table's times, as fractions of the budget: 2.5, 5, 10 and 15 minutes of the default.
MARKS = (1 / 6, 1 / 3, 2 / 3, 1)
STOP_GRACE = 120.0                  # seconds a child may take to write its last checkpoint
RUNS_FOLDER = "time_to_quality"     # under --out: each contender's checkpoints and output
NAMES = ("recipe", "tutorial", "reference")
# the recipe's max_seconds as a share of the budget: of 15 minutes, 15 s are left for start-up
# (4 s) and the last snapshot, as its solver file leaves them
RECIPE_CLOCK = 59 / 60


@dataclass(frozen=True)
class Contender:
    """One way to train, as a child process: `python -m <command>` in the repository root."""

    name: str
    command: tuple
    prefix: Path                    # its checkpoints: <prefix>_iter_<N><suffix>
    suffix: str
    batch: int                      # samples per iteration
    data: Path                      # its training data's source list
    prep_config: Path = None        # what makes `data` when it is missing
    about: str = ""                 # what it is, for the report


def runner_train(name, solver_path, folder, prep_config=None, settings=(), about=""):
    """`runner train --solver <solver_path>` snapshotting into `folder/<name>` only when asked,
    with `settings` (KEY=VALUE) set too."""
    setup = loading.load_solver(solver_path)
    data, layer = solver_source(setup)
    prefix = Path(folder) / name / name
    chosen = ("snapshot=0", f"snapshot_prefix={prefix}", *settings)
    command = ("runner", "train", "--solver", str(solver_path),
               *(word for setting in chosen for word in ("--set", setting)))
    return Contender(name, command, prefix, ".model",
                     layer.hdf5_data_param.batch_size * setup.solver.iter_size, data,
                     prep_config, about)


def reference(name, prep_config, folder, data=None, batch=16, about=""):
    """The reference loop (runner/bench/reference_loop.py) on the data `prep_config` writes
    (or on the source list `data`)."""
    data = Path(data) if data else prepared_source(prep_config)
    prefix = Path(folder) / name / name
    command = ("runner.bench.reference_loop", "--data", str(data), "--prefix", str(prefix),
               "--batch", str(batch))
    return Contender(name, command, prefix, reference_loop.CHECKPOINT_SUFFIX, batch, data,
                     prep_config, about)


def contenders(folder, budget=DEFAULT_BUDGET):
    """The three contenders of `make bench-train` given `budget` seconds each, by name."""
    made = [
        runner_train("recipe", CONFIGS / "fsrcnn_x3_fast_solver.yaml", folder,
                     CONFIGS / "prep_x3_fast.yaml",
                     settings=(f"max_seconds={budget * RECIPE_CLOCK:g}",),
                     about="the time-to-quality recipe, as its solver file says, its "
                     "max_seconds sized to the budget"),
        runner_train("tutorial", CONFIGS / "fsrcnn_solver.yaml", folder,
                     CONFIGS / "prep_x3.yaml", settings=("test_interval=0",),
                     about="the Intel tutorial's SGD solver on `make prep`'s data, its "
                     "Set5-patch test net off (test_interval=0)"),
        reference("reference", CONFIGS / "prep_x3_augment.yaml", folder,
                  about="yjn870/FSRCNN-pytorch's loop (Adam lr 1e-3, the deconvolution at "
                  "0.1x, batch 16, nn.MSELoss, per-sample HDF5 Dataset, 0 DataLoader workers) "
                  "on the augmented T91 pairs of configs/prep_x3_augment.yaml")]
    return {contender.name: contender for contender in made}


@dataclass(frozen=True)
class Checkpoint:
    seconds: float                  # its file's modification time less the child's launch
    iteration: int
    path: Path
    psnr: float = None              # mean Set5 PSNR (dB), once scored


@dataclass
class Run:
    """What one contender did in its budget."""

    contender: Contender
    seconds: float                  # from launch to the child's exit
    stopped: bool                   # told to stop at the budget (else it ended by itself)
    returncode: int
    output: Path                    # the child's stdout and stderr
    checkpoints: list = field(default_factory=list)

    @property
    def last(self):
        return self.checkpoints[-1] if self.checkpoints else None


@dataclass
class Results:
    budget: float
    threads: int
    interval: float                 # seconds between checkpoint requests
    load_before: tuple
    load_after: tuple = None
    runs: list = field(default_factory=list)
    prep_seconds: dict = field(default_factory=dict)    # name -> seconds, where prep ran
    bicubic_psnr: float = None


@dataclass
class SignalIgnored:
    """A signal ignored in this process while the block runs: what children started meanwhile
    inherit (an ignored disposition survives exec; a handler would not)."""

    number: int
    previous: object = None

    def __enter__(self):
        self.previous = signal.signal(self.number, signal.SIG_IGN)

    def __exit__(self, *exc):
        signal.signal(self.number, self.previous)


def request_times(budget, checkpoints):
    """Seconds after launch at which a checkpoint is asked for, before the stop at `budget`."""
    return [budget * index / checkpoints for index in range(1, checkpoints)]


def run_contender(contender, budget, checkpoints, threads, log=print):
    """Launch the contender's child, ask for checkpoints and stop it at `budget`; its Run.
    A child that fails before the budget is a UserError naming its output file."""
    folder = contender.prefix.parent
    shutil.rmtree(folder, ignore_errors=True)       # only this bench's own run folder
    folder.mkdir(parents=True)
    output_path = folder / "output.log"
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    with open(output_path, "w", encoding="utf-8") as output, SignalIgnored(signal.SIGHUP):
        launched = time.time()
        child = subprocess.Popen([sys.executable, "-m", *contender.command], cwd=REPO_ROOT,
                                 env=environment, stdout=output, stderr=subprocess.STDOUT)
    requests = request_times(budget, checkpoints)
    while child.poll() is None and time.time() < launched + budget:
        due = requests[0] if requests else budget
        try:
            child.wait(timeout=max(0.0, launched + due - time.time()))
        except subprocess.TimeoutExpired:
            if requests and time.time() >= launched + requests[0]:
                requests.pop(0)
                child.send_signal(signal.SIGHUP)
    stopped = child.poll() is None
    if stopped:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    ended = time.time() - launched
    if not stopped and child.returncode != 0:
        lines = output_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        raise UserError(output_path, f"{contender.name} failed (exit code {child.returncode}): "
                        f"{lines[-1] if lines else 'no output'}")
    found = [Checkpoint(path.stat().st_mtime - launched, iteration, path)
             for iteration, path in snapshot.snapshots(contender.prefix, contender.suffix)]
    run = Run(contender, ended, stopped, child.returncode, output_path,
              sorted(found, key=lambda checkpoint: checkpoint.seconds))
    log(f"{contender.name}: {len(run.checkpoints)} checkpoints in {ended:.1f} s"
        + (f", iteration {run.last.iteration}" if run.last else "")
        + ("" if stopped else " (ended by itself)")
        + (f", exit code {child.returncode}" if child.returncode else ""))
    return run


def module_method(module):
    """A torch module mapping an N x 1 x H x W LR batch in 0..1 to its HR estimate, as a scoring
    method of runner/score/evaluate.py: (LR float plane in 0..255, scale) -> HR plane."""
    @torch.no_grad()
    def method(low_res, scale):
        estimate = module(torch.from_numpy(low_res / 255.0).float()[None, None])
        return estimate[0, 0].double().numpy() * 255.0
    return method


def checkpoint_method(path):
    """The scoring method of a checkpoint: a runner .model as `runner test` loads it, or the
    reference loop's state_dict in its own module."""
    if Path(path).suffix == reference_loop.CHECKPOINT_SUFFIX:
        return module_method(reference_loop.load_checkpoint(path))
    return evaluate.model_method(torch_engine.load_for_inference(path))


def set_psnrs(methods, data_root=None):
    """{name: mean PSNR} of scoring methods ({name: method}) on the test set, whole images, the
    papers' protocol; each image is read and degraded once for all of them."""
    scores = evaluate.evaluate_sets([TEST_SET], evaluate.Protocol(SCALE), methods, data_root)
    return {mean.method: mean.psnr for mean in evaluate.means(scores)}


def score(results, data_root=None, log=print):
    """Every checkpoint of every run scored (and bicubic, for scale), in place."""
    methods = {"bicubic": evaluate.bicubic}
    methods.update({(index, number): checkpoint_method(checkpoint.path)
                    for index, run in enumerate(results.runs)
                    for number, checkpoint in enumerate(run.checkpoints)})
    psnrs = set_psnrs(methods, data_root)
    results.bicubic_psnr = psnrs["bicubic"]
    for index, run in enumerate(results.runs):
        run.checkpoints = [replace(checkpoint, psnr=psnrs[index, number])
                           for number, checkpoint in enumerate(run.checkpoints)]
        if run.last:
            log(f"{run.contender.name}: {TEST_SET} {run.last.psnr:.2f} dB at the end, best "
                f"{max(checkpoint.psnr for checkpoint in run.checkpoints):.2f} dB")


def measure(chosen, budget=DEFAULT_BUDGET, threads=DEFAULT_THREADS,
            checkpoints=DEFAULT_CHECKPOINTS, data_root=None, log=print):
    """Prepare the data of the `chosen` contenders, run them one after the other, score their
    checkpoints; returns the Results."""
    results = Results(budget, threads, budget / checkpoints, os.getloadavg())
    for contender in chosen:
        if contender.prep_config:
            seconds = ensure_prepared(contender.data, contender.prep_config)
            if seconds is not None:
                results.prep_seconds[contender.name] = seconds
        elif not contender.data.is_file():
            raise UserError(contender.data, f"{contender.name}'s training data is missing")
    results.load_before = os.getloadavg()
    for contender in chosen:
        log(f"{contender.name}: python -m {' '.join(contender.command)} for {budget:g} s")
        results.runs.append(run_contender(contender, budget, checkpoints, threads, log))
    results.load_after = os.getloadavg()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        score(results, data_root, log)
    finally:
        torch.set_num_threads(before)
    return results


# ------------------------------------------------------------------------ what the runs show

def psnr_at(checkpoints, seconds):
    """The PSNR of the newest checkpoint written by `seconds` (None before the first)."""
    written = [checkpoint for checkpoint in checkpoints if checkpoint.seconds <= seconds]
    return written[-1].psnr if written else None


def first_reaching(checkpoints, target=TARGET_PSNR):
    """The first checkpoint at or above `target` dB, or None."""
    return next((checkpoint for checkpoint in checkpoints if checkpoint.psnr >= target), None)


def time_label(seconds):
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.3g} s"


def psnr_cell(psnr):
    return "—" if psnr is None else f"{psnr:.2f}"


def table_row(run, budget):
    """One contender's row: PSNR at the marks (the last at the budget: its last checkpoint,
    the one the stop wrote), best, first at the target, iterations and samples."""
    checkpoints = run.checkpoints
    cells = [psnr_cell(psnr_at(checkpoints, fraction * budget)) for fraction in MARKS[:-1]]
    last = run.last
    cells.append(f"{psnr_cell(last.psnr)} ({last.seconds:.0f} s)" if last else "—")
    if checkpoints:
        best = max(checkpoints, key=lambda checkpoint: checkpoint.psnr)
        cells.append(f"{best.psnr:.2f} ({time_label(best.seconds)})")
    else:
        cells.append("—")
    reached = first_reaching(checkpoints)
    cells.append(time_label(reached.seconds) if reached else "not reached")
    iterations = last.iteration if last else 0
    cells += [f"{iterations:,}", f"{iterations * run.contender.batch:,}"]
    return f"| {run.contender.name} | " + " | ".join(cells) + " |"


def contender_line(run, prep_seconds=None):
    """What a contender is, its command, and how its run went."""
    contender = run.contender
    parts = [f"`python -m {' '.join(contender.command)}`", f"batch {contender.batch}",
             f"data {contender.data}" + (f" (prepared first in {prep_seconds:.1f} s, not "
                                         "counted)" if prep_seconds is not None else ""),
             f"{len(run.checkpoints)} checkpoints",
             (f"stopped at the budget, exited after {run.seconds:.1f} s" if run.stopped
              else f"ended by itself after {run.seconds:.1f} s")
             + (f" (exit code {run.returncode})" if run.returncode else "")]
    about = f"{contender.about}. " if contender.about else ""
    return f"- {contender.name}: {about}" + "; ".join(parts) + "."


def report(results):
    """The Markdown report: the table, how each contender ran, the conditions."""
    budget = results.budget
    marks = [time_label(fraction * budget) for fraction in MARKS]
    header = [*marks[:-1], f"{marks[-1]} (at the stop)", "best (when)",
              f"first ≥ {TARGET_PSNR:.2f} dB", "iterations", "samples"]
    lines = ["# Time to quality (`make bench-train`)", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}. Each contender ran alone, one after the other, as a "
             f"child process on {results.threads} thread(s) (OMP_NUM_THREADS), for "
             f"{budget:g} s of wall time counted from its launch (start-up, data loading and "
             f"training); a checkpoint was asked for every {results.interval:g} s (SIGHUP) and "
             "at the budget (SIGINT). Load average (1 min) before and after the runs: "
             f"{results.load_before[0]:.2f}, {results.load_after[0]:.2f}.", "",
             f"{TEST_SET} x{SCALE} PSNR (dB), whole images, the papers' protocol "
             f"({evaluate.Protocol(SCALE).describe()}), of the newest checkpoint written by each "
             f"time; bicubic: {results.bicubic_psnr:.2f} dB. The target: "
             f"{TARGET_PSNR:.2f} dB.", "",
             "| contender | " + " | ".join(header) + " |",
             "|---|" + "---:|" * len(header)]
    lines += [table_row(run, budget) for run in results.runs]
    lines += ["", "The contenders:", ""]
    lines += [contender_line(run, results.prep_seconds.get(run.contender.name))
              for run in results.runs]
    lines += ["", "Every checkpoint: time_to_quality.csv. The curves: time_to_quality.png.", ""]
    return "\n".join(lines)


def csv_text(results):
    """Every checkpoint: contender, seconds, iteration, PSNR."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["contender", "seconds", "iteration", "psnr"])
    writer.writerows([run.contender.name, f"{checkpoint.seconds:.2f}", checkpoint.iteration,
                      f"{checkpoint.psnr:.4f}"]
                     for run in results.runs for checkpoint in run.checkpoints)
    return stream.getvalue()


def draw(results, out_path):
    """PSNR against minutes, a curve per contender, the target and bicubic as lines, the budget
    marked."""
    figure, axes = plt.subplots(figsize=(9, 5.5))
    for run in results.runs:
        axes.plot([checkpoint.seconds / 60 for checkpoint in run.checkpoints],
                  [checkpoint.psnr for checkpoint in run.checkpoints], marker="o", markersize=3,
                  label=run.contender.name)
    axes.axhline(TARGET_PSNR, color="black", linestyle="--", linewidth=1,
                 label=f"{TARGET_PSNR:.2f} dB (the target)")
    axes.axhline(results.bicubic_psnr, color="grey", linestyle=":", linewidth=1,
                 label=f"bicubic ({results.bicubic_psnr:.2f} dB)")
    axes.axvline(results.budget / 60, color="red", linewidth=1,
                 label=f"budget ({time_label(results.budget)})")
    # the first checkpoints of a random start lie far below bicubic and would flatten the
    # rest: the view starts 3 dB below bicubic, lower only to show every contender's last
    psnrs = [checkpoint.psnr for run in results.runs for checkpoint in run.checkpoints]
    lasts = [run.last.psnr for run in results.runs if run.last]
    axes.set_ylim(min([results.bicubic_psnr - 3, *(psnr - 1 for psnr in lasts)]),
                  max([TARGET_PSNR, *psnrs]) + 0.5)
    axes.set_xlim(0, max([results.budget, *(run.seconds for run in results.runs)]) / 60 * 1.02)
    axes.set_xlabel("wall-clock minutes from launch")
    axes.set_ylabel(f"{TEST_SET} x{SCALE} PSNR (dB)")
    axes.set_title(f"Time to quality, {results.threads} thread(s)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    return plot.save_figure(figure, out_path)


def write(results, folder):
    """time_to_quality.png, .md and .csv in `folder`; returns their paths."""
    folder = outputs.writable_folder(folder)
    figure = draw(results, folder / "time_to_quality.png")
    return [figure, *outputs.write_files({folder / "time_to_quality.md": report(results),
                                          folder / "time_to_quality.csv": csv_text(results)})]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m runner.bench.time_to_quality",
        description="Set5 PSNR against wall-clock time: the recipe, the tutorial's solver and "
        "the reference loop, each given the same budget")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help="wall seconds per contender (default: %(default)g)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="OMP_NUM_THREADS of each contender (default: %(default)s)")
    parser.add_argument("--checkpoints", type=int, default=DEFAULT_CHECKPOINTS,
                        help="checkpoints per budget (default: %(default)s)")
    parser.add_argument("--only", default=",".join(NAMES),
                        help=f"comma-separated contenders to run (default: {','.join(NAMES)})")
    parser.add_argument("--out", default=str(REPO_ROOT / "results"),
                        help="where the figure, table and CSV go, and the runs under "
                        f"{RUNS_FOLDER}/ (default: results/)")
    args = parser.parse_args(argv)
    try:
        if args.budget <= 0 or args.checkpoints < 1 or args.threads < 1:
            raise UserError(parser.prog, "--budget, --checkpoints and --threads must be positive")
        out = Path(args.out).resolve()
        os.chdir(REPO_ROOT)         # the solver and net files name their data relative to it
        compile_sources()           # each contender starts as a user's second run does
        available = contenders(out / RUNS_FOLDER, args.budget)
        names = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in names if name not in available]
        if unknown or not names:
            raise UserError("--only", f"{','.join(unknown) or 'nothing'}: choose among "
                            f"{', '.join(NAMES)}")
        results = measure([available[name] for name in names], args.budget, args.threads,
                          args.checkpoints)
        for path in write(results, out):
            print(f"wrote {path}")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
