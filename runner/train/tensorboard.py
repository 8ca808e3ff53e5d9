"""TensorBoard event files of a run, through `torch.utils.tensorboard`, in
`<snapshot_prefix>_tensorboard/` beside its logs: training loss and lr, each test's loss and
PSNR, at each test a ground truth | bicubic | network triplet of one test sample, and for a
sweep's trials their hyper-parameters with their final metrics.

A resumed run purges what the interrupted one wrote from its starting iteration on
(`purge_step`, TensorBoard's own mechanism), so no step is shown twice. `runner train
--no-tensorboard`, or SRCAFFE_TENSORBOARD=0 in the environment, turns the files off.
"""
import os
from pathlib import Path

import numpy as np

from runner.imaging import matlab
from runner.net import structure

ENVIRONMENT_SWITCH = "SRCAFFE_TENSORBOARD"
OFF_VALUES = ("0", "off", "false", "no")
# TensorBoard shows an image at its pixel size: a 21x21 patch is enlarged (nearest) to this.
SHOWN_HEIGHT = 96
SEPARATOR = 2
SCALAR_TAGS = {"loss": "train/loss", "lr": "train/lr", "test_loss": "test/loss",
               "test_psnr": "test/psnr"}


def enabled_by_environment():
    return os.environ.get(ENVIRONMENT_SWITCH, "1").strip().lower() not in OFF_VALUES


def event_folder(snapshot_prefix):
    return Path(f"{snapshot_prefix}_tensorboard")


def bicubic_view(low_res, size, scale):
    """The bicubic estimate of a label of `size` from its input: MATLAB bicubic upscaling by
    `scale`, cropped to the label as a net's output lines up with its input (centred; an odd
    surplus leaves its extra pixel at the end: an input with context is wider than the label's
    LR footprint); an input already at HR size (SRCNN's) is only cropped."""
    if low_res.shape[0] < size[0]:
        low_res = matlab.imresize(low_res.astype(np.float64), scale)
    top, left = (structure.offset_in_footprint(have - want)
                 for have, want in zip(low_res.shape, size))
    return low_res[top:top + size[0], left:left + size[1]]


def triplet_image(data, label, prediction, scale):
    """Ground truth | bicubic | network of one sample (2-D planes in [0, 1]), side by side
    with a white gap, enlarged for display; a float array in [0, 1]."""
    scale = scale or max(1, label.shape[0] // data.shape[0])
    panels = [label, bicubic_view(data, label.shape, scale), prediction]
    gap = np.ones((label.shape[0], SEPARATOR))
    row = np.concatenate([item for panel in panels for item in (panel, gap)][:-1], axis=1)
    enlarge = max(1, SHOWN_HEIGHT // row.shape[0])
    return np.clip(np.kron(row, np.ones((enlarge, enlarge))), 0.0, 1.0)


def _writer(folder, purge_step=None):
    # imported here: tensorboard takes a second to import, and a run without it needs none
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(folder), purge_step=purge_step)


class TensorBoardLog:
    """The event files of one run, from `first_iteration` on."""

    def __init__(self, snapshot_prefix, first_iteration):
        self.writer = _writer(event_folder(snapshot_prefix), purge_step=first_iteration)

    def scalars(self, fields):
        """A train log record's numbers under their TensorBoard tags; a second test net's
        under test1/..."""
        net = fields.get("test_net", 0)
        for name, tag in SCALAR_TAGS.items():
            if name in fields:
                tag = tag.replace("test/", f"test{net}/") if net else tag
                self.writer.add_scalar(tag, fields[name], fields["iteration"])

    def test_example(self, iteration, data, label, prediction, scale):
        self.writer.add_image("test/ground truth | bicubic | network",
                              triplet_image(data, label, prediction, scale), iteration,
                              dataformats="HW")

    def close(self):
        self.writer.close()


def write_hparams(snapshot_prefix, hparams, metrics):
    """A sweep trial's hyper-parameters and final metrics, for TensorBoard's HPARAMS tab (the
    metrics also as scalars, which that tab reads)."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries
    writer = _writer(event_folder(snapshot_prefix))
    try:
        for summary in hparams_summaries(hparams, metrics):
            writer.file_writer.add_summary(summary)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value)
    finally:
        writer.close()
