"""What a training run says: Caffe's log lines on the console and in `<prefix>_train.log`, and
one JSON record per display or test in `<prefix>_log.jsonl` for plots and scripts."""
import datetime
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm


def log_paths(snapshot_prefix):
    """(text log, JSON-lines log) of a run, next to its snapshots."""
    return Path(f"{snapshot_prefix}_train.log"), Path(f"{snapshot_prefix}_log.jsonl")


class TrainLog:
    """Caffe-style lines (with glog's `I<mmdd> <time> <pid>` prefix, which Caffe's own log
    parsers expect) plus machine-readable records; a progress bar when stderr is a terminal."""

    def __init__(self, snapshot_prefix, first_iteration, max_iter, enabled=True):
        self.enabled = enabled
        self.text_path, self.records_path = log_paths(snapshot_prefix)
        if enabled:
            self.text_path.parent.mkdir(parents=True, exist_ok=True)
            self.text = open(self.text_path, "a", encoding="utf-8")
            self.records = open(self.records_path, "a", encoding="utf-8")
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
        if self.enabled:
            self.records.write(json.dumps(fields) + "\n")
            self.records.flush()

    def advance(self, iteration):
        self.bar.update(iteration - self.bar.n)

    def close(self):
        self.bar.close()
        if self.enabled:
            self.text.close()
            self.records.close()


def read_records(path):
    """The records of a JSON-lines training log."""
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]
