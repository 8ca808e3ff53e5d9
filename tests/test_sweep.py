"""`runner sweep` and `runner compare`: overrides checked like a file's keys, an interrupted sweep
continued (none of its trials restarted), several workers sharing one study (SQLite, and a
real PostgreSQL server), pruning, TPE, and the comparison's table and figure.

Each sweep runs as its own `runner sweep` process, as a user runs it (its trials are forked
from it, which is safe only where no torch computation has run before: not in this process).
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import sqlalchemy.exc
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import ROOT, assert_one_line_error, tiny_run
from in_process import run_main
from runner import compare
from runner.config import loading, overrides
from runner.sweep import plan as sweep_plan
from runner.sweep import study as sweep_study
from runner.sweep import worker
from runner.train.solver import TrainOptions, train
from runner.train.train_log import read_records

GRID = ("--set", "base_lr=0.001,0.002", "--set", "momentum=0.5,0.9")
# the grid in the order its trials run: the last --set varies fastest
GRID_POINTS = [(0.001, 0.5), (0.001, 0.9), (0.002, 0.5), (0.002, 0.9)]


def sweep_solver(folder, max_iter, snapshot, test_interval=50):
    """The tiny net's solver, testing every `test_interval` iterations."""
    solver = tiny_run(folder, max_iter, snapshot)
    solver.write_text(solver.read_text().replace("test_interval: 10",
                                                 f"test_interval: {test_interval}")
                      .replace("display: 5", "display: 25"))
    return solver


def sweep_command(solver, out, name, *extra):
    return [sys.executable, "-m", "runner", "sweep", "--solver", str(solver), "--name", name,
            "--out", str(out), *extra]


def start(command):
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS="1",
                                                PYTHONUNBUFFERED="1"))


def finish(process, timeout=300):
    # a guard against a hang, not a speed check: four trainings and a PostgreSQL server on two
    # busy cores have taken over 120 s
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, (out, err)
    return out


def trials_of(name, url):
    return optuna.load_study(study_name=name, storage=url).get_trials()


def starts_from(trial_folder):
    """The iterations each training session of a trial started from, by its Caffe log."""
    text = (trial_folder / "tiny_train.log").read_text()
    return [int(line.split("from iteration ")[1].split()[0]) for line in text.splitlines()
            if "] Solving " in line]


