"""The solver loop: Caffe's semantics, exact resume, signals, logs, and bad input (run through
`runner.cli.main` in this process: a new interpreter per case would cost seconds each; the signal
and log tests start real processes, and the fuzz suite runs bad input in processes of its own)."""
import json
import pickle
import signal
import subprocess
import sys
import time
import types

import h5py
import numpy as np
import pytest
import torch

from helpers import ROOT, assert_one_line_error, run_cli, tiny_run, write_h5
from in_process import run_main
from runner.config import loading
from runner.files import snapshot
from runner.train import solver as solver_module
from runner.train.solver import Solver, TrainOptions, train

QUIET = TrainOptions(log=False)


def final_weights(solver):
    return {layer: [blob.detach().clone() for blob in blobs]
            for layer, blobs in solver.net.blobs_by_layer().items()}


def assert_same_weights(first, second):
    assert first.keys() == second.keys()
    for layer in first:
        for a, b in zip(first[layer], second[layer]):
            assert torch.equal(a, b), layer


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
def test_resume_gives_identical_weights(tmp_path, solver_type):
    straight = train(loading.load_solver(tiny_run(tmp_path, 20, 0, solver_type, "a/run")), QUIET)
    half = tiny_run(tmp_path, 10, 10, solver_type, "b/run")
    train(loading.load_solver(half), QUIET)
    state_path = tmp_path / "b" / "run_iter_10.solverstate"
    state = snapshot.load_solverstate(state_path)
    # the tutorial's case: the solver file edited to a larger max_iter, then resumed
    longer = loading.load_solver(tiny_run(tmp_path, 20, 10, solver_type, "b/run"))
    resumed = train(longer, QUIET, resume_from=(state_path, state))
    assert resumed.iteration == 20
    assert_same_weights(final_weights(straight), final_weights(resumed))
    # the log says what the edit changed, and nothing else
    assert resumed.solver_changes == ["max_iter: 10 -> 20"]


def test_a_resume_says_which_keys_differ_from_the_snapshots_solver(tmp_path, capfd):
    """A run started with --set keys, resumed with its solver file given again and only one of
    them: the log names the key left out (the mistake that stops a run at the file's max_iter);
    a resume from the snapshot's own texts names none."""
    solver_path = tiny_run(tmp_path, 10, 5, "Adam", "run")
    state_path = tmp_path / "run_iter_5.solverstate"
    started = run_main(capfd, "train", "--solver", solver_path, "--no-tensorboard",
                       "--set", "max_iter=6", "--set", "base_lr=0.002")
    assert started.returncode == 0, started.stderr
    again = run_main(capfd, "train", "--solver", solver_path, "--snapshot", state_path,
                     "--no-tensorboard", "--set", "max_iter=6")
    assert again.returncode == 0, again.stderr
    changes = [line for line in (again.stdout + again.stderr).splitlines() if "differs" in line]
    assert len(changes) == 1 and changes[0].endswith(
        "Resumed with a solver that differs from the snapshot's: base_lr: 0.002 -> 0.001 "
        "(`runner train --snapshot FILE` without --solver resumes with the snapshot's own)")
    own = run_main(capfd, "train", "--snapshot", state_path, "--no-tensorboard")
    assert own.returncode == 0, own.stderr
    assert "differs" not in own.stdout + own.stderr


