"""The solver's `autocast: bfloat16`: training's forward passes in bfloat16 where autocast puts
them (convolutions), the weights, their updates, the snapshots and the test passes in float32,
and a resume as exact as without it."""
import numpy as np
import pytest
import torch

from helpers import assert_one_line_error, run_cli, tiny_run
from runner.config import loading
from runner.files import snapshot
from runner.net.layers.convolution import Convolution
from runner.train.solver import Solver, TrainOptions, train
from test_solver import assert_same_weights, final_weights

QUIET = TrainOptions(log=False)


def autocast_run(folder, max_iter, snapshot_every, prefix="run/tiny"):
    """tiny_run's solver file with `autocast: bfloat16` added; returns its path."""
    solver = tiny_run(folder, max_iter, snapshot_every, "Adam", prefix)
    solver.write_text(solver.read_text() + "autocast: bfloat16\n")
    return solver


def convolution_dtypes(solver, work):
    """{"train" | "test": dtypes of the convolutions' outputs} while `work()` runs."""
    nets = {"train": set(solver.net.modules()), "test": set(solver.test_nets[0].modules())}
    seen = {"train": set(), "test": set()}

    def record(module, inputs, outputs):
        if isinstance(module, Convolution):        # Deconvolution included
            for net, modules in nets.items():
                if module in modules:
                    seen[net].add(outputs[0].dtype)
    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        work()
    finally:
        handle.remove()
    return seen


def test_convolutions_train_in_bfloat16_and_the_rest_stays_float32(tmp_path):
    solver = Solver(loading.load_solver(autocast_run(tmp_path, 12, 12)), QUIET)
    before = solver.test(0)
    assert convolution_dtypes(solver, solver.solve) == {"train": {torch.bfloat16},
                                                        "test": {torch.float32}}
    assert all(blob.dtype == torch.float32 for _, _, blob, _, _ in solver.net.learnable_blobs())
    model = snapshot.load_model(snapshot.snapshot_paths(tmp_path / "run" / "tiny", 12)[0])
    assert all(blob.read().dtype == np.float32 for blobs in model.blobs.values() for blob in blobs)
    after = solver.test(0)
    assert after[0] < before[0] and after[1] > before[1]


def test_bfloat16_training_follows_float32_training_closely(tmp_path):
    """The same run in float32 and under autocast: the weights part (bfloat16 rounds the
    convolutions' inputs to 8 bits of mantissa) but stay within a few percent of each other."""
    float32 = train(loading.load_solver(tiny_run(tmp_path, 12, 0, "Adam", "a/run")), QUIET)
    bfloat16 = train(loading.load_solver(autocast_run(tmp_path, 12, 0, "b/run")), QUIET)
    first, second = final_weights(float32), final_weights(bfloat16)
    assert any(not torch.equal(a, b) for layer in first for a, b in zip(first[layer],
                                                                          second[layer]))
    for layer in first:
        for a, b in zip(first[layer], second[layer]):
            assert torch.linalg.norm(a - b) <= 0.05 * torch.linalg.norm(a), layer


def test_resume_under_autocast_is_exact(tmp_path):
    straight = train(loading.load_solver(autocast_run(tmp_path, 16, 0, "a/run")), QUIET)
    train(loading.load_solver(autocast_run(tmp_path, 8, 8, "b/run")), QUIET)
    state_path = tmp_path / "b" / "run_iter_8.solverstate"
    longer = loading.load_solver(autocast_run(tmp_path, 16, 8, "b/run"))
    resumed = train(longer, QUIET, resume_from=(state_path, snapshot.load_solverstate(state_path)))
    assert resumed.iteration == 16
    assert_same_weights(final_weights(straight), final_weights(resumed))


@pytest.mark.parametrize("value", ["float16", "bf16", "half"])
def test_an_unknown_autocast_type_is_one_line(tmp_path, value):
    solver = tiny_run(tmp_path, 4, 0)
    result = run_cli("train", "--solver", solver, "--no-tensorboard", "--set",
                     f"autocast={value}")
    assert_one_line_error(result, "autocast", value, "bfloat16")
    assert not (tmp_path / "run").exists()
