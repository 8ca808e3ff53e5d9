"""The moving average of the weights (`ema_decay`): its formula on hand-computed updates, what the
tests and snapshots of a run hold, exact resume, and the snapshots it cannot resume from."""
import json

import h5py
import numpy as np
import pytest
import torch

from helpers import assert_one_line_error, tiny_run
from in_process import run_main
from runner.config import loading
from runner.files import safe_hdf5, snapshot
from runner.train.moving_average import MovingAverage, decay_at
from runner.train.solver import Solver, TrainOptions, train

QUIET = TrainOptions(log=False)
EMA_DECAY = 0.9


def ema_run(folder, max_iter=20, snapshot_every=10, solver_type="SGD", prefix="run/tiny",
            ema_decay=EMA_DECAY):
    """helpers.tiny_run with `ema_decay`, a BatchNorm before prelu2 and the deconvolution's
    bias frozen (lr_mult 0): blobs the average takes as they are."""
    solver_file = tiny_run(folder, max_iter, snapshot_every, solver_type, prefix)
    net_file = folder / "net.yaml"
    net_file.write_text(net_file.read_text()
                        .replace("  - {name: prelu2,", "  - {name: bn, type: BatchNorm, "
                                 "bottom: conv2, top: conv2}\n  - {name: prelu2,")
                        .replace("param: [{lr_mult: 0.1}, {lr_mult: 0.1}]",
                                 "param: [{lr_mult: 0.1}, {lr_mult: 0}]"))
    solver_file.write_text(solver_file.read_text() + f"ema_decay: {ema_decay}\n")
    return solver_file


def averages(solver):
    return [average.detach().clone() for average in solver.average.averages]


def weights(solver):
    return [blob.detach().clone() for blob in solver.average.blobs]


def assert_same(first, second):
    assert len(first) == len(second)
    for index, (a, b) in enumerate(zip(first, second)):
        assert torch.equal(a, b), index


def stored(arrays):
    return [torch.from_numpy(snapshot.read_array(array)) for array in arrays]


def test_decay_warms_up_to_ema_decay():
    # (1 + iter) / (10 + iter), by hand: 1/10, 10/19, 91/100, then capped
    assert decay_at(0.999, 0) == pytest.approx(0.1)
    assert decay_at(0.999, 9) == pytest.approx(10 / 19)
    assert decay_at(0.999, 90) == pytest.approx(0.91)
    assert decay_at(0.5, 10) == 0.5
    assert decay_at(0.999, 100_000) == 0.999


def test_average_of_known_updates():
    learned, statistic = torch.zeros(2), torch.zeros(3)
    average = MovingAverage([(learned, 1.0), (statistic, 0.0)], 0.5)
    # d = 1/10, 2/11, 3/12 (warm-up), then 0.5 (11/20 capped): 0.1 * 0 + 0.9 * 10 = 9,
    # 2/11 * 9 + 9/11 * 20 = 18, 0.25 * 18 + 0.75 * 30 = 27, 0.5 * 27 + 0.5 * 0 = 13.5
    for iteration, value, expected in ((0, 10, 9), (1, 20, 18), (2, 30, 27), (10, 0, 13.5)):
        learned.fill_(value)
        statistic.fill_(value)            # as a BatchNorm's forward pass moves its statistics
        average.update(iteration)
        assert average.averages[0].tolist() == pytest.approx([expected] * 2)
        assert average.averages[1].tolist() == [value] * 3     # taken as it is
    learned.fill_(5)
    average.restart()
    assert average.averages[0].tolist() == [5, 5]
    shared = average.of({"a": [learned, statistic], "b": [learned]})
    assert shared["a"][0] is shared["b"][0] is average.averages[0]


