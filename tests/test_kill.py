"""`kill -9` at random moments, inside snapshot writes too: the next run removes what the killed
one left (saying so), names a .model whose .solverstate was never written, resumes from the
newest complete snapshot, and the run ends bit-identical to one never interrupted, with the
same log records (none twice).

Each run is a `runner train` process of its own, forked from the session's fork server
(tests/cli_forks.py), killed with SIGKILL by this test. SRCAFFE_FUZZ_EXAMPLES=N adds N / 10
more kills at random moments, over a longer run (the deeper run); SRCAFFE_KILL_SEED chooses
the moments.
"""
import json
import os
import random
import signal
import stat
import time
from pathlib import Path

import h5py
import numpy as np

from helpers import created_mode, tiny_run

EXTRA_KILLS = int(os.environ.get("SRCAFFE_FUZZ_EXAMPLES", "0")) // 10
MAX_ITER = 40 + 8 * EXTRA_KILLS     # each kill lets the run advance a few snapshots
WRITE_ATTEMPTS = 5
SEED = int(os.environ.get("SRCAFFE_KILL_SEED", "12"))


def solver_for(folder):
    """The tiny run with a snapshot after every iteration: most of its time is spent writing
    snapshots, so a kill often lands inside one."""
    solver = tiny_run(folder, max_iter=MAX_ITER, snapshot=1)
    solver.write_text(solver.read_text().replace("display: 5", "display: 4")
                      .replace("test_interval: 10", "test_interval: 8"))
    return solver


def running(pid):
    """Whether a child of the fork server still runs (an exited one is a zombie until it is
    collected)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate, pid, seconds=120):
    """Poll tightly until `predicate()` is true; False if the process ended first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        if not running(pid):
            return False
        time.sleep(0.0002)
    raise AssertionError("timed out")


def hidden(run_folder, suffix):
    return [name for name in os.listdir(run_folder) if name.startswith(".")
            and name.endswith(suffix)]


def states(run_folder):
    return sorted((int(path.stem.rsplit("_iter_", 1)[1]), path)
                  for path in run_folder.glob("tiny_iter_*.solverstate"))


def arrays(path, group):
    with h5py.File(path, "r") as h5:
        found = {}
        h5[group].visititems(lambda name, item: found.__setitem__(name, item[()])
                             if isinstance(item, h5py.Dataset) else None)
        return found


def records(run_folder):
    lines = (run_folder / "tiny_log.jsonl").read_text().splitlines()
    return [{key: value for key, value in json.loads(line).items() if key != "seconds"}
            for line in lines]


def test_kill_at_random_moments_then_resume_bit_identical(tmp_path, forks):
    chooser = random.Random(SEED)
    reference_folder, killed_folder = tmp_path / "reference", tmp_path / "killed"
    reference_folder.mkdir()
    killed_folder.mkdir()
    reference = forks.start(["train", "--solver", solver_for(reference_folder)],
                            reference_folder)
    solver = solver_for(killed_folder)
    run = killed_folder / "run"

    # kill when a .model is being written, when a .solverstate is (its .model complete), then
    # at random moments after the training has started
    # (a kill just after a rename leaves nothing behind: each write trigger is tried again
    # until one has killed the process inside its write)
    writes = [lambda: hidden(run, ".model"), lambda: hidden(run, ".solverstate")]
    triggers = [*writes * WRITE_ATTEMPTS, *[None] * (1 + EXTRA_KILLS)]
    seen = {"leftover": False, "orphan": False, "inside": set(), "kills": 0}
    for trigger in triggers:
        if trigger in seen["inside"]:
            continue
        newest = states(run) if run.is_dir() else []
        pid = forks.start(["train", "--snapshot", newest[-1][1]] if newest
                          else ["train", "--solver", solver], killed_folder)
        begun = len(newest) + 2                     # training, with a snapshot to resume from
        if wait_until(lambda: len(states(run)) >= begun, pid):
            if trigger is None:
                time.sleep(chooser.uniform(0, 0.3))
            if trigger is None or wait_until(trigger, pid):
                os.kill(pid, signal.SIGKILL)
                seen["kills"] += 1
        forks.wait(pid)
        if trigger and trigger():
            seen["inside"].add(trigger)
        seen["leftover"] |= bool(hidden(run, ".model") or hidden(run, ".solverstate"))
        complete = {iteration for iteration, _ in states(run)}
        seen["orphan"] |= any(int(path.stem.rsplit("_iter_", 1)[1]) not in complete
                              for path in run.glob("tiny_iter_*.model"))

    finish = forks.run(["train", "--snapshot", states(run)[-1][1]], killed_folder,
                       timeout=300)
    assert finish.code == 0, finish.stderr
    reference_result = forks.wait(reference, timeout=300)
    assert reference_result.code == 0, reference_result.stderr
    said = finish.stdout
    assert seen["leftover"], "no kill landed inside a snapshot write"
    print(f"\nkill -9: {seen['kills']} kills over {MAX_ITER} iterations, "
          f"{len(seen['inside'])} of 2 kinds of snapshot write interrupted, orphaned .model: "
          f"{seen['orphan']}")

    # the next run cleaned up, and said what it removed
    assert not [name for name in os.listdir(run) if name.startswith(".")]
    assert "Removed " in (run / "tiny_train.log").read_text()
    if seen["orphan"]:
        assert "has no .solverstate" in (run / "tiny_train.log").read_text()
    # Caffe's lines: HDF5 snapshots, a timed first display line, the last iteration's line
    assert "Snapshotting to HDF5 file" in said and "binary proto" not in said
    assert " (0 iter/s, 0s/" not in said
    assert f"] Iteration {MAX_ITER}, loss = " in said

    final = f"tiny_iter_{MAX_ITER}"
    for suffix in (".model", ".solverstate"):       # the umask's mode, not mkstemp's 0600
        assert stat.S_IMODE((run / f"{final}{suffix}").stat().st_mode) == created_mode()
    ours = arrays(run / f"{final}.model", "data")
    theirs = arrays(reference_folder / "run" / f"{final}.model", "data")
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[name], theirs[name]) for name in ours)
    ours = arrays(run / f"{final}.solverstate", "history")
    theirs = arrays(reference_folder / "run" / f"{final}.solverstate", "history")
    assert all(np.array_equal(ours[name], theirs[name]) for name in ours)
    # the JSON log holds each record once, the same as the uninterrupted run's
    assert records(run) == records(reference_folder / "run")