def test_resume_across_file_boundaries_is_exact(tmp_path):
    """Training data in five files smaller than two batches: the resumed run continues in
    the middle of a file, crosses file and epoch boundaries, and ends as the straight one."""
    shards = (13, 13, 13, 13, 12)
    straight = train(loading.load_solver(tiny_run(tmp_path, 20, 0, prefix="a/run",
                                                  shards=shards)), QUIET)
    # tiny_run writes the shards again: a finished run holds none of them open (its
    # read-ahead of the next file is waited for when training ends)
    assert all(feeder.next_read is None for feeder in straight.train_feeders)
    train(loading.load_solver(tiny_run(tmp_path, 11, 11, prefix="b/run", shards=shards)), QUIET)
    state_path = tmp_path / "b" / "run_iter_11.solverstate"
    state = snapshot.load_solverstate(state_path)
    reader = state.readers["train:data"]      # 88 samples: a 64-sample epoch, 13, then 11
    assert reader["file_index"] == 1 and reader["epoch"] == 1 and reader["cursor"] == 11
    longer = loading.load_solver(tiny_run(tmp_path, 20, 11, prefix="b/run", shards=shards))
    resumed = train(longer, QUIET, resume_from=(state_path, state))
    assert resumed.iteration == 20
    assert_same_weights(final_weights(straight), final_weights(resumed))


def test_same_seed_gives_same_run(tmp_path):
    runs = [train(loading.load_solver(tiny_run(tmp_path, 8, 0, prefix=f"{name}/run")), QUIET)
            for name in "ab"]
    assert_same_weights(*map(final_weights, runs))


def test_snapshot_pair_and_contents(tmp_path):
    solver_file = tiny_run(tmp_path, 20, 10)
    train(loading.load_solver(solver_file), QUIET)
    for iteration in (10, 20):
        model_path, state_path = snapshot.snapshot_paths(tmp_path / "run" / "tiny", iteration)
        assert model_path.is_file() and state_path.is_file()
        state = snapshot.load_solverstate(state_path)
        assert state.iteration == iteration and state.learned_net == model_path.name
        assert snapshot.model_of(state_path, state) == model_path
        assert len(state.history) == 8   # SGD: a momentum blob per parameter blob (3 convs x 2 + 2 PReLU)
        assert "max_iter: 20" in state.solver_text
        assert "tiny_fsrcnn" in state.net_files[0][1]
    model = snapshot.load_model(model_path)
    assert list(model.blobs) == ["conv1", "prelu1", "conv2", "prelu2", "deconv"]
    assert model.blobs["deconv"][0].shape == (4, 1, 9, 9)


def clock_limited(folder, max_seconds):
    """The tiny Adam run with lr_policy poly_seconds over `max_seconds`, a max_iter it never
    reaches and no snapshots but the last."""
    path = tiny_run(folder, 1_000_000, 0, "Adam", "run/clock")
    path.write_text(path.read_text().replace(
        "lr_policy: fixed", f"lr_policy: poly_seconds\npower: 1\nmax_seconds: {max_seconds}"))
    return loading.load_solver(path)


def solve_recording_rates(solver):
    """Run `solver` to its end; the rate of each update, in order."""
    rates, apply_update = [], solver.update_rule.apply_update
    solver.update_rule.apply_update = lambda rate, iteration: (rates.append(rate),
                                                               apply_update(rate, iteration))
    solver.solve()
    return rates


@pytest.fixture
def ticking_clock(monkeypatch):
    """The solver's clock advances 5 ms at each reading: a loaded machine ran as few as 7
    iterations in a real half second, so counts by the real clock hung on the machine's load."""
    readings = iter(range(1, 10 ** 9))
    monkeypatch.setattr(solver_module, "time", types.SimpleNamespace(
        perf_counter=lambda: next(readings) * 0.005, time_ns=time.time_ns))