def test_model_and_tests_hold_the_average_of_the_trajectory(tmp_path):
    """A reference average in float64 from the weights after every update, against the
    .model; the test net sees the average; the solverstate keeps the weights themselves."""
    solver_file = ema_run(tmp_path)
    # no display: its last line's forward pass would move BatchNorm's statistics after the
    # last snapshot
    solver_file.write_text(solver_file.read_text().replace("display: 5", "display: 0"))
    solver = Solver(loading.load_solver(solver_file), QUIET)
    learned = [lr_mult != 0 for _, _, _, lr_mult, _ in solver.net.learnable_blobs()]
    assert not all(learned)          # BatchNorm's statistics and the frozen bias
    reference = [blob.detach().double().clone() for blob in solver.average.blobs]
    update = solver.update_rule.apply_update

    def update_and_average(rate, iteration):
        update(rate, iteration)
        decay = min(EMA_DECAY, (1 + iteration) / (10 + iteration))
        for index, blob in enumerate(solver.average.blobs):
            reference[index] = (decay * reference[index] + (1 - decay) * blob.double()
                                if learned[index] else blob.detach().double().clone())
    solver.update_rule.apply_update = update_and_average
    tested = {}

    def on_test(iteration, index, loss, psnr):
        tested[iteration] = {layer: [blob.detach().clone() for blob in blobs]
                             for layer, blobs in solver.test_nets[0].blobs_by_layer().items()}
    solver.options = TrainOptions(log=False, on_test=on_test)
    solver.solve()

    model_path, state_path = snapshot.snapshot_paths(tmp_path / "run" / "tiny", 20)
    averaged = solver.average.of(solver.net.blobs_by_layer())
    assert_model_holds(model_path, averaged)
    for layer, blobs in averaged.items():
        assert_same(tested[20][layer], blobs)
    for index, (average, expected) in enumerate(zip(solver.average.averages, reference)):
        assert torch.allclose(average.double(), expected, rtol=1e-5, atol=1e-7), index
        if learned[index]:
            assert not torch.equal(average, solver.average.blobs[index]), index
    state = snapshot.load_solverstate(state_path)
    assert_same(stored(state.weights), weights(solver))


def records(prefix):
    """A run's JSON-lines log, without the seconds it took."""
    with open(f"{prefix}_log.jsonl", encoding="utf-8") as lines:
        return [{key: value for key, value in json.loads(line).items() if key != "seconds"}
                for line in lines]


@pytest.mark.parametrize("solver_type", ["SGD", "Adam"])
def test_resume_gives_identical_weights_averages_and_losses(tmp_path, solver_type):
    logged = TrainOptions(tensorboard=False)
    straight = train(loading.load_solver(ema_run(tmp_path, 20, 0, solver_type, "a/run")),
                     logged)
    train(loading.load_solver(ema_run(tmp_path, 10, 10, solver_type, "b/run")), logged)
    state_path = tmp_path / "b" / "run_iter_10.solverstate"
    longer = loading.load_solver(ema_run(tmp_path, 20, 10, solver_type, "b/run"))
    resumed = train(longer, logged,
                    resume_from=(state_path, snapshot.load_solverstate(state_path)))
    assert resumed.iteration == 20 and resumed.started_from is None
    assert_same(weights(straight), weights(resumed))
    assert_same(averages(straight), averages(resumed))
    assert records(tmp_path / "a" / "run") == records(tmp_path / "b" / "run")
    assert any("test_loss" in record for record in records(tmp_path / "b" / "run"))


def assert_model_holds(model_path, blobs_by_layer):
    model = snapshot.load_model(model_path).read_blobs()
    assert model.keys() == blobs_by_layer.keys()
    for layer, blobs in blobs_by_layer.items():
        assert_same([torch.from_numpy(blob) for blob in model[layer]],
                    [blob.detach() for blob in blobs])


