"""Every measurement in one process, and the Markdown report of them."""
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import cv2
import torch

from runner.bench.gpu import gpu_section, measure_gpu
from runner.bench.measure import DEFAULT_THREADS, REPO_ROOT, compile_sources, cpu_name
from runner.bench.prediction import measure_prediction, prediction_section
from runner.bench.prep_time import prep_seconds, prep_section
from runner.bench.whole_process import Inputs, measure_whole_process, whole_process_section
from runner.bench.training import (
    REFERENCE_WORKERS,
    TrainingCost,
    measure_training,
    training_section,
)

SOLVER = REPO_ROOT / "configs" / "fsrcnn_solver.yaml"
# the time-to-quality recipe (`make bench-train`), whose shapes the throughput goal is set on
RECIPE_SOLVER = REPO_ROOT / "configs" / "fsrcnn_x3_fast_solver.yaml"
RECIPE_PREP = REPO_ROOT / "configs" / "prep_x3_fast.yaml"


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does; the defaults make `make bench` take a few minutes."""

    repeats: int = 5                # interleaved repetitions of every comparison
    batch: int = 128
    our_iterations: int = 150       # training steps per repetition, ours
    recipe_iterations: int = 40     # the same for the recipe's shapes (each step ~4x the work)
    shards: int = 16                # files of the sharded-training row (T91 x3: ~840 pairs
                                    # each, a file boundary every ~7 steps)
    reference_batches: int = 15     # training steps per repetition, the reference loop
    matmul_size: int = 2048
    matmuls: int = 10               # matmuls per repetition of the peak measurement
    image_size: int = 256           # LR side of the prediction image
    frame_size: tuple = (180, 320)  # LR video frame, (height, width)
    predictions: int = 4            # images (frames) per repetition
    prep_runs: int = 3
    reference_workers: int = REFERENCE_WORKERS
    whole_repeats: int = 3          # interleaved repetitions of the whole-process rows
    whole_inputs: Inputs = Inputs()  # what the whole-process rows run on (None: no such rows)


@dataclass
class Results:
    threads: int
    sizes: Sizes
    load_before: tuple
    load_after: tuple = None
    training: dict = None           # name -> [samples/s]
    peak: list = None               # [GFLOP/s]
    cost: TrainingCost = None       # of one sample of the solver's
    costs: dict = None              # name -> TrainingCost of one of its samples
    recipe: str = ""                # the recipe row's solver, batch and sample size, in words
    input_size: tuple = None        # of one training sample (LR), (H, W)
    solver: str = ""                # the solver file and its update rule, in words
    profile: tuple = None           # (rows, milliseconds per step)
    predictions: list = None        # (task, model description, {name: [per second]}, unit)
    prep: list = None               # [seconds]
    whole: object = None            # whole_process.WholeProcess
    gpu: object = None              # gpu.GpuResults (where there is a CUDA device)


# what `--only` can choose: all of it, the whole-process rows alone, or the GPU rows alone
PARTS = ("all", "whole", "gpu")


def run(sizes=Sizes(), threads=DEFAULT_THREADS, solver_path=SOLVER, data_root=None, log=print,
        parts="all", recipe_path=RECIPE_SOLVER):
    """Every measurement of `parts`; returns the Results. The solver file's train net is ours;
    the reference loop reads the first .h5 file of its data layer; `recipe_path` (None: no
    such row) is measured at its own shapes beside them. torch and OpenCV run on
    `threads` threads meanwhile (and so do the processes of the whole-process rows)."""
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    try:
        return _measure(sizes, threads, solver_path, data_root, log, parts, recipe_path)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def _measure(sizes, threads, solver_path, data_root, log, parts, recipe_path):
    results = Results(threads, sizes, os.getloadavg())
    compile_sources()           # the processes timed below start as a user's second run does
    with tempfile.TemporaryDirectory(prefix="bench_") as folder:
        if parts == "all":
            measure_training(results, solver_path, Path(folder), log, recipe_path)
            measure_prediction(results, Path(folder), data_root, log)
            results.prep = prep_seconds(sizes.prep_runs, folder)
            if results.prep:
                log(f"make prep (T91 x3): {median(results.prep):.2f} s")
        if parts in ("all", "gpu"):
            results.gpu = measure_gpu(threads, solver_path, recipe_path, folder, data_root,
                                      log, repeats=sizes.repeats, batch=sizes.batch)
    if sizes.whole_inputs is not None and parts in ("all", "whole"):
        results.whole = measure_whole_process(threads, sizes.whole_repeats, sizes.whole_inputs,
                                              data_root, log)
    results.load_after = os.getloadavg()
    return results


def report(results):
    sizes = results.sizes
    lines = ["# Benchmark (`make bench`)", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, {os.cpu_count()} cores; torch "
             f"{torch.__version__}, OpenCV {cv2.__version__}. Threads set explicitly: "
             f"`torch.set_num_threads({results.threads})` and `cv2.setNumThreads"
             f"({results.threads})` (`--threads`), the same for every contender. Load "
             f"average before and after: {results.load_before[0]:.1f}, "
             f"{results.load_after[0]:.1f}: other processes share this machine, and while they "
             "hold a core a second OpenMP thread stalls every op at its barrier (training ran "
             "5x slower with 2 threads than with 1 at a load of 3): `--threads 1` there.", "",
             f"Every comparison ran interleaved in one process, {sizes.repeats} repetitions; "
             "the tables give medians, and each repetition's value.", ""]
    if results.training:
        lines += training_section(results)
        lines += prediction_section(results)
    if results.prep:
        lines += prep_section(results.prep)
    if results.whole:
        lines += whole_process_section(results.whole)
    if results.gpu:
        lines += gpu_section(results.gpu, sizes.batch)
    return "\n".join(lines)
