"""`make bench-train` (runner/bench/time_to_quality.py): what its table reads off the
checkpoints, and the whole bench on a tiny budget: real child processes stopped by their
signals, checkpoints scored on Set5 by the papers' protocol, the figure, table and CSV written.

The end-to-end run has two contenders, not three: the recipe and the tutorial are both
`runner train` children (the same code path, other files), and three children's start-up
(torch, a few seconds each on a loaded machine) would take the test past ~40 s. Nothing is
timed here; times only have to be ordered.
"""
import csv
from types import SimpleNamespace

import pytest
import torch

from helpers import tiny_run, write_h5
from runner.bench import reference_loop, time_to_quality, training
from runner.bench.time_to_quality import Checkpoint, Contender, Results, Run
from runner.config import loading
from runner.score import evaluate


def checkpoints(*points):
    return [Checkpoint(seconds, iteration, None, psnr) for seconds, iteration, psnr in points]


CURVE = checkpoints((100, 10, 31.0), (200, 20, 32.5), (400, 40, 33.1), (905, 90, 33.0))


def test_psnr_at_a_time_is_the_newest_checkpoint_written_by_then():
    assert time_to_quality.psnr_at(CURVE, 99) is None
    assert time_to_quality.psnr_at(CURVE, 100) == 31.0
    assert time_to_quality.psnr_at(CURVE, 399) == 32.5
    assert time_to_quality.psnr_at(CURVE, 900) == 33.1     # the stop's wrote at 905 s


def test_first_checkpoint_at_the_target():
    assert time_to_quality.first_reaching(CURVE).seconds == 400
    assert time_to_quality.first_reaching(CURVE[:2]) is None


def test_checkpoints_are_asked_for_evenly_before_the_stop():
    assert time_to_quality.request_times(900, 30)[:2] == [30, 60]
    assert time_to_quality.request_times(900, 30)[-1] == 870
    assert time_to_quality.request_times(10, 1) == []


def fake_results(folder):
    contender = Contender("recipe", ("runner", "train"), folder / "recipe", ".model", 32,
                          folder / "train.txt", about="the recipe")
    slow = Contender("reference", ("runner.bench.reference_loop",), folder / "reference",
                     ".pt", 16, folder / "train.txt")
    return Results(900.0, 2, 30.0, (3.0, 2.0, 1.0), (2.5, 2.0, 1.0),
                   [Run(contender, 906.0, True, 0, folder / "out.log", CURVE),
                    Run(slow, 300.0, False, 0, folder / "out.log",
                        checkpoints((150, 1000, 30.0), (299, 2000, 31.5)))],
                   bicubic_psnr=30.39)


def test_the_recipes_clock_is_sized_to_the_budget(tmp_path):
    recipe = time_to_quality.contenders(tmp_path, budget=600)["recipe"]
    assert "max_seconds=590" in recipe.command
    # at the default budget, what the recipe's own solver file says
    default = time_to_quality.contenders(tmp_path)["recipe"]
    solver = loading.load_solver(time_to_quality.CONFIGS / "fsrcnn_x3_fast_solver.yaml").solver
    assert f"max_seconds={solver.max_seconds:g}" in default.command


def test_report_reads_the_marks_off_the_checkpoints(tmp_path):
    text = time_to_quality.report(fake_results(tmp_path))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| contender"))
    assert "| 2.5 min | 5 min | 10 min | 15 min (at the stop) |" in header
    assert "first ≥ 33.00 dB" in header
    recipe = next(line for line in lines if line.startswith("| recipe"))
    # 2.5 min: the 100 s checkpoint; 5 min: 200 s; 10 min: 400 s; the stop's at 905 s
    assert recipe.startswith("| recipe | 31.00 | 32.50 | 33.10 | 33.00 (905 s) | 33.10 (6.67 "
                             "min) | 6.67 min | 90 | 2,880 |")
    reference = next(line for line in lines if line.startswith("| reference"))
    assert "| not reached | 2,000 | 32,000 |" in reference
    assert "ended by itself after 300.0 s" in text and "bicubic: 30.39 dB" in text
    assert "Load average (1 min) before and after the runs: 3.00, 2.50" in text


def test_reference_checkpoints_round_trip(tmp_path):
    model = reference_loop.load_checkpoint(
        reference_loop.save_checkpoint(training.reference_fsrcnn(), tmp_path / "r", 7))
    assert (tmp_path / "r_iter_7.pt").is_file() and not list(tmp_path.glob("*.part"))
    plane = torch.rand(9, 11).double().numpy() * 255
    assert time_to_quality.module_method(model)(plane, 3).shape == (27, 33)


def test_a_plain_callable_is_scored_by_the_protocol():
    # bicubic through the same function a checkpoint goes through: the published Set5 x3 value
    psnrs = time_to_quality.set_psnrs({"bicubic": evaluate.bicubic})
    assert psnrs["bicubic"] == pytest.approx(30.39, abs=0.01)


def test_reference_loop_checkpoints_when_asked_and_at_the_stop(tmp_path):
    write_h5(tmp_path / "train.h5", 40, seed=0)      # two batches of 16 to an epoch
    loop = training.ReferenceTraining([tmp_path / "train.h5"], 16, 1e-3, workers=0,
                                      update_rule=training.adam)
    # what the signal handlers would set: a checkpoint at once, the stop after the third step
    requests = SimpleNamespace(checkpoint=True, stop=False)
    steps = []

    def step(low, high):
        training.ReferenceTraining.step(loop, low, high)
        steps.append(low.shape[0])
        requests.stop = len(steps) == 3
    loop.step = step
    assert reference_loop.train_until_stopped(loop, tmp_path / "r", requests,
                                              log=lambda line: None) == 3
    assert steps == [16, 16, 16]
    assert sorted(path.name for path in tmp_path.glob("r_iter_*.pt")) == ["r_iter_1.pt",
                                                                          "r_iter_3.pt"]


def test_the_bench_end_to_end_on_a_tiny_budget(tmp_path):
    (tmp_path / "data").mkdir()
    solver = tiny_run(tmp_path / "data", 10_000_000, 0)
    runs = tmp_path / "runs"
    chosen = [time_to_quality.runner_train("recipe", solver, runs,
                                           settings=("test_interval=0",)),
              time_to_quality.reference("reference", None, runs,
                                        data=tmp_path / "data" / "train.txt")]
    results = time_to_quality.measure(chosen, budget=12, threads=1, checkpoints=4,
                                      log=lambda line: None)
    written = time_to_quality.write(results, tmp_path / "out")
    assert [path.name for path in written] == ["time_to_quality.png", "time_to_quality.md",
                                               "time_to_quality.csv"]
    assert written[0].read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(written[2].open()))
    for name in ("recipe", "reference"):
        mine = [row for row in rows if row["contender"] == name]
        seconds = [float(row["seconds"]) for row in mine]
        assert mine and seconds == sorted(seconds) and 0 < seconds[0]
        assert all(0 < float(row["psnr"]) < 60 and int(row["iteration"]) > 0 for row in mine)
    for run in results.runs:
        assert run.stopped and run.returncode == 0
        # the stop's snapshot is the last; runner train's names its iteration
        assert run.last.path.name == f"{run.contender.name}_iter_{run.last.iteration}" \
            f"{run.contender.suffix}"
    text = written[1].read_text()
    assert "first ≥ 33.00 dB" in text and "| recipe |" in text and "| reference |" in text
    assert "--set snapshot=0 --set snapshot_prefix=" in text and "test_interval=0" in text
