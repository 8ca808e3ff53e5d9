"""`make bench` (`python -m runner.bench`): how fast we train, super-resolve and prepare data,
measured side by side with what people use, in one run, and written to results/bench.md.

This machine is small and shared, so a number alone says little: every comparison runs
interleaved in the same process (ours, theirs, ours, theirs, ...), each side reports the median
of its repetitions, and what counts is their ratio.

1. Training FSRCNN(56,12,4) x3 at batch 128 on the prepared T91 HDF5 (`make prep`, run first if
   missing): runner train's Solver against a loop written the way common PyTorch
   reimplementations write it (nn.Sequential, torch.optim.SGD, nn.MSELoss, a DataLoader with two
   workers whose Dataset opens the HDF5 file for every sample), and as a fraction of the
   machine's arithmetic peak, measured in the same run with a large fp32 matmul; a
   torch.profiler table of our training step says where its time goes, i.e. what limits it.
2. Super-resolving a 256x256 Y image x3 with FSRCNN, and 320x180 colour video frames with
   FSRCNN-s: runner predict's path (runner/colour.py, runner/tiles.py) against OpenCV's
   dnn_superres with the authors' models ($SR_DATA/reference_models). The 256x256 comparison
   runs the zero-padded layout OpenCV's model computes, with seeded random weights (speed does
   not depend on them), and the shipped unpadded x3 model beside it; the frames, the shipped
   FSRCNN-s (else random weights).
3. `make prep` for T91 x3: the whole process, wall time.

Ours also runs with runner/fast_paths.py disabled ("fast paths off"), to show what they give.
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

import cv2
import h5py
import numpy as np
import torch
import yaml
from torch import nn

from prep import datasets, matlab
from runner import colour, config, deploy, fast_paths, inspect, net, picture, schema, snapshot
from runner.solver import Solver, TrainOptions
from runner.train_log import TrainLog

REPO_ROOT = Path(__file__).resolve().parents[1]
SOLVER = REPO_ROOT / "configs" / "fsrcnn_solver.yaml"
FSRCNN_NET = REPO_ROOT / "configs" / "fsrcnn_net.yaml"
FSRCNN_S_NET = REPO_ROOT / "configs" / "fsrcnn_s_net.yaml"
PREP_CONFIG = REPO_ROOT / "configs" / "prep_x3.yaml"
SHIPPED_FSRCNN = REPO_ROOT / "results" / "models" / "fsrcnn_x3.model"
SHIPPED_FSRCNN_S = REPO_ROOT / "results" / "models" / "fsrcnn_s_x3.model"
DEFAULT_REPORT = REPO_ROOT / "results" / "bench.md"
# OpenCV dnn_superres models: (file in $SR_DATA/reference_models, algorithm, scale)
OPENCV_FSRCNN = ("FSRCNN_x3.pb", "fsrcnn", 3)
OPENCV_FSRCNN_S = ("FSRCNN-small_x3.pb", "fsrcnn", 3)
REFERENCE_WORKERS = 2
# Every core this process may use (the reference loop's DataLoader workers use them all too).
# On a machine that other processes share, `--threads 1`: a second OpenMP thread makes every op
# wait at its barrier whenever the other core is taken (measured: training 5x slower with 2
# threads than with 1 while the load average was 3).
DEFAULT_THREADS = len(os.sched_getaffinity(0))
TARGETS = {"training_ratio": 25.0, "peak_fraction": 0.40, "prediction_ratio": 2.0}
PLAIN = "fast paths off"
SHIPPED_CONTENDER = "ours, the shipped model"


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does; the defaults make `make bench` take a few minutes."""

    repeats: int = 5                # interleaved repetitions of every comparison
    batch: int = 128
    our_iterations: int = 150       # training steps per repetition, ours
    reference_batches: int = 15     # training steps per repetition, the reference loop
    matmul_size: int = 2048
    matmuls: int = 10               # matmuls per repetition of the peak measurement
    image_size: int = 256           # LR side of the prediction image
    frame_size: tuple = (180, 320)  # LR video frame, (height, width)
    predictions: int = 4            # images (frames) per repetition
    prep_runs: int = 3
    reference_workers: int = REFERENCE_WORKERS


def interleaved(contenders, repeats):
    """{name: [rate of each repetition]}: every repetition runs each contender once, in turn,
    so that the machine's load at the time weighs on all of them alike."""
    rates = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, measure in contenders.items():
            rates[name].append(measure())
    return rates


