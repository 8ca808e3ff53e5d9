"""The sweep's study in Optuna's RDB storage: an SQLite file in the sweep folder by default, or a
database server (`--storage postgresql://...`) that workers on several machines share.

A trial has a slot (its grid point, or its first TPE trial's number) and a folder named after
it. Optuna trials never restart, so a slot may take several: an interrupted trial is marked
failed with `interrupted_at`, and a continuation (same slot and parameters) is queued; the
worker that takes it resumes the slot's run from its newest snapshot. Two workers never take
the same trial: a queued trial is taken by the storage's atomic WAITING -> RUNNING change
(atomic on SQLite too: its transactions begin holding the write lock), and a stale one (its
worker gone) is continued only by the worker whose change of it to FAIL succeeded. A worker is gone when its heartbeat is older than GRACE_SECONDS, or at once
when it ran on this machine and its process has ended.
"""
import os
import socket
import time
import warnings

import optuna
import sqlalchemy.event
import sqlalchemy.exc
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from runner.errors import UserError

HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
READY_WAIT_SECONDS = 60
CREATE_ATTEMPTS = 5
DATABASE_NAME = "study.db"

optuna.logging.set_verbosity(optuna.logging.WARNING)   # the worker says what happens


def quietly(function, *arguments):
    """Optuna's warnings about its heartbeats silenced: they are experimental, and meant for
    `optimize`, while our own loop asks and tells and records the heartbeats itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        return function(*arguments)


def default_storage(folder):
    return f"sqlite:///{folder}/{DATABASE_NAME}"


def shown(url):
    """A storage URL without its password, for messages."""
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{separator}{credentials.split(':')[0]}:***@{host}"


def worker_id():
    return f"{socket.gethostname()}:{os.getpid()}"


def open_storage(url):
    """Optuna's RDBStorage at `url` with heartbeats, or a one-line UserError."""
    sqlite = url.startswith("sqlite")
    # pysqlite left to begin its own transactions would begin them late (see begin_immediately)
    engine = {"connect_args": {"timeout": 60, "isolation_level": None}} if sqlite else \
        {"pool_pre_ping": True}
    for attempt in range(CREATE_ATTEMPTS):
        try:
            storage = quietly(lambda: optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS, heartbeat_stale_trial_callback=queue_continuation))
            if sqlite:
                sqlalchemy.event.listen(storage.engine, "begin", begin_immediately)
            return storage
        except Exception as error:   # SQLAlchemy's and the drivers' errors have no common base
            if not is_creation_race(error):
                raise UserError(shown(url), "cannot open the study storage "
                                f"({first_line(error)})") from None
            time.sleep(0.5 * (attempt + 1))
    raise UserError(shown(url), "cannot create the study storage's tables")


def begin_immediately(connection):
    """Begin each SQLite transaction holding the database's write lock. Optuna claims a queued
    trial by reading it WAITING and writing RUNNING under SELECT ... FOR UPDATE, which SQLite
    ignores, and pysqlite begins a transaction only at its first write: two workers could both
    read WAITING and both take the trial. (SQLAlchemy's documented recipe for pysqlite.)"""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_creation_race(error):
    """Two workers created Optuna's tables at once, and the other one's are there now: an
    IntegrityError, or "... already exists" from the driver (SQLite's OperationalError,
    PostgreSQL's DuplicateTable, which SQLAlchemy raises as a ProgrammingError)."""
    return isinstance(error, sqlalchemy.exc.IntegrityError) or (
        isinstance(error, sqlalchemy.exc.DBAPIError) and "already exists" in str(error))


def first_line(error):
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def stored_definition(storage, name, url):
    """The definition the study `name` was made with, or None when there is no such study
    (waiting a little for one being created by another worker)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    deadline = time.monotonic() + READY_WAIT_SECONDS
    while True:
        definition = storage.get_study_user_attrs(study_id).get("definition")
        if definition is not None:
            return definition
        if time.monotonic() > deadline:
            raise UserError(shown(url), f"study {name!r} exists but was never finished (its "
                            "creator stopped): delete it or choose another --name")
        time.sleep(1)


def check_same_study(definition, plan, url):
    if definition is not None and definition != plan.definition():
        differs = [key for key in plan.definition() if definition.get(key) !=
                   plan.definition()[key]]
        raise UserError(shown(url), f"study {plan.name!r} holds a different sweep ("
                        f"{', '.join(differs)} differ): choose another --name")


def distributions(plan):
    """Each override's Optuna distribution: its values, or its range."""
    found = {}
    for override in plan.overrides:
        if not override.is_range:
            found[override.key] = CategoricalDistribution(list(override.values))
        elif override.integer:
            found[override.key] = IntDistribution(override.low, override.high, log=override.log)
        else:
            found[override.key] = FloatDistribution(override.low, override.high,
                                                    log=override.log)
    return found


