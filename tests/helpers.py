"""Small builders shared by the tests: synthetic HDF5 sets, tiny nets and solvers, the CLI."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TINY_NET = """name: tiny_fsrcnn
layer:
  - {name: data, type: HDF5Data, top: [data, label], include: {phase: TRAIN},
     hdf5_data_param: {source: train.txt, batch_size: 8, shuffle: true, dataset: [Input, Ground]}}
  - {name: data, type: HDF5Data, top: [data, label], include: {phase: TEST},
     hdf5_data_param: {source: test.txt, batch_size: 8, dataset: [Input, Ground]}}
  - {name: conv1, type: Convolution, bottom: data, top: conv1,
     convolution_param: {num_output: 6, kernel_size: 5, pad: 2,
                         weight_filler: {type: msra}}}
  - {name: prelu1, type: PReLU, bottom: conv1, top: conv1}
  - {name: conv2, type: Convolution, bottom: conv1, top: conv2,
     convolution_param: {num_output: 4, kernel_size: 3, pad: 1, weight_filler: {type: msra}}}
  - {name: prelu2, type: PReLU, bottom: conv2, top: conv2}
  - {name: deconv, type: Deconvolution, bottom: conv2, top: deconv,
     param: [{lr_mult: 0.1}, {lr_mult: 0.1}],
     convolution_param: {num_output: 1, kernel_size: 9, stride: 3, pad: 3,
                         weight_filler: {type: gaussian, std: 0.001}}}
  - {name: loss, type: EuclideanLoss, bottom: [deconv, label], top: loss}
"""

TINY_SOLVER = """net: {net}
test_iter: 2
test_interval: 10
base_lr: 0.001
momentum: 0.9
lr_policy: fixed
type: {solver_type}
display: 5
max_iter: {max_iter}
snapshot: {snapshot}
snapshot_prefix: {prefix}
solver_mode: CPU
random_seed: 7
"""


def write_h5(path, count, seed, lr_size=7, hr_size=21):
    """A synthetic SR set: smooth random HR patches and their 3x box-downscaled LR."""
    generator = np.random.default_rng(seed)
    coarse = generator.random((count, 1, lr_size, lr_size)).astype(np.float32)
    ground = np.repeat(np.repeat(coarse, hr_size // lr_size, axis=2), hr_size // lr_size, axis=3)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("Input", data=coarse)
        h5.create_dataset("Ground", data=ground)
    return path


def write_shards(folder, counts, seed=1):
    """A training set in several files, as `max_pairs_per_file` makes: train1.h5, train2.h5,
    ... of `counts` samples each, listed in train.txt."""
    paths = [write_h5(Path(folder) / f"train{number}.h5", count, seed + number)
             for number, count in enumerate(counts, 1)]
    (Path(folder) / "train.txt").write_text("".join(f"{path}\n" for path in paths))
    return paths


def tiny_run(folder, max_iter=20, snapshot=10, solver_type="SGD", prefix="run/tiny",
             shards=()):
    """A tiny net + solver over synthetic data in `folder`; returns the solver file's path.
    `shards`: sample counts of the training files (default: one file of 64)."""
    folder = Path(folder)
    write_h5(folder / "train.h5", 64, seed=1)
    write_h5(folder / "test.h5", 16, seed=2)
    (folder / "train.txt").write_text(f"{folder / 'train.h5'}\n")
    if shards:
        write_shards(folder, shards)
    (folder / "test.txt").write_text(f"{folder / 'test.h5'}\n")
    (folder / "net.yaml").write_text(TINY_NET.replace("source: train.txt",
                                                      f"source: {folder / 'train.txt'}")
                                     .replace("source: test.txt",
                                              f"source: {folder / 'test.txt'}"))
    solver = folder / f"solver_{max_iter}_{solver_type}.yaml"
    solver.write_text(TINY_SOLVER.format(net=folder / "net.yaml", max_iter=max_iter,
                                         snapshot=snapshot, prefix=folder / prefix,
                                         solver_type=solver_type))
    return solver


def cli_environment():
    """The environment of a `python -m runner` child: this checkout's packages come first
    whatever its working directory (an installed copy elsewhere must not answer instead)."""
    return dict(os.environ, PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                         os.environ.get("PYTHONPATH")])))


def run_cli(*args, cwd=ROOT, module="runner", **kwargs):
    """Run `python -m <module> args...`; returns the CompletedProcess (text output)."""
    environment = cli_environment()
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=environment, timeout=600,
                          **kwargs)


def assert_one_line_error(result, *fragments):
    """Exit code 2, one `error:` line on stderr naming what is wrong, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    return lines[0]


def created_mode():
    """The permission bits a new file gets here: 0666 less the umask (runs inherit ours)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def read_csv(path):
    """The rows of a CSV report (runner test's), as dicts."""
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))