def timed_rate(work, count):
    """count / seconds taken by work()."""
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def without_fast_paths(build):
    """The measurement build() makes, built and run with runner/fast_paths.py disabled: the
    plain layers (F.conv_transpose2d) in PyTorch's default memory layout."""
    with fast_paths.disabled():
        measure = build()

    def plain():
        with fast_paths.disabled():
            return measure()
    return plain


# --------------------------------------------------------------------------- arithmetic peak

class MatmulPeak:
    """GFLOP/s of `count` fp32 size x size matmuls: the most this machine computes."""

    def __init__(self, size, count):
        generator = torch.Generator().manual_seed(0)
        self.a, self.b = (torch.randn(size, size, generator=generator) for _ in range(2))
        self.out = torch.empty(size, size)
        self.size, self.count = size, count
        torch.mm(self.a, self.b, out=self.out)

    def __call__(self):
        def work():
            for _ in range(self.count):
                torch.mm(self.a, self.b, out=self.out)
        return timed_rate(work, self.count * 2 * self.size ** 3) / 1e9


# --------------------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainingCost:
    """Multiply-adds of one training step, per sample. A deconvolution costs one kernel per
    input pixel and channel pair, as the paper counts it (runner/inspect.py)."""

    forward: int
    backward: int         # weight gradients (as many as forward) and input gradients (as
                          # many again, except for the layers that read the data: none there)

    @property
    def flops(self):
        return 2 * (self.forward + self.backward)


def training_cost(net_param, source, input_size):
    """The TrainingCost of a net for one input_size (H, W) sample."""
    summary = inspect.summarize_net(net_param, source, input_size)
    deployed = deploy.deploy_net(net_param, source=source, input_size=tuple(input_size))
    data = deploy.input_blob(deployed, source)
    forward = sum(row.multiply_adds for row in summary.layers)
    reads_data = sum(row.multiply_adds for row, layer in zip(summary.layers, deployed.layer)
                     if data in layer.bottom)
    return TrainingCost(forward, 2 * forward - reads_data)


def with_batch_size(net_param, batch):
    """The net with every HDF5Data layer's batch_size set to `batch`."""
    layers = [replace(layer, hdf5_data_param=replace(layer.hdf5_data_param, batch_size=batch))
              if layer.type == "HDF5Data" else layer for layer in net_param.layer]
    return replace(net_param, layer=layers)


class OurTraining:
    """runner train's Solver (runner/solver.py): samples per second over `iterations` steps.
    Testing, display and snapshots are off; everything else is the solver file's."""

    def __init__(self, setup, batch, iterations, run_folder, warmup=5):
        solver_param = replace(setup.solver, test_interval=0,
                               display=0, snapshot=0, snapshot_after_train=False,
                               snapshot_prefix=str(Path(run_folder) / "bench"))
        setup = replace(setup, solver=solver_param,
                        train_net=with_batch_size(setup.train_net, batch))
        self.solver = Solver(setup, TrainOptions(log=False))
        # step() reports to the log solve() opens; we call step() alone, with a silent one
        self.solver.log = TrainLog(solver_param.snapshot_prefix, 0, 0, enabled=False)
        self.batch, self.iterations = batch, iterations
        self.solver.step(warmup)

    def __call__(self):
        return timed_rate(lambda: self.solver.step(self.iterations),
                          self.iterations * self.batch)


class PerSampleHDF5(torch.utils.data.Dataset):
    """The usual reimplementation's dataset: the HDF5 file opened again for every sample."""

    def __init__(self, path, names=("Input", "Ground")):
        self.path, self.names = str(path), names
        with h5py.File(self.path, "r") as h5:
            self.length = len(h5[names[0]])

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        with h5py.File(self.path, "r") as h5:
            return tuple(h5[name][index] for name in self.names)


def reference_fsrcnn(d=56, s=12, m=4, scale=3):
    """FSRCNN(d, s, m) as an nn.Sequential, with the deconvolution geometry of our net."""
    layers = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
    for _ in range(m):
        layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
    layers += [nn.Conv2d(s, d, 1), nn.PReLU(d), nn.ConvTranspose2d(d, 1, 9, scale, padding=3)]
    return nn.Sequential(*layers)


