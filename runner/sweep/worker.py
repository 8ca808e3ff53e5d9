"""A sweep worker: takes trials from the study and runs them, `--parallel` at a time, each in a
process of its own with its share of the cores, until the study has nothing left; then
compares the trials. Several workers (on this machine or others) share a study by running
the same command.

The worker is the only one that talks to the storage: it records its trials' heartbeats,
reports their test PSNR and answers whether the pruner stops them, and tells their outcome.
Ctrl-C (or SIGTERM) stops it: every running trial snapshots and stops, and is queued for
continuation, which the same command, run again, picks up.
"""
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from dataclasses import asdict, dataclass

from runner import compare
from runner.config import overrides
from runner.errors import UserError
from runner.files import outputs
from runner.sweep import study as sweep_study
from runner.sweep.folders import DEFINITION_NAME, trial_name
from runner.sweep.trial import TrialJob, run_trial

POLL_SECONDS = 1.0
SHOWN_DIGITS = 4


def available_cores():
    """The cores this sweep may use: OMP_NUM_THREADS when set, else those of this process."""
    threads = os.environ.get("OMP_NUM_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        return int(threads)
    return len(os.sched_getaffinity(0))


def threads_per_trial(parallel):
    return max(1, available_cores() // parallel)


@dataclass
class Running:
    trial: object                 # optuna.Trial
    slot: int
    process: object
    connection: object
    reported: dict                # iteration -> test PSNR already reported to the study


class Worker:
    def __init__(self, plan, sweep, parallel, prune, say=print):
        self.plan, self.sweep, self.parallel, self.prune, self.say = \
            plan, sweep, parallel, prune, say
        self.running = []
        self.stopping = False
        self.interrupted_here = set()    # slots stopped in this run: continued by a rerun
        self.context = multiprocessing.get_context("fork")   # the child has torch loaded

    def label(self, slot, trial):
        """`trial_001 (base_lr=0.001, momentum=0.9)`: the trial and what varies in it."""
        values = overrides.describe(self.plan.varying(trial.params), SHOWN_DIGITS)
        return trial_name(slot) + (f" ({values})" if values else "")

    # ------------------------------------------------------------------ starting trials

    def start(self, trial):
        slot = trial.user_attrs["slot"]
        solver_path, solver_text, net_texts = self.plan.trial_texts(slot, trial.params)
        folder = self.plan.trial_folder(slot)
        outputs.writable_folder(folder)
        outputs.write_files({solver_path: solver_text,
                             **{folder / name: text for name, text in net_texts}})
        reported = self.sweep.earlier_values(slot, trial.number)
        for step, value in sorted(reported.items()):
            trial.report(value, step)
        job = TrialJob(solver_path, threads_per_trial(self.parallel), dict(trial.params))
        parent_end, child_end = self.context.Pipe()
        inherited = [running.connection for running in self.running] + [parent_end]
        process = self.context.Process(target=run_trial, args=(job, child_end, inherited),
                                       name=trial_name(slot))
        process.start()
        child_end.close()
        self.running.append(Running(trial, slot, process, parent_end, reported))
        self.say(f"{self.label(slot, trial)}: started (Optuna trial {trial.number}, "
                 f"{job.threads} thread{'s' * (job.threads > 1)})")

    def fill(self):
        while len(self.running) < self.parallel:
            trial = self.sweep.claim(skip_slots=self.interrupted_here)
            if trial is None:
                return
            self.start(trial)

    # ------------------------------------------------------------------ their messages

    def handle(self, running, message):
        """One message of a trial's process; True when it was the last."""
        kind, *rest = message
        trial, name = running.trial, self.label(running.slot, running.trial)
        if kind == "resumed":
            self.say(f"{name}: resumed from its snapshot at iteration {rest[0]}")
            return False
        if kind == "test":
            iteration, psnr = rest
            if iteration not in running.reported:
                trial.report(psnr, iteration)
                running.reported[iteration] = psnr
            running.connection.send(bool(self.prune and trial.should_prune()))
            return False
        if kind == "done":
            metrics = rest[0]
            for key, value in asdict(metrics).items():
                trial.set_user_attr(key, value)
            self.sweep.study.tell(trial, metrics.final_psnr)
            self.say(f"{name}: finished at iteration {metrics.iterations}: test PSNR "
                     f"{metrics.final_psnr:.2f} dB (best {metrics.best_psnr:.2f} at "
                     f"{metrics.best_iteration})")
        elif kind == "pruned":
            self.sweep.study.tell(trial, state=sweep_study.TrialState.PRUNED)
            self.say(f"{name}: pruned at iteration {rest[0]} (below the median of the "
                     "finished trials)")
        elif kind == "error":
            trial.set_user_attr("error", rest[0])
            self.sweep.study.tell(trial, state=sweep_study.TrialState.FAIL)
            self.say(f"{name}: failed: {rest[0]}")
        else:
            self.interrupt(running, rest[0])
        return True

    def interrupt(self, running, iteration):
        self.sweep.interrupt(running.trial, iteration)
        self.interrupted_here.add(running.slot)
        where = f" at iteration {iteration}" if iteration is not None else ""
        self.say(f"{self.label(running.slot, running.trial)}: interrupted{where}; "
                 "queued to continue from its newest snapshot")

    def collect(self, timeout):
        """Wait up to `timeout` for the trials' processes and handle what they say."""
        multiprocessing.connection.wait(
            [item.connection for item in self.running] +
            [item.process.sentinel for item in self.running], timeout)
        for running in list(self.running):
            finished = False
            try:
                while not finished and running.connection.poll():
                    finished = self.handle(running, running.connection.recv())
            except (EOFError, OSError):
                pass
            if not finished and running.process.is_alive():
                continue
            if not finished:          # the process ended without an outcome (killed)
                self.interrupt(running, None)
            running.process.join()
            running.connection.close()
            self.running.remove(running)

    # ------------------------------------------------------------------ the loop

    def stop(self, number, frame):
        if not self.stopping:
            self.say("stopping: each running trial snapshots and stops; run the same command "
                     "again to continue")
        self.stopping = True
        for running in self.running:
            if running.process.is_alive():
                os.kill(running.process.pid, signal.SIGINT)

    def run(self):
        """Run trials until the study has none left for this worker; False if stopped."""
        previous = {number: signal.signal(number, self.stop)
                    for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.sweep.continue_abandoned()
            last_beat, waiting_said = time.monotonic(), False
            while True:
                if not self.stopping:
                    self.fill()
                if not self.running:
                    others = self.sweep.others_running()
                    if self.stopping or not others:
                        break
                    if not waiting_said:
                        self.say(f"waiting for {len(others)} trial(s) running in other "
                                 "workers (an abandoned one is continued here once its "
                                 f"heartbeat is {sweep_study.GRACE_SECONDS} s old)")
                        waiting_said = True
                    time.sleep(POLL_SECONDS)
                    self.sweep.continue_abandoned()
                    continue
                self.collect(POLL_SECONDS)
                if time.monotonic() - last_beat > sweep_study.HEARTBEAT_SECONDS / 2:
                    for running in self.running:
                        self.sweep.heartbeat(running.trial)
                    self.sweep.continue_abandoned()
                    last_beat = time.monotonic()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            self.abandon()
        return not self.stopping

    def abandon(self):
        """After an error in this worker: its trials snapshot and stop (they stay RUNNING in
        the study, and the next worker here continues them)."""
        for running in self.running:
            running.connection.close()
            if running.process.is_alive():
                os.kill(running.process.pid, signal.SIGINT)
        for running in self.running:
            running.process.join()
        self.running = []


def check_folder(plan):
    """A sweep folder made by another sweep is not reused (its trials would be resumed)."""
    path = plan.folder / DEFINITION_NAME
    if path.is_file():
        if json.loads(path.read_text(encoding="utf-8")) != plan.definition():
            raise UserError(plan.folder, "holds a different sweep: choose another --name")


def open_study(plan, storage_url, prune):
    """The study, opened (and created, with the sweep folder) only once every check passed."""
    url = storage_url or sweep_study.default_storage(plan.folder)
    check_folder(plan)
    storage = None
    if storage_url or (plan.folder / sweep_study.DATABASE_NAME).is_file():
        storage = sweep_study.open_storage(url)
        sweep_study.check_same_study(sweep_study.stored_definition(storage, plan.name, url),
                                     plan, url)
    outputs.writable_folder(plan.folder)
    plan.write_definition()
    storage = storage or sweep_study.open_storage(url)
    study = sweep_study.create_or_load(storage, plan, url, prune)
    return sweep_study.SweepStudy(study, storage, plan), url


def run_sweep(plan, storage_url=None, parallel=1, prune=False, say=print):
    """Run the sweep's trials here; compare them at the end. Returns the comparison's paths
    (none when stopped, or when trials wait for another machine)."""
    sweep, url = open_study(plan, storage_url, prune)
    say(f"sweep {plan.name}: study in {sweep_study.shown(url)}; trials under {plan.folder}/")
    if not Worker(plan, sweep, parallel, prune, say).run():
        return []
    elsewhere = sweep.elsewhere()
    if elsewhere:
        say(f"{len(elsewhere)} interrupted trial(s) continue on the machine holding their "
            f"folder ({', '.join(trial_name(sweep_study.slot_of(t)) for t in elsewhere)})")
    table, written = compare.compare([plan.folder])
    say(table)
    return written
