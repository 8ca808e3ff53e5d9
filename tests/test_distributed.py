"""Data-parallel training: N processes at batch B step like one process at batch N x B, snapshots
move between process counts, and a signal or a NaN on one process stops them all."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import ROOT, assert_one_line_error, tiny_run
from runner import cli
from runner.config import loading
from runner.files import snapshot
from runner.train.solver import TrainOptions, train

ITERATIONS = 20
BATCH = 8                                  # the tiny net's batch_size: per process with 2
TOLERANCE = 1e-5
# each process one thread: this machine has two cores for the two processes
ENVIRONMENT = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def solver_with_batch(folder, batch, **kwargs):
    """The tiny run of helpers.tiny_run in `folder`, its train batch_size set to `batch`."""
    solver_file = tiny_run(folder, ITERATIONS, 10, **kwargs)
    net_file = folder / "net.yaml"
    net_file.write_text(net_file.read_text().replace(f"batch_size: {BATCH}, shuffle",
                                                     f"batch_size: {batch}, shuffle"))
    return solver_file


def runner_process(*arguments, module="runner", **kwargs):
    return subprocess.Popen([sys.executable, "-m", module, *map(str, arguments)], cwd=ROOT,
                            env=ENVIRONMENT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def run_to_end(*arguments, module="runner"):
    process = runner_process(*arguments, module=module)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(arguments, process.returncode, out, err)


def max_difference(first_model, second_model):
    """The largest absolute difference between the weights of two .model files."""
    first = snapshot.load_model(first_model).read_blobs()
    second = snapshot.load_model(second_model).read_blobs()
    assert first.keys() == second.keys()
    return max(float(np.abs(a - b).max()) for layer in first
               for a, b in zip(first[layer], second[layer]))


def records(prefix):
    return [json.loads(line) for line in open(f"{prefix}_log.jsonl", encoding="utf-8")]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: one process at batch 2B, snapshots at 10 and 20 (in this process)."""
    folder = tmp_path_factory.mktemp("one_process")
    train(loading.load_solver(solver_with_batch(folder, 2 * BATCH)), TrainOptions(log=True))
    return folder / "run" / "tiny"


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Two processes at batch B through the real CLI path: `runner train --procs 2`."""
    folder = tmp_path_factory.mktemp("two_processes")
    result = run_to_end("train", "--solver", solver_with_batch(folder, BATCH), "--procs", "2")
    assert result.returncode == 0, result.stderr
    return folder / "run" / "tiny", result


def test_two_processes_step_like_one_at_twice_the_batch(one_process, two_processes):
    prefix, result = two_processes
    for iteration in (10, 20):
        difference = max_difference(*(snapshot.snapshot_paths(run, iteration)[0]
                                      for run in (one_process, prefix)))
        print(f"iteration {iteration}: max |w(2 x {BATCH}) - w(1 x {2 * BATCH})| = "
              f"{difference:.3g}")
        assert difference <= TOLERANCE
    # the losses logged are those of the global batch, and rank 0's tests see the same weights
    ours, theirs = records(one_process), records(prefix)
    assert [sorted(r) for r in ours] == [sorted(r) for r in theirs]
    for mine, other in zip(ours, theirs):
        for key in ("loss", "test_loss", "test_psnr"):
            if key in mine:
                assert other[key] == pytest.approx(mine[key], rel=TOLERANCE), (key, mine)
    # only rank 0 speaks
    assert result.stdout.count("Solving tiny_fsrcnn on cpu, 2 processes") == 1
    assert result.stdout.count("Iteration 10, Testing net (#0)") == 1
    assert open(f"{prefix}_train.log", encoding="utf-8").read().count("Solving") == 1
    # and without warnings (DDP's about gradient strides that differ from its buckets')
    assert "Warning" not in result.stderr, result.stderr


def test_procs_1_runs_the_distributed_path_in_one_process(tmp_path, one_process):
    """`--procs 1` joins a process group of one (gloo here, NCCL on CUDA) and steps through
    DDP exactly as the same batch does without a launcher."""
    result = run_to_end("train", "--solver", solver_with_batch(tmp_path, 2 * BATCH),
                        "--procs", "1")
    assert result.returncode == 0, result.stderr
    assert "Solving tiny_fsrcnn on cpu, 1 process over gloo" in result.stdout
    difference = max_difference(snapshot.snapshot_paths(one_process, ITERATIONS)[0],
                                snapshot.snapshot_paths(tmp_path / "run" / "tiny",
                                                        ITERATIONS)[0])
    print(f"--procs 1 against no launcher: max difference {difference:.3g}")
    assert difference <= TOLERANCE
    assert "Warning" not in result.stderr, result.stderr


def test_two_process_snapshot_resumes_in_one_process(tmp_path, one_process, two_processes):
    prefix, _ = two_processes
    state_path = snapshot.snapshot_paths(prefix, 10)[1]
    setup = loading.load_solver(solver_with_batch(tmp_path, 2 * BATCH, prefix="resumed/tiny"))
    resumed = train(setup, TrainOptions(log=False),
                    resume_from=(state_path, snapshot.load_solverstate(state_path)))
    assert resumed.iteration == ITERATIONS
    difference = max_difference(snapshot.snapshot_paths(one_process, ITERATIONS)[0],
                                snapshot.snapshot_paths(tmp_path / "resumed" / "tiny",
                                                        ITERATIONS)[0])
    print(f"2 processes to 10, 1 process to 20: max difference {difference:.3g}")
    assert difference <= TOLERANCE


def test_torchrun_resumes_a_one_process_snapshot_in_two(tmp_path, one_process):
    state_path = snapshot.snapshot_paths(one_process, 10)[1]
    solver_file = solver_with_batch(tmp_path, BATCH, prefix="resumed/tiny")
    result = run_to_end("--standalone", "--nproc_per_node=2", "-m", "runner", "train",
                        "--solver", solver_file, "--snapshot", state_path,
                        module="torch.distributed.run")
    assert result.returncode == 0, result.stderr
    difference = max_difference(snapshot.snapshot_paths(one_process, ITERATIONS)[0],
                                snapshot.snapshot_paths(tmp_path / "resumed" / "tiny",
                                                        ITERATIONS)[0])
    print(f"1 process to 10, 2 processes to 20: max difference {difference:.3g}")
    assert difference <= TOLERANCE


def test_two_processes_keep_the_average_of_the_weights_as_one(tmp_path):
    """With ema_decay every process averages the same weights; rank 0 writes the average to
    the .model and the weights to the .solverstate, as one process at twice the batch does."""
    solver_files = {}
    for name, batch in (("one", 2 * BATCH), ("two", BATCH)):
        (tmp_path / name).mkdir()
        solver_files[name] = solver_with_batch(tmp_path / name, batch)
        solver_files[name].write_text(solver_files[name].read_text() + "ema_decay: 0.9\n")
    train(loading.load_solver(solver_files["one"]), TrainOptions(log=False))
    result = run_to_end("train", "--solver", solver_files["two"], "--procs", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Testing with the exponential moving average") == 1
    model_paths, states = [], []
    for name in solver_files:
        model_path, state_path = snapshot.snapshot_paths(tmp_path / name / "run" / "tiny",
                                                         ITERATIONS)
        model_paths.append(model_path)
        states.append(snapshot.load_solverstate(state_path))
    assert max_difference(*model_paths) <= TOLERANCE
    for ours, theirs in zip(*(state.weights for state in states)):
        assert np.abs(snapshot.read_array(ours) - snapshot.read_array(theirs)).max() <= TOLERANCE
    assert len(states[0].weights) == 8


def test_a_signal_to_one_process_stops_them_all(tmp_path):
    solver_file = tiny_run(tmp_path, 10_000_000, 0)
    log_path = tmp_path / "run" / "tiny_train.log"
    process = runner_process("train", "--solver", solver_file, "--procs", "2")
    try:
        deadline = time.time() + 60
        while "loss = " not in (log_path.read_text() if log_path.exists() else ""):
            assert time.time() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.05)
        rank0 = int(log_path.read_text().split()[2])   # glog's `I<mmdd> <time> <pid>`
        os.kill(rank0, signal.SIGINT)                  # rank 1 hears of it through rank 0
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.count("Optimization stopped early.") == 1
    saved = list((tmp_path / "run").glob("*.solverstate"))
    assert len(saved) == 1
    snapshot.load_solverstate(saved[0])


def test_the_clock_stops_every_process_at_the_same_iteration(tmp_path):
    """max_seconds: rank 0's clock decides for all (a process that stopped alone would leave the
    other waiting in the gradient all-reduce until the timeout)."""
    solver_file = tiny_run(tmp_path, 10_000_000, 0)
    clock = ("lr_policy=poly_seconds", "power=1", "max_seconds=2")
    result = run_to_end("train", "--solver", solver_file, "--procs", "2",
                        *(word for setting in clock for word in ("--set", setting)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("max_seconds 2 reached") == 1
    assert "Optimization Done." in result.stdout
    saved = list((tmp_path / "run").glob("*.solverstate"))
    assert len(saved) == 1 and snapshot.load_solverstate(saved[0]).seconds >= 2


def test_a_diverging_loss_stops_every_process(tmp_path):
    solver_file = tiny_run(tmp_path, 200, 5)
    solver_file.write_text(solver_file.read_text().replace("base_lr: 0.001", "base_lr: 1.0e+6"))
    result = run_to_end("train", "--solver", solver_file, "--procs", "2")
    assert result.returncode == 2, result.stderr
    # every rank stops at the same iteration; the launcher may end a rank that has not yet
    # printed its line once the first has exited (seen once on a busy machine)
    stopped = {line.split(": loss is")[0].rsplit(": ", 1)[-1]
               for line in result.stderr.splitlines() if "loss is" in line}
    assert 1 <= result.stderr.count("loss is") <= 2 and len(stopped) == 1, result.stderr
    assert "process 0 of 2 failed with exit code 2" in result.stderr \
        or "process 1 of 2 failed with exit code 2" in result.stderr


def test_procs_under_torchrun_is_refused(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = cli.main(["train", "--solver", str(tiny_run(tmp_path)), "--procs", "2"])
    assert_one_line_error(subprocess.CompletedProcess([], code, *capfd.readouterr()),
                          "--procs", "--nproc_per_node")


@pytest.mark.parametrize("argv, kept", [
    (["train", "--procs", "2", "--solver", "s.yaml"], ["train", "--solver", "s.yaml"]),
    (["train", "--solver", "s.yaml", "--procs=2"], ["train", "--solver", "s.yaml"]),
    (["train", "--pro", "2", "--device", "cpu"], ["train", "--device", "cpu"]),
])
def test_launch_passes_the_arguments_on_without_procs(argv, kept):
    assert cli.without_option(argv, "--procs") == kept