class ReferenceTraining:
    """The loop common PyTorch reimplementations write: samples per second over `batches`
    steps of a fresh DataLoader (its start-up and first batch untimed)."""

    def __init__(self, h5_path, batch, batches, base_lr, workers=REFERENCE_WORKERS):
        torch.manual_seed(0)
        self.model = reference_fsrcnn()
        deconvolution = self.model[-1]
        others = [p for module in self.model[:-1] for p in module.parameters()]
        self.optimizer = torch.optim.SGD(
            [{"params": others}, {"params": deconvolution.parameters(),
                                  "lr": base_lr * 0.1}],
            lr=base_lr, momentum=0.9)
        self.criterion = nn.MSELoss()
        self.dataset = PerSampleHDF5(h5_path)
        self.batch, self.batches, self.workers = batch, batches, workers

    def step(self, low, high):
        loss = self.criterion(self.model(low), high)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def __call__(self):
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.batch, shuffle=True,
                                             num_workers=self.workers, drop_last=True)
        batches = iter(loader)
        self.step(*next(batches))

        def work():
            for _ in range(self.batches):
                self.step(*next(batches))
        rate = timed_rate(work, self.batches * self.batch)
        del batches      # stops the workers before the next measurement
        return rate


def profile_training(training, iterations=20, rows=12):
    """A torch.profiler table of our training step: the ops that take the time."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        training.solver.step(iterations)
    averages = sorted(profiler.key_averages(), key=lambda event: -event.self_cpu_time_total)
    total = sum(event.self_cpu_time_total for event in averages)
    table = [(event.key, event.count // iterations,
              event.self_cpu_time_total / iterations / 1e3,
              100 * event.self_cpu_time_total / total) for event in averages[:rows]]
    return table, total / iterations / 1e3


# --------------------------------------------------------------------------- prediction

def seeded_model(net_file, path, seed=0):
    """A .model of a net file's deploy form with seeded filler weights (speed does not depend
    on the values)."""
    text = Path(net_file).read_text(encoding="utf-8")
    param = config.parse_config(schema.NetParameter, text, str(net_file))
    module = net.Net(deploy.deploy_net(param), "TEST",
                     generator=torch.Generator().manual_seed(seed))
    blobs = {layer: [blob.detach().numpy() for blob in layer_blobs]
             for layer, layer_blobs in module.blobs_by_layer().items()}
    snapshot.save_model(path, snapshot.ModelFile(blobs, text, str(net_file), 0))
    return Path(path)


def model_file(shipped, net_file, folder):
    """(.model path, what it is): the shipped model when there is one, else random."""
    if Path(shipped).is_file():
        return Path(shipped), str(Path(shipped).relative_to(REPO_ROOT))
    path = seeded_model(net_file, Path(folder) / f"{Path(net_file).stem}.model")
    return path, f"random weights ({Path(net_file).name})"


def opencv_model(file_name, algorithm, scale, root=None):
    """An OpenCV DnnSuperResImpl with a reference model, or None when the file is missing."""
    path = datasets.data_root(root) / "reference_models" / file_name
    if not path.is_file():
        return None
    model = cv2.dnn_superres.DnnSuperResImpl_create()
    model.readModel(str(path))
    model.setModel(algorithm, scale)
    return model


def sample_image(size, root=None):
    """A size x size 8-bit Y image: Set5 butterfly's (256x256) when there, else synthetic."""
    path = datasets.data_root(root) / "Set5" / "butterfly_GT.bmp"
    image = cv2.imread(str(path)) if path.is_file() else None
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (size // 4, size // 4, 3), np.uint8)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    return matlab.y_channel(image, channel_order="bgr")


def sample_frame(height, width, root=None):
    """A height x width 8-bit BGR frame: Set5 baby's when there, else synthetic."""
    path = datasets.data_root(root) / "Set5" / "baby_GT.bmp"
    image = cv2.imread(str(path)) if path.is_file() else None
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (height // 4, width // 4, 3), np.uint8)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def our_prediction(model, image):
    """runner predict's path on one 8-bit image (without the file I/O): the result as it is
    written, 8-bit. Y through the net, chroma by MATLAB bicubic."""
    result = colour.super_resolve_picture(model, picture.from_array(image, "image"))
    return picture.to_array(result)


def our_contender(path, image, count):
    """Images per second of our_prediction with the model in `path`."""
    model = deploy.load_for_inference(path)
    return lambda: timed_rate(lambda: [our_prediction(model, image) for _ in range(count)],
                              count)


def opencv_contender(reference, image, count):
    return lambda: timed_rate(lambda: [reference.upsample(image) for _ in range(count)], count)


# --------------------------------------------------------------------------- prep

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
    """Run `make prep`'s command when the training data is missing."""
    if Path(source_list).is_file():
        return
    print(f"{source_list} is missing: running python -m prep --config {prep_config}")
    subprocess.run([sys.executable, "-m", "prep", "--config", str(prep_config)],
                   cwd=REPO_ROOT, check=True)


# --------------------------------------------------------------------------- the run

@dataclass
class Results:
    threads: int
    sizes: Sizes
    load_before: tuple
    load_after: tuple = None
    training: dict = None           # name -> [samples/s]
    peak: list = None               # [GFLOP/s]
    cost: TrainingCost = None
    input_size: tuple = None        # of one training sample (LR), (H, W)
    solver: str = ""                # the solver file and its update rule, in words
    profile: tuple = None           # (rows, milliseconds per step)
    predictions: list = None        # (task, model description, {name: [per second]}, unit)
    prep: list = None               # [seconds]


def run(sizes=Sizes(), threads=DEFAULT_THREADS, solver_path=SOLVER, data_root=None, log=print):
    """Every measurement, in one process; returns the Results. The solver file's train net
    is ours; the reference loop reads the first .h5 file of its data layer. torch and OpenCV
    run on `threads` threads meanwhile."""
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    try:
        return _measure(sizes, threads, solver_path, data_root, log)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def _measure(sizes, threads, solver_path, data_root, log):
    results = Results(threads, sizes, os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench_") as folder:
        _measure_training(results, solver_path, Path(folder), log)
        _measure_prediction(results, Path(folder), data_root, log)
        results.prep = prep_seconds(sizes.prep_runs, folder)
        if results.prep:
            log(f"make prep (T91 x3): {median(results.prep):.2f} s")
    results.load_after = os.getloadavg()
    return results


def _measure_training(results, solver_path, folder, log):
    sizes = results.sizes
    setup = config.load_solver(solver_path)
    source = setup.net_sources[0][0]
    h5_path = net.train_data_file(setup.train_net, source)
    with h5py.File(h5_path, "r") as h5:
        results.input_size = tuple(h5["Input"].shape[2:])
    results.cost = training_cost(setup.train_net, source, results.input_size)
    shown = Path(solver_path).resolve()
    shown = shown.relative_to(REPO_ROOT) if shown.is_relative_to(REPO_ROOT) else shown
    results.solver = f"{shown} ({setup.solver.type}, momentum {setup.solver.momentum:g})"
    log(f"training on {h5_path}, batch {sizes.batch}, {results.threads} thread(s), "
        f"{sizes.repeats} repetitions")
    ours = OurTraining(setup, sizes.batch, sizes.our_iterations, folder / "run")
    contenders = {
        "runner train": ours,
        f"runner train, {PLAIN}": without_fast_paths(
            lambda: OurTraining(setup, sizes.batch, sizes.our_iterations, folder / "plain")),
        "reference loop": ReferenceTraining(h5_path, sizes.batch, sizes.reference_batches,
                                            setup.solver.base_lr, sizes.reference_workers),
        "matmul": MatmulPeak(sizes.matmul_size, sizes.matmuls)}
    rates = interleaved(contenders, sizes.repeats)
    results.peak = rates.pop("matmul")
    results.training = rates
    results.profile = profile_training(ours)
    log("  " + ", ".join(f"{name} {median(values):,.0f} samples/s"
                         for name, values in rates.items())
        + f", matmul {median(results.peak):,.1f} GFLOP/s")


def _measure_prediction(results, folder, data_root, log):
    sizes = results.sizes
    # the target's comparison computes what OpenCV's model computes: the zero-padded layout
    fsrcnn = seeded_model(FSRCNN_NET, Path(folder) / f"{FSRCNN_NET.stem}.model")
    fsrcnn_name = f"random weights ({FSRCNN_NET.name}, zero-padded as OpenCV's model)"
    fsrcnn_s, fsrcnn_s_name = model_file(SHIPPED_FSRCNN_S, FSRCNN_S_NET, folder)
    frame = sample_frame(*sizes.frame_size, data_root)
    side, (height, width) = sizes.image_size, sizes.frame_size
    tasks = [(f"FSRCNN x3, {side}x{side} -> {3 * side}x{3 * side} Y image", fsrcnn_name,
              fsrcnn, OPENCV_FSRCNN, sample_image(side, data_root), "images/s"),
             (f"FSRCNN-s x3, {width}x{height} -> {3 * width}x{3 * height} colour video "
              "frames", fsrcnn_s_name, fsrcnn_s, OPENCV_FSRCNN_S, frame, "frames/s"),
             ("FSRCNN-s x3, the Y plane of those frames", fsrcnn_s_name, fsrcnn_s,
              OPENCV_FSRCNN_S, matlab.y_channel(frame, channel_order="bgr"), "frames/s")]
    results.predictions = []
    for index, (task, description, path, opencv_file, image, unit) in enumerate(tasks):
        count = sizes.predictions
        contenders = {"ours": our_contender(path, image, count)}
        if index == 0:
            contenders[f"ours, {PLAIN}"] = without_fast_paths(
                lambda: our_contender(path, image, count))
            if SHIPPED_FSRCNN.is_file():
                contenders[SHIPPED_CONTENDER] = our_contender(SHIPPED_FSRCNN, image, count)
        opencv = opencv_model(*opencv_file, root=data_root)
        if opencv is not None:
            contenders["OpenCV dnn_superres"] = opencv_contender(opencv, image, count)
        for contender in contenders.values():
            contender()                            # warm-up
        rates = interleaved(contenders, sizes.repeats)
        results.predictions.append((task, description, rates, unit))
        log(f"{task}: " + ", ".join(f"{name} {median(values):,.1f} {unit}"
                                   for name, values in rates.items()))


# --------------------------------------------------------------------------- the report

def _values(values, digits=0):
    return ", ".join(f"{value:,.{digits}f}" for value in values)


def _ratio_line(what, ratio, target, unit="x"):
    met = "met" if ratio >= target else "**not met**"
    if unit == "%":
        return f"- {what}: **{100 * ratio:.0f}%** (target at least {100 * target:.0f}%: {met})"
    return f"- {what}: **{ratio:.2f}x** (target at least {target:g}x: {met})"


def _category(op_name):
    if "convolution_backward" in op_name:
        return "convolution backward"
    if "conv" in op_name:
        return "convolution forward"
    if "prelu" in op_name:
        return "PReLU forward and backward"
    return "everything else (pixel shuffle, loss, update, batches, autograd)"


def training_section(results):
    sizes, cost = results.sizes, results.cost
    height, width = results.input_size
    ours, reference = (median(results.training[name])
                       for name in ("runner train", "reference loop"))
    peak = median(results.peak)
    gflops = {name: median(values) * cost.flops / 1e9
              for name, values in results.training.items()}
    lines = [f"## Training FSRCNN(56,12,4) x3, batch {sizes.batch}, T91 (`make prep`)", "",
             "| | samples/s | iterations/s | GFLOP/s | of the matmul peak | each repetition |",
             "|---|---:|---:|---:|---:|---|"]
    for name, values in results.training.items():
        lines.append(f"| {name} | {median(values):,.0f} | {median(values) / sizes.batch:,.1f} "
                     f"| {gflops[name]:,.1f} | {100 * gflops[name] / peak:.1f}% | "
                     f"{_values(values)} |")
    lines += [f"| fp32 matmul {sizes.matmul_size}x{sizes.matmul_size} (the peak) | | | "
              f"{peak:,.1f} | 100% | {_values(results.peak, 1)} |", "",
              _ratio_line("runner train / reference loop", ours / reference,
                          TARGETS["training_ratio"]),
              _ratio_line("runner train / matmul peak", gflops["runner train"] / peak,
                          TARGETS["peak_fraction"], "%"),
              f"- runner train / runner train with the fast paths off (F.conv_transpose2d, "
              f"NCHW memory): **{ours / median(results.training[f'runner train, {PLAIN}']):.2f}"
              "x**", "",
              f"- runner train: the Solver of runner/solver.py on {results.solver}, batches "
              "drawn from the HDF5 data held in memory; testing, display and snapshots off.",
              "- reference loop: nn.Sequential FSRCNN with nn.ConvTranspose2d, torch.optim.SGD "
              "(the solver file's base_lr, momentum 0.9, deconvolution at 0.1x the rate), "
              "nn.MSELoss, a DataLoader "
              f"(batch {sizes.batch}, shuffle, {sizes.reference_workers} workers) whose Dataset "
              "opens the HDF5 file for every sample: how common PyTorch reimplementations "
              "(e.g. yjn870/FSRCNN-pytorch) train.",
              f"- FLOPs per sample and step: {cost.flops:,} = 2 x ({cost.forward:,} forward "
              f"+ {cost.backward:,} backward multiply-adds) for a {height}x{width} LR sample; "
              f"forward: {cost.forward / (height * width):,.0f} per LR pixel, the "
              "deconvolution counted once per LR pixel and channel pair (56 x 81 for FSRCNN), as "
              "the paper counts; backward: the weight gradients plus the input gradients, none "
              "for the input of the layer that reads the data.", ""]
    lines += profile_section(results, gflops["runner train"], peak)
    return lines


def profile_section(results, gflops, peak):
    rows, step_ms = results.profile
    sizes, cost = results.sizes, results.cost
    lines = ["### Where a training step's time goes (torch.profiler)", "",
             f"One step took {step_ms:.1f} ms under the profiler. The ops with the most self "
             "time, per step:", "",
             "| op | calls | ms | share |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {calls} | {ms:.2f} | {share:.1f}% |" for name, calls, ms, share in rows]
    shares = {}
    for name, _, ms, share in rows:
        shares[_category(name)] = shares.get(_category(name), 0.0) + ms
    forward_ms = shares.get("convolution forward", 0.0)
    backward_ms = shares.get("convolution backward", 0.0)
    lines += ["", "By kind (the ops above):", ""]
    lines += [f"- {kind}: {ms:.2f} ms ({100 * ms / step_ms:.0f}%)"
              for kind, ms in sorted(shares.items(), key=lambda item: -item[1])]
    if forward_ms and backward_ms:
        forward_rate = 2 * cost.forward * sizes.batch / forward_ms / 1e6
        backward_rate = 2 * cost.backward * sizes.batch / backward_ms / 1e6
        lines += ["", f"The convolutions themselves run at {forward_rate:,.0f} GFLOP/s forward "
                  f"and {backward_rate:,.0f} GFLOP/s backward ({100 * forward_rate / peak:.0f}% "
                  f"and {100 * backward_rate / peak:.0f}% of the matmul peak of "
                  f"{peak:,.0f} GFLOP/s)."]
    if gflops / peak < TARGETS["peak_fraction"]:
        lines += ["", "What limits it: FSRCNN's layers are thin (1 to 56 channels, 12 in the "
                  "mapping layers) and its training samples tiny (7x7). Every convolution is a "
                  "small matrix product (one dimension 12 or 56, the other 128 x 49 pixels) "
                  "that oneDNN cannot feed at the rate of a large square matmul, and each layer's "
                  "PReLU, forward and backward, is a separate pass over the activations that "
                  "does one or two operations per value: memory-bound work that counts for no "
                  "FLOPs. A larger batch would not change the shapes' thinness; fusing PReLU "
                  "into the convolutions (torch.compile) gained about 10% in our trial at the "
                  "cost of a ~16 s compile, so it is not used."]
    return lines + [""]


def prediction_section(results):
    lines = ["## Super-resolving", "",
             "| task | weights | ours | OpenCV dnn_superres | ours / OpenCV |",
             "|---|---|---:|---:|---:|"]
    notes = []
    for task, description, rates, unit in results.predictions:
        ours = median(rates["ours"])
        theirs = rates.get("OpenCV dnn_superres")
        ratio = f"**{ours / median(theirs):.2f}x**" if theirs else "n/a"
        shown = (f"{median(theirs):,.1f} {unit} ({1e3 / median(theirs):.1f} ms)" if theirs
                 else "model file missing")
        lines.append(f"| {task} | {description} | {ours:,.1f} {unit} ({1e3 / ours:.1f} ms) | "
                     f"{shown} | {ratio} |")
        notes += [f"  - {task}, {name}: {_values(values, 1)} {unit}"
                  for name, values in rates.items()]
    task, _, rates, unit = results.predictions[0]
    lines.append("")
    if "OpenCV dnn_superres" in rates:
        lines.append(_ratio_line(f"{task}, ours / OpenCV", median(rates["ours"]) /
                                 median(rates["OpenCV dnn_superres"]),
                                 TARGETS["prediction_ratio"]))
    if SHIPPED_CONTENDER in rates and "OpenCV dnn_superres" in rates:
        shipped, theirs = median(rates[SHIPPED_CONTENDER]), median(rates["OpenCV dnn_superres"])
        lines.append(f"- The same image through the shipped "
                     f"{SHIPPED_FSRCNN.relative_to(REPO_ROOT)}, whose layers are unpadded (the "
                     "image's edge is repeated around it, so they compute a border more): "
                     f"{shipped:,.1f} {unit} ({1e3 / shipped:.1f} ms), "
                     f"**{shipped / theirs:.2f}x** OpenCV.")
    plain = median(rates[f"ours, {PLAIN}"])
    lines += [f"- The same with the fast paths off (F.conv_transpose2d, F.conv2d's own choice of "
              f"kernel, NCHW memory): "
              f"{plain:,.1f} {unit} ({1e3 / plain:.1f} ms); the fast paths make it "
              f"**{median(rates['ours']) / plain:.1f}x** faster.", ""]
    if len(results.predictions) > 2:
        colour_ms, y_ms = (1e3 / median(rates["ours"]) for _, _, rates, _
                           in results.predictions[1:3])
        lines += [f"- Colour frames: of our {colour_ms:.1f} ms per frame, {y_ms:.1f} ms is the "
                  "Y plane's path (the row below it); the rest is the colour handling, MATLAB's "
                  "rgb2ycbcr, bicubic imresize of Cb and Cr and ycbcr2rgb in float32 "
                  "(prep/matlab.py: cv2.transform, the x3 bicubic as 3 polyphase cv2.filter2D "
                  "per axis), where OpenCV converts with cv2.cvtColor and resizes chroma with "
                  "cv2.resize."]
    lines += ["- ours: runner predict's path without the file I/O: an 8-bit image in, MATLAB "
              "rgb2ycbcr Y through the net (runner/tiles.py), chroma by MATLAB bicubic "
              "imresize, the 8-bit result out. OpenCV: `upsample` of DnnSuperResImpl with the "
              "authors' TensorFlow models ($SR_DATA/reference_models), which also converts "
              "colour and upscales chroma (cv2.resize) itself.",
              "- Both compute the real 9x9 deconvolution in fp32; ours as the equivalent "
              "sub-pixel convolution, in channels-last memory, every convolution by oneDNN "
              "(runner/fast_paths.py). Both run in this process, under its glibc settings and "
              "huge pages (runner/fast_paths.py), which speed OpenCV up as much as ours.",
              "- Each repetition:", *notes, ""]
    return lines


def report(results):
    sizes = results.sizes
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = ["# Benchmark (`make bench`)", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu}, {os.cpu_count()} cores; torch "
             f"{torch.__version__}, OpenCV {cv2.__version__}. Threads set explicitly: "
             f"`torch.set_num_threads({results.threads})` and `cv2.setNumThreads"
             f"({results.threads})` (`--threads`), the same for every contender. Load "
             f"average before and after: {results.load_before[0]:.1f}, "
             f"{results.load_after[0]:.1f}: other processes share this machine, and while they "
             "hold a core a second OpenMP thread stalls every op at its barrier (training ran "
             "5x slower with 2 threads than with 1 at a load of 3): `--threads 1` there.", "",
             f"Every comparison ran interleaved in one process, {sizes.repeats} repetitions; "
             "the tables give medians, and each repetition's value.", ""]
    lines += training_section(results)
    lines += prediction_section(results)
    if results.prep:
        lines += ["## Preparing data (`make prep`, T91 x3)", "",
                  f"`python -m prep --config configs/prep_x3.yaml`, the whole process: "
                  f"**{median(results.prep):.2f} s** (median of {len(results.prep)} runs: "
                  f"{_values(results.prep, 2)} s).", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m runner.bench", description=__doc__
                                     .splitlines()[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="torch and OpenCV threads (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=Sizes.repeats,
                        help="interleaved repetitions (default: %(default)s)")
    parser.add_argument("--out", default=str(DEFAULT_REPORT),
                        help="the Markdown report (default: results/bench.md)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    os.chdir(REPO_ROOT)         # the solver and net files name their data relative to it
    setup = config.load_solver(SOLVER)
    layer = next(layer for layer in net.phase_layers(setup.train_net, "TRAIN")
                 if layer.type == "HDF5Data")
    ensure_prepared(layer.hdf5_data_param.source)
    results = run(Sizes(repeats=args.repeats), args.threads)
    text = report(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    print(f"\n{text}\nwrote {out}")


if __name__ == "__main__":
    main()
