"""`make prep` for T91 x3, the whole process, wall time; and the data a bench needs, prepared
when missing."""
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import yaml

from runner.bench.measure import REPO_ROOT, values_text
from runner.errors import UserError
from runner.net import structure

PREP_CONFIG = REPO_ROOT / "configs" / "prep_x3.yaml"


def prep_seconds(runs, folder, prep_config=PREP_CONFIG):
    """Wall seconds of each whole `python -m prep --config <prep_x3>` process, writing into
    `folder` instead of results/data (the config is otherwise the same)."""
    settings = yaml.safe_load(Path(prep_config).read_text(encoding="utf-8"))
    settings["output_dir"] = str(Path(folder) / "data")
    copy = Path(folder) / Path(prep_config).name
    copy.write_text(yaml.safe_dump(settings), encoding="utf-8")
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "prep", "--config", str(copy)], cwd=REPO_ROOT,
                       check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def ensure_prepared(source_list, prep_config=PREP_CONFIG):
    """Run `python -m prep --config <prep_config>` when the training data is missing; returns
    its wall seconds (None when the data was there)."""
    if Path(source_list).is_file():
        return None
    print(f"{source_list} is missing: running python -m prep --config {prep_config}")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "prep", "--config", str(prep_config)],
                   cwd=REPO_ROOT, check=True)
    seconds = time.perf_counter() - started
    print(f"prepared {source_list} in {seconds:.1f} s")
    return seconds


def prepared_source(prep_config):
    """The training source list a prep config writes (`<output_dir>/train.txt`)."""
    settings = yaml.safe_load(Path(prep_config).read_text(encoding="utf-8"))
    if not isinstance(settings, dict) or not settings.get("output_dir"):
        raise UserError(prep_config, "names no output_dir")
    return Path(settings["output_dir"]) / "train.txt"


def solver_source(setup):
    """The source list of a solver's TRAIN HDF5Data layer, and that layer."""
    layer = next((layer for layer in structure.phase_layers(setup.train_net, "TRAIN")
                  if layer.type == "HDF5Data"), None)
    if layer is None:
        raise UserError(setup.solver_source, "its train net has no HDF5Data layer")
    return Path(layer.hdf5_data_param.source), layer


def prep_section(seconds):
    return ["## Preparing data (`make prep`, T91 x3)", "",
            f"`python -m prep --config configs/prep_x3.yaml`, the whole process: "
            f"**{median(seconds):.2f} s** (median of {len(seconds)} runs: "
            f"{values_text(seconds, 2)} s).", ""]