def sampler_and_pruner(plan, prune):
    sampler = (optuna.samplers.RandomSampler() if plan.is_grid else
               optuna.samplers.TPESampler(n_startup_trials=min(10, max(2, plan.trials // 3))))
    # the median rule from the second test on (the first is the untrained net's), once two
    # trials have finished
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if prune
              else optuna.pruners.NopPruner())
    return sampler, pruner


def create_or_load(storage, plan, url, prune):
    """The study, created with the grid queued (by exactly one worker) or loaded."""
    sampler, pruner = sampler_and_pruner(plan, prune)
    try:
        study = optuna.create_study(study_name=plan.name, storage=storage, sampler=sampler,
                                    pruner=pruner, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        check_same_study(stored_definition(storage, plan.name, url), plan, url)
        return optuna.load_study(study_name=plan.name, storage=storage, sampler=sampler,
                                 pruner=pruner)
    if plan.is_grid:
        for slot, assignments in enumerate(plan.grid()):
            study.enqueue_trial(assignments, user_attrs={"slot": slot})
    study.set_user_attr("definition", plan.definition())   # last: the study is ready
    return study


def slot_of(frozen):
    return frozen.user_attrs.get("slot", frozen.number)


def queue_continuation(study, frozen):
    """Queue the continuation of an interrupted trial: same slot, same parameters."""
    study.enqueue_trial(frozen.params, user_attrs={"slot": slot_of(frozen),
                                                   "continues": frozen.number})


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SweepStudy:
    """One worker's view of the study: taking trials, reporting, finishing, continuing."""

    def __init__(self, study, storage, plan):
        self.study, self.storage, self.plan = study, storage, plan
        self.study_id = storage.get_study_id_from_name(plan.name)
        self.distributions = distributions(plan)
        self.worker = worker_id()

    def trials(self, *states):
        return self.study.get_trials(deepcopy=False, states=states or None)

    def _id(self, number):
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def claim(self, skip_slots=()):
        """A trial for this worker, RUNNING from now: a queued one (a grid point, or a
        continuation whose folder is here), else a new TPE trial while the study has fewer
        than --trials slots; None when there is nothing to take."""
        # continuations first: interrupted work is finished before new work starts
        queued = sorted(self.trials(TrialState.WAITING),
                        key=lambda frozen: ("continues" not in frozen.user_attrs, frozen.number))
        for frozen in queued:
            slot = slot_of(frozen)
            if slot in skip_slots or ("continues" in frozen.user_attrs
                                      and not self.plan.trial_folder(slot).is_dir()):
                continue
            try:
                if not self.storage.set_trial_state_values(self._id(frozen.number),
                                                           TrialState.RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            return self._started(optuna.Trial(self.study, self._id(frozen.number)), slot)
        if self.plan.is_grid or self.trials(TrialState.WAITING) or \
                len({slot_of(frozen) for frozen in self.trials()}) >= self.plan.trials:
            return None
        trial = quietly(self.study.ask)
        slot = trial.user_attrs.get("slot", trial.number)
        if "continues" in trial.user_attrs and not self.plan.trial_folder(slot).is_dir():
            # a continuation queued meanwhile for another machine's folder: give it back
            self.interrupt(trial, None)
            return None
        return self._started(trial, slot)

    def _started(self, trial, slot):
        for name, distribution in self.distributions.items():
            suggest(trial, name, distribution)
        trial.set_user_attr("slot", slot)
        trial.set_user_attr("worker", self.worker)
        self.heartbeat(trial)
        return trial

    def earlier_values(self, slot, number):
        """{iteration: test PSNR} reported by the slot's earlier trials (a continuation
        inherits them, so the pruner sees the whole run)."""
        values = {}
        for frozen in self.trials():
            if slot_of(frozen) == slot and frozen.number < number:
                values.update(frozen.intermediate_values)
        return values

    def heartbeat(self, trial):
        self.storage.record_heartbeat(self._id(trial.number))

    def interrupt(self, trial, iteration):
        """Mark a trial stopped before its end and queue its continuation."""
        trial.set_user_attr("interrupted_at", iteration)
        frozen = self.study.tell(trial, state=TrialState.FAIL)
        queue_continuation(self.study, frozen)

    def continue_abandoned(self):
        """Fail and continue the RUNNING trials whose worker is gone: its heartbeat is stale,
        or it ran on this machine and its process has ended."""
        host = socket.gethostname()
        gone = []
        for frozen in self.trials(TrialState.RUNNING):
            worker_host, _, pid = str(frozen.user_attrs.get("worker", "")).rpartition(":")
            if worker_host == host and pid.isdigit() and int(pid) != os.getpid() and \
                    not process_alive(int(pid)):
                gone.append(frozen.number)
        for number in gone:
            try:
                if not self.storage.set_trial_state_values(self._id(number), TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue     # another worker got there first
            queue_continuation(self.study, self.storage.get_trial(self._id(number)))
        quietly(optuna.storages.fail_stale_trials, self.study)

    def others_running(self):
        return [frozen for frozen in self.trials(TrialState.RUNNING)
                if frozen.user_attrs.get("worker") != self.worker]

    def elsewhere(self):
        """Queued continuations whose folders this machine does not have."""
        return [frozen for frozen in self.trials(TrialState.WAITING)
                if not self.plan.trial_folder(slot_of(frozen)).is_dir()]


def suggest(trial, name, distribution):
    """The trial's value for `name` (a queued trial's fixed value, else sampled)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high,
                                 log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
