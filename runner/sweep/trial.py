"""One sweep trial, in a process of its own: `runner train` on the trial's solver file, resumed
from its newest snapshot when it has one, reporting each test's PSNR to the worker (which
answers whether the pruner stops it) and ending with one message: done (with its metrics),
pruned, interrupted (Ctrl-C: snapshot taken) or error.

The process holds a lock on the trial's folder while it runs, so a continuation never starts
while an interrupted process is still writing its last snapshot; it takes SIGINT when its
worker dies (Linux), so it snapshots and stops rather than run on unseen.
"""
import ctypes
import fcntl
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from runner import compare
from runner.config import loading
from runner.errors import UserError
from runner.files import snapshot
from runner.train import tensorboard
from runner.train.solver import TrainOptions, train

LOCK_NAME = ".lock"
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class TrialJob:
    solver_file: str
    threads: int
    hparams: dict                 # the trial's overridden values, for TensorBoard


class Pruned(Exception):
    """The pruner stopped the trial at this test."""


def resume_point(snapshot_prefix):
    """(solverstate path, state) of the newest snapshot under the prefix, or None."""
    newest = snapshot.newest_snapshot(snapshot_prefix, ".solverstate")
    return None if newest is None else (newest, snapshot.load_solverstate(newest))


def _die_with_parent():
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    except (AttributeError, OSError):
        pass          # not Linux: an orphaned trial runs to its end


def run_trial(job, connection, inherited=()):
    """The body of a trial's process; every outcome is one message on `connection`.
    `inherited`: the worker's ends of the trials' pipes, which a forked process holds too
    and closes, so that its own pipe ends when the worker does."""
    signal.signal(signal.SIGINT, signal.default_int_handler)   # not the worker's handlers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # a process group of its own: a Ctrl-C in the terminal reaches the worker alone, which
    # passes it on once
    os.setpgid(0, 0)
    for other in inherited:
        other.close()
    _die_with_parent()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())       # the Caffe log is in the trial's folder
    torch.set_num_threads(job.threads)
    folder = Path(job.solver_file).parent
    with open(folder / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        outcome = _outcome(job, connection)
        try:
            connection.send(outcome)
        except OSError:
            pass            # the worker is gone; the snapshots say how far the trial got


def _outcome(job, connection):
    def on_test(iteration, test_net, loss, psnr):
        if test_net != 0:
            return
        try:
            connection.send(("test", iteration, psnr))
            prune = connection.recv()
        except (EOFError, OSError):
            return   # the worker is gone: its SIGINT (PR_SET_PDEATHSIG) snapshots and stops
        if prune:
            raise Pruned(iteration)

    try:
        setup = loading.load_solver(job.solver_file)
        resume_from = resume_point(setup.solver.snapshot_prefix)
        if resume_from:
            connection.send(("resumed", resume_from[1].iteration))
        solver = train(setup, TrainOptions(on_test=on_test), resume_from=resume_from)
        if not solver.finished:
            return ("interrupted", solver.iteration)
        metrics = compare.log_metrics(compare.run_records(setup.solver.snapshot_prefix))
        tensorboard.write_hparams(setup.solver.snapshot_prefix, job.hparams,
                                  {"hparams/final_test_psnr": metrics.final_psnr,
                                   "hparams/best_test_psnr": metrics.best_psnr})
        return ("done", metrics)
    except Pruned as pruned:
        return ("pruned", pruned.args[0])
    except UserError as error:
        return ("error", str(error))
    except KeyboardInterrupt:
        return ("interrupted", None)
