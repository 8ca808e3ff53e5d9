"""What a training run says: Caffe's log lines on the console and in `<prefix>_train.log`, and
one JSON record per display or test in `<prefix>_log.jsonl` for plots and scripts."""
import datetime
import json
import os
import re
import sys
from pathlib import Path

from tqdm import tqdm

from runner.errors import UserError
from runner.files import outputs


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
            outputs.writable_folder(self.text_path.parent)
            self.text = _append_to(self.text_path)
            self.records = _append_to(self.records_path)
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


def _append_to(path):
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as error:
        raise UserError(path, f"cannot write the training log ({error.strerror})") from None


def read_records(path):
    """The records of a JSON-lines training log."""
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def remove_leftovers(snapshot_prefix):
    """Remove the temporaries of this run's log rewrite (drop_records_from) that a killed run
    left behind; returns their paths."""
    prefix = Path(snapshot_prefix)
    return outputs.remove_stale_temporaries(prefix.parent, re.escape(prefix.name) + "_log")


def drop_records_from(records_path, iteration):
    """Keep only the records of iterations before `iteration` (a resume writes the later ones
    again), and no line a kill cut short; rewritten atomically. Returns how many were dropped."""
    path = Path(records_path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    with open(path, encoding="utf-8", errors="replace") as stream:
        for line in filter(str.strip, stream):
            try:
                early = json.loads(line)["iteration"] < iteration
            except (ValueError, KeyError, TypeError):
                early = False
            if early:
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    if dropped:
        outputs.write_files({path: "".join(kept)})
    return dropped