def test_max_seconds_ends_a_run_by_the_clock_and_a_resume_continues_the_clock(tmp_path,
                                                                              ticking_clock):
    tested = []
    options = TrainOptions(log=False, on_test=lambda iteration, *_: tested.append(iteration))
    first = Solver(clock_limited(tmp_path, 0.5), options)
    rates = solve_recording_rates(first)
    assert first.finished and 10 < first.iteration < 1_000_000
    # poly over the clock: from base_lr down towards 0, whatever the iterations
    assert rates[0] == pytest.approx(0.001, rel=0.1) and rates[-1] < 0.00025
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:]))
    assert tested[-1] == first.iteration           # the clock's last iteration is tested
    state_path = snapshot.snapshot_paths(tmp_path / "run" / "clock", first.iteration)[1]
    state = snapshot.load_solverstate(state_path)
    assert 0.5 <= state.seconds < 2.5

    # resumed with twice the budget: half of it is spent, so the rate starts at most at half
    resumed = Solver(clock_limited(tmp_path, 1.0), QUIET)
    resumed.restore(state_path, state)
    rates = solve_recording_rates(resumed)
    assert resumed.finished and resumed.iteration > first.iteration
    assert rates[0] <= 0.001 * (1 - state.seconds / 1.0) and rates[-1] < 0.00025
    final = snapshot.load_solverstate(
        snapshot.snapshot_paths(tmp_path / "run" / "clock", resumed.iteration)[1])
    assert 1.0 <= final.seconds < 3.0


def test_snapshots_load_without_pickle(tmp_path, monkeypatch):
    train(loading.load_solver(tiny_run(tmp_path, 10, 10)), QUIET)
    model_path, state_path = snapshot.snapshot_paths(tmp_path / "run" / "tiny", 10)
    for path in (model_path, state_path):
        assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a snapshot")
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    snapshot.load_model(model_path)
    snapshot.load_solverstate(state_path)


