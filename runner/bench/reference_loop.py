"""The reference loop of `make bench-train` as a process of its own
(`python -m runner.bench.reference_loop`): yjn870/FSRCNN-pytorch's training (train.py: their
FSRCNN, Adam at lr 1e-3 with the deconvolution at a tenth of it, batch 16, nn.MSELoss, a
DataLoader whose Dataset opens the HDF5 file for every sample, epoch after epoch) run until
SIGINT. Like `runner train`, it writes a checkpoint on SIGHUP and goes on, and on SIGINT writes
one and stops: `<prefix>_iter_<N>.pt`, the model's state_dict after N steps.

One difference from their script: the DataLoader has no worker processes by default (theirs has
8); with 8 workers on a 2-core machine the loop ran about 30x slower. Their per-epoch Set5 test
and best-epoch choice are left out: the bench scores the checkpoints afterwards.
"""
import argparse
import os
import signal
import sys
from pathlib import Path

import torch

from runner.bench.training import ReferenceTraining, adam, reference_fsrcnn
from runner.errors import UserError
from runner.files import hdf5_data

CHECKPOINT_SUFFIX = ".pt"


def checkpoint_path(prefix, iteration):
    return Path(f"{prefix}_iter_{iteration}{CHECKPOINT_SUFFIX}")


def save_checkpoint(model, prefix, iteration):
    """The model's weights, written whole under a temporary name first: a file that exists is
    complete, and its modification time is when it was."""
    path = checkpoint_path(prefix, iteration)
    temporary = path.with_name(path.name + ".part")
    torch.save(model.state_dict(), temporary)
    os.replace(temporary, path)
    return path


def load_checkpoint(path):
    """The reference FSRCNN with a checkpoint's weights, ready to run."""
    model = reference_fsrcnn()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


class Requests:
    """What the signals asked for since the last look: SIGHUP a checkpoint, SIGINT a stop."""

    def __init__(self):
        self.checkpoint = self.stop = False
        signal.signal(signal.SIGHUP, self._checkpoint)
        signal.signal(signal.SIGINT, self._stop)

    def _checkpoint(self, number, frame):
        self.checkpoint = True

    def _stop(self, number, frame):
        self.stop = True


def train_until_stopped(training, prefix, requests, log=print):
    """Step through epochs of `training` (a ReferenceTraining) until `requests.stop`,
    checkpointing when asked and at the stop; returns the iterations done."""
    iteration = 0
    while True:
        for low, high in training.loader():
            training.step(low, high)
            iteration += 1
            if requests.checkpoint or requests.stop:
                requests.checkpoint = False
                path = save_checkpoint(training.model, prefix, iteration)
                log(f"iteration {iteration}: wrote {path}")
            if requests.stop:
                return iteration


def main(argv=None):
    requests = Requests()      # first: a signal that comes during start-up is not lost
    parser = argparse.ArgumentParser(prog="python -m runner.bench.reference_loop",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the training data's source list (.txt)")
    parser.add_argument("--prefix", required=True, help="checkpoints: PREFIX_iter_N.pt")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args(argv)
    try:
        files = hdf5_data.read_source_list(args.data)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    training = ReferenceTraining(files, args.batch, args.lr, workers=args.workers,
                                 update_rule=adam, seed=args.seed)
    Path(args.prefix).parent.mkdir(parents=True, exist_ok=True)
    print(f"training on {args.data}: {len(training.dataset):,} samples, batch {args.batch}, "
          f"Adam lr {args.lr:g}, {args.workers} DataLoader workers, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    iterations = train_until_stopped(training, args.prefix, requests,
                                     log=lambda line: print(line, flush=True))
    print(f"stopped after {iterations} iterations", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