def folder_bytes(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ---------------------------------------------------------------------------- the overrides

def test_trial_texts_hold_the_overrides(tmp_path):
    solver = sweep_solver(tmp_path, 40, 20)
    plan = sweep_plan.make_plan(solver, ["base_lr=0.001,0.002",
                                         "data.hdf5_data_param.batch_size=4",
                                         "conv1.convolution_param.num_output=3,5"],
                                "lr", tmp_path / "sweeps", max_iter=30)
    assert len(plan.grid()) == 4
    solver_path, solver_text, net_texts = plan.trial_texts(3, plan.grid()[3])
    setup = loading.solver_setup_from_texts(solver_path, solver_text, net_texts)
    assert setup.solver.base_lr == 0.002 and setup.solver.max_iter == 30
    assert setup.solver.snapshot_prefix == str(tmp_path / "sweeps" / "lr" / "trial_003" / "tiny")
    conv1 = next(layer for layer in setup.train_net.layer if layer.name == "conv1")
    assert conv1.convolution_param.num_output == 5
    # a layer name shared by the TRAIN and TEST data layers sets both
    assert [layer.hdf5_data_param.batch_size for layer in setup.train_net.layer
            if layer.name == "data"] == [4, 4]
    assert net_texts[0][0] == "net.yaml" and solver_text.startswith("# runner sweep lr, trial_003")


@pytest.mark.parametrize("setting, fragments", [
    ("base_rl=0.1", ["unknown key 'base_rl'", "(did you mean 'base_lr'?)"]),
    ("conv1.convolution_parm.num_output=8", ["conv1: unknown key 'convolution_parm'",
                                             "(did you mean 'convolution_param'?)"]),
    ("cnov1.convolution_param.num_output=8", ["unknown key 'cnov1'", "(did you mean 'conv1'?)"]),
    ("base_lr", ["'base_lr': expected KEY=VALUE"]),
    ("base_lr=", ["no values (an empty grid)"]),
    ("base_lr=,", ["no values (an empty grid)"]),
    ("base_lr=0.1,,0.2", ["an empty value"]),
    ("momentum=0.8:0.99", ["momentum: a range is sampled, not a grid"]),
    ("base_lr=-0.1", ["base_lr: must be at least 0"]),
    ("type=Adm", ["(did you mean 'Adam'?)"]),
    ("conv1.convolution_param.num_output=2.5", ["num_output: expected uint32"]),
    ("snapshot_prefix=x", ["set by the sweep"]),
])
def test_bad_set_is_one_line_and_creates_nothing(tmp_path, capfd, setting, fragments):
    solver = sweep_solver(tmp_path, 40, 20)
    result = run_main(capfd, "sweep", "--solver", solver, "--set", setting, "--name", "bad",
                      "--out", tmp_path / "sweeps")
    assert_one_line_error(result, "--set", *fragments)
    assert not (tmp_path / "sweeps").exists()


def test_bad_sweeps_are_one_line_and_create_nothing(tmp_path, capfd):
    solver = sweep_solver(tmp_path, 40, 20)
    out = tmp_path / "sweeps"

    def sweep(*arguments):
        return run_main(capfd, "sweep", "--solver", solver, "--out", out, *arguments)
    assert_one_line_error(sweep("--name", "x"), "nothing to sweep")
    assert_one_line_error(sweep("--name", "x", "--set", "base_lr=0.1", "--set", "base_lr=0.2"),
                          "set twice")
    assert_one_line_error(sweep("--name", "x", "--set", "momentum=0.9:0.8", "--trials", "2"),
                          "low bound must be below")
    assert_one_line_error(sweep("--name", "x", "--set", "base_lr=log:0:0.1", "--trials", "2"),
                          "positive low bound")
    assert_one_line_error(sweep("--name", "../x", "--set", "base_lr=0.1"), "plain folder name")
    # a server nobody listens on (port 9 of this machine)
    line = assert_one_line_error(sweep("--name", "x", "--set", "base_lr=0.1", "--storage",
                                       "postgresql://user:secret@127.0.0.1:9/db"),
                                 "cannot open the study storage")
    assert "secret" not in line
    assert not out.exists()
    # a name that holds another sweep's study: refused, and nothing of it changes
    plan = sweep_plan.make_plan(solver, ["base_lr=0.001,0.002"], "taken", out)
    worker.open_study(plan, None, prune=False)
    before = folder_bytes(out)
    assert_one_line_error(sweep("--name", "taken", "--set", "base_lr=0.001,0.005"),
                          "holds a different sweep")
    assert folder_bytes(out) == before


# ---------------------------------------------------------------------------- a whole sweep

def wait_for_file(path, process, seconds=90):
    deadline = time.time() + seconds
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), process.communicate()


