"""TensorBoard event files of every run, and a resumed run's logs: no step written twice."""
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import tiny_run
from in_process import run_main
from runner.config import loading
from runner.files import snapshot
from runner.train import tensorboard
from runner.train.solver import TrainOptions, train
from runner.train.train_log import read_records


def events(prefix):
    accumulator = EventAccumulator(str(tensorboard.event_folder(prefix)),
                                   size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def steps(accumulator, tag):
    return [event.step for event in accumulator.Scalars(tag)]


def test_events_of_a_run_resumed_after_running_on(tmp_path):
    """A run goes to 20 (snapshots at 10 and 20) and is resumed from 10: the event files and
    the JSON-lines log hold each step once, the resumed values replacing the others."""
    solver_file = tiny_run(tmp_path, 20, 10)
    train(loading.load_solver(solver_file), TrainOptions())
    prefix = tmp_path / "run" / "tiny"
    first = read_records(f"{prefix}_log.jsonl")
    state_path = snapshot.snapshot_paths(prefix, 10)[1]
    train(loading.load_solver(solver_file), TrainOptions(),
          resume_from=(state_path, snapshot.load_solverstate(state_path)))
    accumulator = events(prefix)
    # display divides max_iter: Caffe's last line, at 20, is there too
    assert steps(accumulator, "train/loss") == [0, 5, 10, 15, 20]
    assert steps(accumulator, "train/lr") == [0, 5, 10, 15, 20]
    assert steps(accumulator, "test/loss") == steps(accumulator, "test/psnr") == [0, 10, 20]
    records = read_records(f"{prefix}_log.jsonl")
    assert [r["iteration"] for r in records if "loss" in r] == [0, 5, 10, 15, 20]
    assert [r["iteration"] for r in records if "test_psnr" in r] == [0, 10, 20]
    # the records before the snapshot are the first run's; seconds go on across the resume
    assert records[:3] == first[:3]
    seconds = [r["seconds"] for r in records]
    assert seconds == sorted(seconds)
    psnrs = {r["iteration"]: r["test_psnr"] for r in records if "test_psnr" in r}
    shown = {event.step: event.value for event in accumulator.Scalars("test/psnr")}
    assert shown == pytest.approx(psnrs, rel=1e-6)
    images = accumulator.Images("test/ground truth | bicubic | network")
    assert [image.step for image in images] == [0, 10, 20]
    # three 21x21 panels and two 2-pixel gaps, enlarged 4x (96 // 21)
    assert (images[-1].height, images[-1].width) == (84, (3 * 21 + 2 * 2) * 4)


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_tensorboard_switched_off(tmp_path, capfd, monkeypatch, how):
    solver_file = tiny_run(tmp_path, 10, 0)
    flags = ["--no-tensorboard"] if how == "flag" else []
    if how == "environment":
        monkeypatch.setenv(tensorboard.ENVIRONMENT_SWITCH, "0")
    assert run_main(capfd, "train", "--solver", solver_file, *flags).returncode == 0
    assert (tmp_path / "run" / "tiny_log.jsonl").is_file()
    assert not tensorboard.event_folder(tmp_path / "run" / "tiny").exists()


def test_bicubic_panel_of_an_input_with_context():
    """A 19x19 LR input whose label is the 21x21 HR image of its central 7x7: MATLAB bicubic
    reproduces a linear ramp exactly away from the borders, so the panel is the ramp sampled at
    the label's HR pixel centres: LR coordinate (j + 0.5) / 3 - 0.5 for HR pixel j."""
    ramp = np.tile(np.arange(19, dtype=np.float64), (19, 1)) / 19
    panel = tensorboard.bicubic_view(ramp, (21, 21), 3)
    hr_columns = np.arange(18, 18 + 21)
    expected = ((hr_columns + 0.5) / 3 - 0.5) / 19
    assert panel.shape == (21, 21)
    np.testing.assert_allclose(panel, np.tile(expected, (21, 1)), atol=1e-12)
    # x2 with a 9x9 deconvolution: a 31x31 input (19x19 and 6 of context) and a 39x39 label,
    # one pixel past the footprint of the central 19x19, which starts at HR pixel 12
    ramp = np.tile(np.arange(31, dtype=np.float64), (31, 1)) / 31
    panel = tensorboard.bicubic_view(ramp, (39, 39), 2)
    expected = ((np.arange(12, 12 + 39) + 0.5) / 2 - 0.5) / 31
    np.testing.assert_allclose(panel, np.tile(expected, (39, 1)), atol=1e-12)
    # an input already at the label's size (SRCNN's bicubic input) is only cropped
    srcnn_input = np.arange(33 * 33, dtype=np.float64).reshape(33, 33)
    np.testing.assert_array_equal(tensorboard.bicubic_view(srcnn_input, (21, 21), 3),
                                  srcnn_input[6:27, 6:27])
