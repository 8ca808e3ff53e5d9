"""What a training run says: Caffe's log lines on the console and in `<prefix>_train.log`, and
one JSON record per display or test in `<prefix>_log.jsonl` for plots and scripts, with its
TensorBoard event files (`runner/train/tensorboard.py`).

A run that resumes at iteration N continues the JSON-lines log: the records from N on, which
the interrupted run wrote after its snapshot, are dropped, and `seconds` goes on from the last
record kept, so the log reads as one uninterrupted run (the text log keeps every line, as
Caffe's does).
"""
import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

from tqdm import tqdm

from runner.errors import UserError
from runner.files import outputs
from runner.train.tensorboard import TensorBoardLog


def log_paths(snapshot_prefix):
    """(text log, JSON-lines log) of a run, next to its snapshots."""
    return Path(f"{snapshot_prefix}_train.log"), Path(f"{snapshot_prefix}_log.jsonl")


class TrainLog:
    """Caffe-style lines (with glog's `I<mmdd> <time> <pid>` prefix, which Caffe's own log
    parsers expect) plus machine-readable records; a progress bar when stderr is a terminal."""

    def __init__(self, snapshot_prefix, first_iteration, max_iter, enabled=True,
                 tensorboard=False):
        self.enabled = enabled
        self.text_path, self.records_path = log_paths(snapshot_prefix)
        self.tensorboard = None
        self.seconds_before = 0.0
        # test net #0's PSNR at each tested iteration, of this run and the runs it resumes
        self.psnr_at = {}
        if enabled:
            outputs.writable_folder(self.text_path.parent)
            self.text = _append_to(self.text_path)
            kept = records_before(self.records_path, first_iteration)
            self.seconds_before = max((record.get("seconds", 0.0) for record in kept),
                                      default=0.0)
            self.psnr_at = dict(test_points(kept))
            # rewritten whole under a temporary name: a crash here leaves the old log
            outputs.write_files({self.records_path: "".join(json.dumps(record) + "\n"
                                                            for record in kept)})
            self.records = _append_to(self.records_path)
            if tensorboard:
                self.tensorboard = TensorBoardLog(snapshot_prefix, first_iteration)
        self.started = time.perf_counter()
        show_bar = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=max_iter, initial=first_iteration, disable=not show_bar,
                        unit="iter", dynamic_ncols=True, leave=False)

    def line(self, message):
        if not self.enabled:
            return
        now = datetime.datetime.now()
        stamped = f"I{now:%m%d %H:%M:%S.%f} {os.getpid()} solver.py] {message}"
        tqdm.write(stamped, file=sys.stdout)
        self.text.write(stamped + "\n")
        self.text.flush()

    def record(self, **fields):
        """One JSON record, stamped with the run's seconds so far (across resumes)."""
        self.psnr_at.update(test_points([fields]))
        if self.enabled:
            seconds = self.seconds_before + time.perf_counter() - self.started
            self.records.write(json.dumps({**fields, "seconds": round(seconds, 3)}) + "\n")
            self.records.flush()
        if self.tensorboard:
            self.tensorboard.scalars(fields)

    def test_example(self, iteration, data, label, prediction, scale):
        """One test sample's input, label and prediction (2-D arrays), for TensorBoard."""
        if self.tensorboard:
            self.tensorboard.test_example(iteration, data, label, prediction, scale)

    def advance(self, iteration):
        self.bar.update(iteration - self.bar.n)

    def close(self):
        self.bar.close()
        if self.enabled:
            self.text.close()
            self.records.close()
        if self.tensorboard:
            self.tensorboard.close()


def records_before(path, iteration):
    """The records of a JSON-lines log from before `iteration` (none if there is no log); a
    line that a kill cut short, or that is not a record, is left out."""
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            lines = stream.read().splitlines()
    except FileNotFoundError:
        return []
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
            if record["iteration"] < iteration:
                kept.append(record)
        except (ValueError, KeyError, TypeError):
            continue
    return kept


def _append_to(path):
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as error:
        raise UserError(path, f"cannot write the training log ({error.strerror})") from None


def read_records(path):
    """The records of a JSON-lines training log."""
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def test_points(records):
    """(iteration, test PSNR) of test net #0, in log order."""
    return [(record["iteration"], record["test_psnr"]) for record in records
            if "test_psnr" in record and record.get("test_net", 0) == 0]


def remove_leftovers(snapshot_prefix):
    """Remove the temporaries of this run's log rewrite (TrainLog, on a resume) that a killed
    run left behind; returns their paths."""
    prefix = Path(snapshot_prefix)
    return outputs.remove_stale_temporaries(prefix.parent, re.escape(prefix.name) + "_log")