def test_interrupted_sweep_continues_where_it_stopped(tmp_path, capfd):
    """A 2x2 sweep of 300 iterations is stopped by Ctrl-C during its second trial, continued,
    killed (SIGKILL) during its third, and continued again by the same command: the finished
    trials are untouched, each interrupted one resumes from its newest snapshot, none
    restarts; the comparison is right."""
    solver = sweep_solver(tmp_path, 300, 100)
    out, name = tmp_path / "sweeps", "lr_momentum"
    folder = out / name
    command = sweep_command(solver, out, name, *GRID)
    process = start(command)
    wait_for_file(folder / "trial_001" / "tiny_iter_100.solverstate", process)
    process.send_signal(signal.SIGINT)
    stopped = finish(process)
    assert "trial_001 (base_lr=0.001, momentum=0.9): interrupted at iteration" in stopped
    interrupted_at = int(stopped.split("interrupted at iteration ")[1].split(";")[0])
    assert 100 <= interrupted_at < 300
    assert not (folder / "trial_002").exists() and not (folder / "compare.md").exists()
    first_trial = folder_bytes(folder / "trial_000")

    process = start(command)
    wait_for_file(folder / "trial_002" / "tiny_iter_100.solverstate", process)
    process.kill()         # the trial's process takes SIGINT from the kernel and snapshots
    process.communicate()
    second_trial = folder_bytes(folder / "trial_001")

    again = finish(start(command))
    killed_at = int(again.split("trial_002 (base_lr=0.002, momentum=0.5): resumed from its "
                                "snapshot at iteration ")[1].split()[0])
    assert 100 <= killed_at < 300
    assert "trial_000" not in again.split("| run |")[0]     # neither finished trial ran again
    assert "trial_001" not in again.split("| run |")[0]
    assert folder_bytes(folder / "trial_000") == first_trial
    assert folder_bytes(folder / "trial_001") == second_trial
    assert starts_from(folder / "trial_000") == [0]
    assert starts_from(folder / "trial_001") == [0, interrupted_at]
    assert starts_from(folder / "trial_002") == [0, killed_at]
    assert starts_from(folder / "trial_003") == [0]
    # the study: every grid point complete once; the stopped sessions failed and continued
    trials = trials_of(name, sweep_study.default_storage(folder))
    complete = sorted((t.user_attrs["slot"], t.params["base_lr"], t.params["momentum"])
                      for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert complete == [(slot, *point) for slot, point in enumerate(GRID_POINTS)]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [(t.user_attrs["slot"], t.user_attrs.get("interrupted_at")) for t in failed] == \
        [(1, interrupted_at), (2, None)]
    # a resumed trial's log reads as one run
    second = folder / "trial_001"
    records = read_records(second / "tiny_log.jsonl")
    tests = [r["iteration"] for r in records if "test_psnr" in r]
    assert tests == list(range(0, 301, 50))
    assert [r["seconds"] for r in records] == sorted(r["seconds"] for r in records)
    events = EventAccumulator(str(second / "tiny_tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("test/psnr")] == tests
    assert "hparams/final_test_psnr" in events.Tags()["scalars"]
    check_comparison(folder, capfd)


def check_comparison(folder, capfd):
    """compare.csv against the logs, `runner test` and the tiny net's counts by hand."""
    with open(folder / "compare.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["run"] for row in rows] == [f"trial_{slot:03d}" for slot in range(4)]
    assert list(rows[0])[1:3] == ["base_lr", "momentum"]      # what differs, and only that
    for row, point in zip(rows, GRID_POINTS):
        trial = folder / row["run"]
        assert (float(row["base_lr"]), float(row["momentum"])) == point
        tests = [(r["iteration"], r["test_psnr"]) for r in read_records(trial / "tiny_log.jsonl")
                 if "test_psnr" in r]
        best = max(tests, key=lambda test: test[1])
        assert (int(row["final_iteration"]), float(row["final_test_psnr"])) == \
            pytest.approx(tests[-1], abs=1e-6)
        assert (int(row["best_iteration"]), float(row["best_test_psnr"])) == \
            pytest.approx(best, abs=1e-6)
        # conv1 6x1x5x5 + conv2 4x6x3x3 + deconv 4x1x9x9 weights; as many multiply-adds per
        # LR pixel (every layer is padded to keep the LR size; the deconvolution counts per
        # input pixel)
        assert int(row["weights"]) == 150 + 216 + 324
        assert float(row["multiply_adds_per_pixel"]) == 150 + 216 + 324
    scored = run_main(capfd, "test", "--model", folder / "trial_003" / "tiny_iter_300.model",
                      "--sets", "Set5", "--out", folder / "test")
    assert scored.returncode == 0, scored.stderr
    with open(folder / "test" / "tiny_iter_300_x3.csv", newline="") as stream:
        psnrs = [float(r["psnr"]) for r in csv.DictReader(stream) if r["method"] != "bicubic"]
    assert float(rows[3]["set5_psnr"]) == pytest.approx(sum(psnrs) / len(psnrs), abs=1e-4)
    assert (folder / "compare.md").read_text().startswith("| run | base_lr | momentum |")
    assert (folder / "compare.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------- many workers

@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    """None (the SQLite file in the sweep folder), or the URL of a PostgreSQL server started
    here with the pgserver package."""
    if request.param == "sqlite":
        yield None
        return
    try:
        import pgserver
        (tmp_path / "pg").mkdir()
        server = pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
    except Exception as error:   # pgserver's failures have no common type
        pytest.skip(f"PostgreSQL could not start here: {type(error).__name__}: {error}")
    yield server.get_uri()
    server.cleanup()


def test_two_workers_share_one_study(tmp_path, storage):
    """Two workers started at once on one study, each running two trials at a time, run the
    2x2 grid between them, each grid point exactly once."""
    solver = sweep_solver(tmp_path, 40, 20, test_interval=20)
    out, name = tmp_path / "sweeps", "shared"
    extra = ["--parallel", "2"] + (["--storage", storage] if storage else [])
    workers = [start(sweep_command(solver, out, name, *GRID, *extra)) for _ in range(2)]
    outputs = [finish(process) for process in workers]
    trials = trials_of(name, storage or sweep_study.default_storage(out / name))
    assert sorted(t.user_attrs["slot"] for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for slot in range(4):
        assert starts_from(out / name / f"trial_{slot:03d}") == [0]
    ran = [output.count(": started") for output in outputs]
    assert sum(ran) == 4
    assert len({t.user_attrs["worker"] for t in trials}) == sum(count > 0 for count in ran)


def test_a_second_creator_of_the_tables_is_taken_for_the_race(tmp_path, storage):
    """What a worker's CREATE TABLE meets when another worker created the table a moment before
    (SQLite's "already exists", PostgreSQL's DuplicateTable) is taken for that race, and the
    worker opens the storage again instead of stopping. (On PostgreSQL it was not, and one
    worker of two stopped at its start, now and then, on busy cores.)"""
    url = storage or sweep_study.default_storage(tmp_path)
    engine = sweep_study.open_storage(url).engine
    with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE studies (study_id INTEGER)")
    assert sweep_study.is_creation_race(raised.value)
    with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT * FROM no_such_table")
    assert not sweep_study.is_creation_race(raised.value)


CLAIMER = """
import json, sys, time
import optuna
from runner.sweep import study
storage = study.open_storage(sys.argv[1])
study_id = storage.get_study_id_from_name("race")
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))     # all claimers start together
taken = []
for number in range(int(sys.argv[3])):
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    try:
        if storage.set_trial_state_values(trial_id, optuna.trial.TrialState.RUNNING):
            taken.append(number)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
print(json.dumps(taken))
"""


def test_workers_claiming_at_once_take_each_trial_once(tmp_path, storage):
    """Three processes race to take the same 200 queued trials through our storage: each is
    taken exactly once. (pysqlite's late BEGIN let two workers both take a trial, now and
    then, which failed the test above.)"""
    url = storage or sweep_study.default_storage(tmp_path)
    study = optuna.create_study(study_name="race", storage=sweep_study.open_storage(url))
    queued = 200
    for number in range(queued):
        study.enqueue_trial({"x": number}, skip_if_exists=False)
    at = str(time.time() + 4)
    claimers = [start([sys.executable, "-c", CLAIMER, url, at, str(queued)]) for _ in range(3)]
    taken = [number for process in claimers for number in json.loads(finish(process))]
    assert sorted(taken) == list(range(queued))


# ---------------------------------------------------------------------------- pruning and TPE

def test_prune_stops_a_hopeless_trial(tmp_path):
    """base_lr 0 never learns: once two trials have finished, its second test (iteration 10)
    is below their median and the trial is pruned there."""
    solver = sweep_solver(tmp_path, 40, 20, test_interval=10)
    out, name = tmp_path / "sweeps", "prune"
    output = finish(start(sweep_command(solver, out, name, "--set", "base_lr=0.002,0.001,0",
                                        "--prune")))
    assert "trial_002 (base_lr=0): pruned at iteration 10" in output
    states = {t.user_attrs["slot"]: t.state for t in
              trials_of(name, sweep_study.default_storage(out / name))}
    assert states == {0: optuna.trial.TrialState.COMPLETE, 1: optuna.trial.TrialState.COMPLETE,
                      2: optuna.trial.TrialState.PRUNED}


def test_tpe_trials_sample_the_ranges_up_to_their_number(tmp_path):
    """--trials 3: three trials, each with values inside the ranges (TPE's own choice), then
    none; each trial's config texts hold its values."""
    solver = sweep_solver(tmp_path, 20, 10, test_interval=10)
    plan = sweep_plan.make_plan(solver, ["base_lr=log:1e-4:2e-3", "momentum=0.5:0.9",
                                         "conv1.convolution_param.num_output=2:8",
                                         "type=SGD,Nesterov"], "tpe", tmp_path / "sweeps",
                                trials=3)
    sweep = worker.open_study(plan, None, prune=False)[0]
    claimed = [sweep.claim() for _ in range(3)]
    assert sweep.claim() is None
    assert [trial.user_attrs["slot"] for trial in claimed] == [0, 1, 2]
    for trial in claimed:
        params = trial.params
        assert 1e-4 <= params["base_lr"] <= 2e-3 and 0.5 <= params["momentum"] <= 0.9
        assert params["conv1.convolution_param.num_output"] in range(2, 9)
        assert params["type"] in ("SGD", "Nesterov")
        setup = loading.solver_setup_from_texts(*plan.trial_texts(trial.user_attrs["slot"],
                                                                  params))
        assert (setup.solver.base_lr, setup.solver.momentum, setup.solver.type) == \
            (params["base_lr"], params["momentum"], params["type"])
    # an interrupted trial is continued with the same values in the same slot
    sweep.interrupt(claimed[1], 10)
    plan.trial_folder(1).mkdir(parents=True)
    continued = sweep.claim()
    assert continued.user_attrs["slot"] == 1 and continued.params == claimed[1].params
    assert continued.user_attrs["continues"] == claimed[1].number


def test_describe_lists_what_differs():
    assert overrides.describe({"base_lr": 0.001, "conv1.convolution_param.num_output": 32}) == \
        "base_lr=0.001, conv1.convolution_param.num_output=32"


def test_compare_runs_labels_them_by_what_differs(tmp_path, capfd):
    """Two ordinary runs that differ in base_lr and conv1's width: those are the columns and
    the labels; the figure is written where --out says."""
    solver = tiny_run(tmp_path, 10, 10, prefix="a/run")
    net = tmp_path / "net.yaml"
    (tmp_path / "net_b.yaml").write_text(net.read_text().replace("num_output: 6",
                                                                 "num_output: 5"))
    other = tmp_path / "solver_b.yaml"
    other.write_text(solver.read_text().replace("base_lr: 0.001", "base_lr: 0.002")
                     .replace(str(net), str(tmp_path / "net_b.yaml"))
                     .replace("a/run", "b/run"))
    for solver_file in (solver, other):
        train(loading.load_solver(solver_file), TrainOptions(tensorboard=False))
    runs = [tmp_path / name / "run" for name in "ab"]
    capfd.readouterr()                       # the training's log lines
    result = run_main(capfd, "compare", *runs, "--out", tmp_path / "compared")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert header.startswith("| run | base_lr | conv1.convolution_param.num_output | final")
    compared = compare.runs_of(runs[0]) + compare.runs_of(runs[1])
    assert compare.labels(compared)[1] == ["base_lr=0.001, conv1.convolution_param.num_output=6",
                                           "base_lr=0.002, conv1.convolution_param.num_output=5"]
    with open(tmp_path / "compared" / "compare.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    # conv1 W x 1 x 5 x 5, conv2 4 x W x 3 x 3, deconv 4 x 1 x 9 x 9
    assert [int(row["weights"]) for row in rows] == [6 * 25 + 4 * 6 * 9 + 324,
                                                     5 * 25 + 4 * 5 * 9 + 324]
    assert (tmp_path / "compared" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert_one_line_error(run_main(capfd, "compare", tmp_path / "nothing"), "no training log")