def test_fine_tuning_starts_the_average_from_the_copied_weights(tmp_path):
    train(loading.load_solver(ema_run(tmp_path, 10, 10, ema_decay=0)), QUIET)
    model_path = tmp_path / "run" / "tiny_iter_10.model"
    solver = Solver(loading.load_solver(ema_run(tmp_path, 0, 0, prefix="ft/run")), QUIET)
    solver.copy_weights(model_path)
    assert_model_holds(model_path, solver.net.blobs_by_layer())
    assert_same(averages(solver), weights(solver))


def test_a_snapshot_without_an_average_resumes_with_one_started_from_its_weights(tmp_path):
    train(loading.load_solver(ema_run(tmp_path, 10, 10, ema_decay=0)), QUIET)
    state_path = tmp_path / "run" / "tiny_iter_10.solverstate"
    state = snapshot.load_solverstate(state_path)
    solver = Solver(loading.load_solver(ema_run(tmp_path, 20, 10)), QUIET)
    solver.restore(state_path, state)
    assert "holds no moving average" in solver.started_from
    assert_same(averages(solver), weights(solver))
    solver.solve()
    assert solver.iteration == 20


def test_an_averaging_snapshot_resumes_without_its_average(tmp_path):
    train(loading.load_solver(ema_run(tmp_path, 10, 10)), QUIET)
    state_path = tmp_path / "run" / "tiny_iter_10.solverstate"
    state = snapshot.load_solverstate(state_path)
    solver = Solver(loading.load_solver(ema_run(tmp_path, 20, 10, ema_decay=0)), QUIET)
    solver.restore(state_path, state)
    assert "not continued" in solver.started_from
    assert_same([blob.detach() for _, _, blob, _, _ in solver.net.learnable_blobs()],
                stored(state.weights))


def test_without_ema_decay_snapshots_are_written_as_before(tmp_path):
    """The weights in the .model, nothing more in the .solverstate (the files of the tiny run
    were byte-identical to those of the commit before the average)."""
    solver = train(loading.load_solver(tiny_run(tmp_path, 10, 10)), QUIET)
    assert solver.average is None
    model_path, state_path = snapshot.snapshot_paths(tmp_path / "run" / "tiny", 10)
    assert_model_holds(model_path, solver.net.blobs_by_layer())
    assert snapshot.load_solverstate(state_path).weights == []
    with h5py.File(state_path) as h5:
        assert sorted(h5) == ["history", "random_states", "readers"]


def test_ema_decay_of_1_is_refused(tmp_path, capfd):
    solver_file = ema_run(tmp_path, ema_decay=1)
    assert_one_line_error(run_main(capfd, "train", "--solver", solver_file), solver_file,
                          "ema_decay must be below 1")


@pytest.mark.parametrize("damage, fragments", [
    ("model changed", ("sha256",)),
    ("weights changed", ("weights/0", "does not match its checksum")),
    ("weight of another shape", ("weights/0", "shape")),
    ("weight missing", ("holds 10 weight blobs", "keeps 11")),
])
def test_damaged_average_or_weights_is_one_line(tmp_path, capfd, damage, fragments):
    train(loading.load_solver(ema_run(tmp_path, 10, 10)), QUIET)
    model_path, state_path = snapshot.snapshot_paths(tmp_path / "run" / "tiny", 10)
    if damage == "model changed":
        with h5py.File(model_path, "a") as h5:
            h5["data/conv1/0"][0, 0, 0, 0] += 1
    elif damage == "weights changed":
        with h5py.File(state_path, "a") as h5:
            h5["weights/0"][0, 0, 0, 0] += 1
    elif damage == "weight of another shape":     # with a checksum that matches
        with h5py.File(state_path, "a") as h5:
            del h5["weights/0"]
            safe_hdf5.seal_dataset(h5["weights"], "0", np.zeros((6, 1, 3, 3), np.float32))
    else:
        with h5py.File(state_path, "a") as h5:
            del h5["weights/10"]
    assert_one_line_error(run_main(capfd, "train", "--snapshot", state_path), state_path,
                          *fragments)