def test_logs_and_plot(tmp_path):
    solver_file = tiny_run(tmp_path, 20, 0)
    result = run_cli("train", "--solver", solver_file)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Iteration 0, Testing net (#0)" in out
    assert "Iteration 5 (" in out and "iter/s" in out and "s/5 iters), loss = " in out
    assert "Iteration 5, lr = 0.001" in out
    assert "Test net output #0: loss = " in out and "Test net output #1: psnr = " in out
    # Caffe's Solve() ends with a forward pass: display divides max_iter, so iteration 20's line
    assert "] Iteration 20, loss = " in out
    records = [json.loads(line) for line in
               (tmp_path / "run" / "tiny_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [0, 5, 10, 15, 20]
    assert [r["iteration"] for r in records if "test_psnr" in r] == [0, 10, 20]
    assert all({"lr", "seconds"} <= r.keys() for r in records if "loss" in r)
    plotted = run_cli("plot", tmp_path / "run")
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "run" / "tiny_curves.png").read_bytes()[:4] == b"\x89PNG"


def start_training(solver_file, *flags):
    return subprocess.Popen([sys.executable, "-m", "runner", "train", "--solver", solver_file,
                             *flags], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def snapshots_of(folder):
    return sorted(path.name for path in folder.glob("*.solverstate"))


def test_sigint_snapshots_then_stops(tmp_path):
    solver_file = tiny_run(tmp_path, 10_000_000, 0)
    process = start_training(solver_file)
    assert wait_for(lambda: (tmp_path / "run" / "tiny_log.jsonl").exists()
                    and (tmp_path / "run" / "tiny_log.jsonl").stat().st_size > 0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Optimization stopped early." in out
    saved = snapshots_of(tmp_path / "run")
    assert len(saved) == 1
    snapshot.load_solverstate(tmp_path / "run" / saved[0])


def test_sighup_snapshots_and_goes_on(tmp_path):
    solver_file = tiny_run(tmp_path, 10_000_000, 0)
    process = start_training(solver_file, "--sigint_effect", "stop")
    assert wait_for(lambda: (tmp_path / "run" / "tiny_log.jsonl").exists()
                    and (tmp_path / "run" / "tiny_log.jsonl").stat().st_size > 0)
    process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: snapshots_of(tmp_path / "run"))
    assert process.poll() is None                      # still training
    process.send_signal(signal.SIGINT)                 # stop: no further snapshot
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert len(snapshots_of(tmp_path / "run")) == 1


def test_set_changes_solver_and_net_keys_without_editing_the_files(tmp_path, capfd):
    solver_file = tiny_run(tmp_path, 20, 10)
    before = solver_file.read_text()
    result = run_main(capfd, "train", "--solver", solver_file, "--set", "max_iter=6",
                      "--set", "snapshot=3", "--set", f"snapshot_prefix={tmp_path / 'set' / 'a'}",
                      "--set", "conv1.convolution_param.num_output=5", "--no-tensorboard")
    assert result.returncode == 0, result.stderr
    assert solver_file.read_text() == before and not (tmp_path / "run").exists()
    assert snapshots_of(tmp_path / "set") == ["a_iter_3.solverstate", "a_iter_6.solverstate"]
    state = snapshot.load_solverstate(tmp_path / "set" / "a_iter_6.solverstate")
    assert state.solver_text.startswith(f"# {solver_file} with --set max_iter=6, snapshot=3")
    model = snapshot.load_model(tmp_path / "set" / "a_iter_6.model")
    assert model.blobs["conv1"][0].shape == (5, 1, 5, 5)


@pytest.mark.parametrize("setting, fragments", [
    ("base_lr=0.1,0.2", ["base_lr: runner train takes one value per key"]),
    ("momentum=0.8:0.9", ["momentum: runner train takes one value per key"]),
    ("net=other.yaml", ["net: names a net file"]),
    ("base_rl=0.1", ["unknown key 'base_rl'", "(did you mean 'base_lr'?)"]),
])
def test_bad_set_is_one_line_and_trains_nothing(tmp_path, capfd, setting, fragments):
    solver_file = tiny_run(tmp_path, 20, 10)
    result = run_main(capfd, "train", "--solver", solver_file, "--set", setting)
    assert_one_line_error(result, "--set", *fragments)
    assert not (tmp_path / "run").exists()


def test_set_refuses_prototxt_files(tmp_path, capfd):
    result = run_main(capfd, "train", "--solver", ROOT / "configs" / "fsrcnn_solver.prototxt",
                      "--set", "max_iter=5")
    assert_one_line_error(result, "fsrcnn_solver.prototxt", "YAML config files only")


def test_diverging_loss_stops_with_a_clear_message(tmp_path, capfd):
    solver_file = tiny_run(tmp_path, 200, 5)
    solver_file.write_text(solver_file.read_text().replace("base_lr: 0.001", "base_lr: 1.0e+6"))
    result = run_main(capfd, "train", "--solver", solver_file)
    line = assert_one_line_error(result, solver_file, "loss is")
    assert "last good snapshot" in line


# ---------------------------------------------------------------------------- bad input

def test_unknown_solver_key_suggests_the_right_one(tmp_path, capfd):
    solver_file = tiny_run(tmp_path)
    solver_file.write_text(solver_file.read_text().replace("base_lr", "base_rl"))
    assert_one_line_error(run_main(capfd, "train", "--solver", solver_file), solver_file,
                          "unknown key 'base_rl' (did you mean 'base_lr'?)")


def test_missing_solver_file(tmp_path, capfd):
    assert_one_line_error(run_main(capfd, "train", "--solver", tmp_path / "nope.yaml"),
                          "no such file")


def test_weights_and_snapshot_together_are_refused(tmp_path, capfd):
    assert_one_line_error(run_main(capfd, "train", "--solver", "a.yaml", "--snapshot",
                                   "b.solverstate", "--weights", "c.model"), "not both")


def test_unknown_flag_is_one_line(capfd):
    assert_one_line_error(run_main(capfd, "train", "--solvr", "x.yaml"), "--solvr")


def test_missing_hdf5_dataset(tmp_path, capfd):
    solver_file = tiny_run(tmp_path)
    with h5py.File(tmp_path / "train.h5", "w") as h5:
        h5.create_dataset("Input", data=np.zeros((4, 1, 7, 7), np.float32))
    assert_one_line_error(run_main(capfd, "train", "--solver", solver_file), "train.h5",
                          "no dataset 'Ground'")


def test_label_shape_that_does_not_match_the_net(tmp_path, capfd):
    solver_file = tiny_run(tmp_path)
    write_h5(tmp_path / "train.h5", 16, seed=3, lr_size=7, hr_size=14)
    assert_one_line_error(run_main(capfd, "train", "--solver", solver_file), "train.h5",
                          "Ground")


def test_snapshot_of_a_different_net(tmp_path, capfd):
    train(loading.load_solver(tiny_run(tmp_path, 10, 10)), QUIET)
    state_path = tmp_path / "run" / "tiny_iter_10.solverstate"
    (tmp_path / "other").mkdir()
    other = tiny_run(tmp_path / "other")
    net_file = tmp_path / "other" / "net.yaml"
    net_file.write_text(net_file.read_text().replace("num_output: 6", "num_output: 5"))
    before = state_path.read_bytes()
    line = assert_one_line_error(run_main(capfd, "train", "--solver", other, "--snapshot",
                                          state_path), "conv1")
    assert "shape" in line
    assert state_path.read_bytes() == before


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_damaged_snapshot(tmp_path, damage, capfd):
    train(loading.load_solver(tiny_run(tmp_path, 10, 10)), QUIET)
    state_path = tmp_path / "run" / "tiny_iter_10.solverstate"
    data = state_path.read_bytes()
    state_path.write_bytes(data[: len(data) // 2] if damage == "truncated"
                           else np.random.default_rng(0).bytes(len(data)))
    assert_one_line_error(run_main(capfd, "train", "--snapshot", state_path), state_path,
                          "not a valid solverstate")


def test_changed_model_file_is_detected(tmp_path, capfd):
    train(loading.load_solver(tiny_run(tmp_path, 10, 10)), QUIET)
    model_path, state_path = snapshot.snapshot_paths(tmp_path / "run" / "tiny", 10)
    with h5py.File(model_path, "a") as h5:
        h5["data/conv1/0"][0, 0, 0, 0] += 1
    assert_one_line_error(run_main(capfd, "train", "--snapshot", state_path), "sha256")


def test_fine_tune_copies_layers_by_name(tmp_path):
    source = train(loading.load_solver(tiny_run(tmp_path, 10, 10)), QUIET)
    model_path = tmp_path / "run" / "tiny_iter_10.model"
    solver = Solver(loading.load_solver(tiny_run(tmp_path, 0, 0, prefix="ft/run")), QUIET)
    copied = solver.copy_weights(model_path)
    assert set(copied) == {"conv1", "prelu1", "conv2", "prelu2", "deconv"}
    assert solver.started_from.startswith("Copied layers conv1, prelu1") and \
        str(model_path) in solver.started_from and "filler" not in solver.started_from
    assert_same_weights(final_weights(source), final_weights(solver))


def test_fsrcnn_from_configs_learns_on_t91(tmp_path):
    """The demo solver and its net (the shipped model's) on the real prepared T91 set."""
    prepared = run_cli("--config", "configs/prep_x3_valid.yaml", module="prep")
    assert prepared.returncode == 0, prepared.stderr
    net_file = ROOT / "configs" / "fsrcnn_x3_net.yaml"
    solver_text = (ROOT / "configs" / "demo_solver.yaml").read_text()
    for key, value in {"test_iter": "[2]", "test_interval": "300", "display": "100",
                       "max_iter": "300", "snapshot": "0",
                       "snapshot_prefix": str(tmp_path / "fsrcnn")}.items():
        solver_text = "\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line
                                for line in solver_text.splitlines())
    setup = loading.solver_setup_from_texts(
        str(ROOT / "configs" / "demo_solver.yaml"), solver_text,
        [(net_file.name, net_file.read_text())])
    before_loss, before_psnr = Solver(setup, QUIET).test(0)
    after_loss, after_psnr = train(setup, QUIET).test(0)
    assert after_loss < 0.5 * before_loss and after_psnr > before_psnr + 3
