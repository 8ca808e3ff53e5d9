"""What a sweep runs: the base solver, the `--set` overrides, and each trial's config texts.

Every override is checked by the schema as soon as it is parsed, and every trial's whole config
(every grid point; for TPE, the ranges' bounds) is built as a run would build it, so a bad
sweep stops before anything is created.
"""
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from runner.config import loading, overrides
from runner.errors import UserError
from runner.sweep.folders import DEFAULT_FOLDER, DEFINITION_NAME, SOLVER_NAME, trial_name


@dataclass
class SweepPlan:
    name: str
    folder: Path                 # results/sweeps/NAME
    solver_path: str
    setup: object                # the base SolverSetup, --max_iter applied
    overrides: list              # Override, in --set order
    trials: int = None           # TPE's number of trials; None: the grid
    constants: dict = field(default_factory=dict)   # --max_iter, the same for every trial

    @property
    def is_grid(self):
        return self.trials is None

    def grid(self):
        """Every grid point as {key: value}, the last --set varying fastest."""
        keys = [override.key for override in self.overrides]
        return [dict(zip(keys, values))
                for values in itertools.product(*(override.values for override in self.overrides))]

    def varying(self, assignments):
        """The assignments of the keys that vary between trials (a single-valued --set is
        the same in all)."""
        varying = {o.key for o in self.overrides if o.is_range or len(o.values) > 1}
        return {key: value for key, value in assignments.items() if key in varying}

    def definition(self):
        """What makes two sweeps the same study: the base texts, the overrides, the mode."""
        return {"solver": self.solver_path, "solver_text": self.setup.solver_text,
                "net_texts": [list(pair) for pair in self.setup.net_sources],
                "constants": self.constants,
                "overrides": [_describe_override(override) for override in self.overrides],
                "trials": self.trials}

    def trial_folder(self, slot):
        return self.folder / trial_name(slot)

    def trial_texts(self, slot, assignments):
        """(solver path, solver text, [(net file name, text)]) of one trial: the base with its
        assignments and the sweep's constants, snapshots under the trial's folder, its net
        files beside its solver file."""
        folder = self.trial_folder(slot)
        solver = self.setup.solver
        net_names = {path: Path(path).name for path, _ in self.setup.net_sources}
        placed = {"snapshot_prefix": str(folder / Path(solver.snapshot_prefix).name)}
        for key in ("net", "train_net"):
            if getattr(solver, key):
                placed[key] = net_names[getattr(solver, key)]
        if solver.test_net:
            placed["test_net"] = [net_names[name] for name in solver.test_net]
        header = (f"# runner sweep {self.name}, {trial_name(slot)}: {self.solver_path}"
                  f"{' with ' if assignments else ''}{overrides.describe(assignments)}\n")
        solver_text, net_texts = overrides.override_texts(
            self.setup, {**self.constants, **assignments, **placed}, header)
        return (str(folder / SOLVER_NAME), solver_text,
                [(net_names[path], text) for path, text in net_texts])

    def check(self):
        """Build every trial's config as a run would (grid points; TPE's bounds)."""
        for assignments in (self.grid() if self.is_grid else self._bounds()):
            solver_path, solver_text, net_texts = self.trial_texts(0, assignments)
            setup = loading.solver_setup_from_texts(solver_path, solver_text, net_texts)
            if not setup.solver.test_interval or not setup.test_nets:
                raise UserError(self.solver_path, "a sweep compares test PSNR: the solver needs "
                                "a test net and a test_interval")

    def _bounds(self):
        low = {o.key: o.low if o.is_range else o.values[0] for o in self.overrides}
        high = {o.key: o.high if o.is_range else o.values[-1] for o in self.overrides}
        return [low, high]

    def write_definition(self):
        (self.folder / DEFINITION_NAME).write_text(json.dumps(self.definition(), indent=1),
                                                   encoding="utf-8")


def _describe_override(override):
    if override.is_range:
        return {"key": override.key, "low": override.low, "high": override.high,
                "log": override.log, "integer": override.integer}
    return {"key": override.key, "values": list(override.values)}


def make_plan(solver_path, set_texts, name, folder=DEFAULT_FOLDER, trials=None, max_iter=None):
    """The sweep the command line describes, checked whole; creates nothing."""
    if not name or Path(name).name != name or name.startswith("."):
        raise UserError("--name", f"{name!r} is not a plain folder name (e.g. lr_momentum)")
    if not set_texts:
        raise UserError("runner sweep", "nothing to sweep: give at least one --set KEY=VALUES")
    setup = loading.load_solver(solver_path)
    parsed = [overrides.parse_set(text, setup) for text in set_texts]
    keys = [override.key for override in parsed]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise UserError("--set", f"{repeated[0]} is set twice: give its values in one --set")
    if trials is None and any(override.is_range for override in parsed):
        ranged = next(override.key for override in parsed if override.is_range)
        raise UserError("--set", f"{ranged}: a range is sampled, not a grid: add --trials K "
                        "(or list its values)")
    constants = {}
    if max_iter is not None:
        constants["max_iter"] = overrides.check_value("max_iter", max_iter, setup)
    plan = SweepPlan(name, Path(folder) / name, str(solver_path), setup, parsed, trials,
                     constants)
    plan.check()
    return plan
