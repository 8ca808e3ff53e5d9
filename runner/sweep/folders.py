"""Where a sweep's files live: its folder under `DEFAULT_FOLDER`, the definition and each
trial's folder and solver file in it. Nothing here imports more than the standard library, so
that `runner sweep --help` starts at once."""
from pathlib import Path

DEFAULT_FOLDER = Path("results/sweeps")
SOLVER_NAME = "solver.yaml"
DEFINITION_NAME = "sweep.json"


def trial_name(slot):
    """A trial's folder name: its slot (grid point, or TPE trial number), zero-padded."""
    return f"trial_{slot:03d}"
