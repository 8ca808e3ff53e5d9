"""Training FSRCNN(56,12,4) x3: runner train's Solver against the loop common PyTorch
reimplementations write, as a fraction of the machine's matmul peak, and where a step's time
goes."""
import math
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median

import h5py
import torch
from torch import nn

from runner import inspect
from runner.bench.prep_time import solver_source
from runner.bench.measure import (
    PLAIN,
    REPO_ROOT,
    TARGETS,
    MatmulPeak,
    interleaved,
    ratio_line,
    timed_rate,
    values_text,
    without_fast_paths,
)
from runner.config import loading
from runner.infer import deploy
from runner.net import feeds
from runner.train.solver import Solver, TrainOptions
from runner.train.train_log import TrainLog

REFERENCE_WORKERS = 2
SHARDED = "runner train, sharded files"
RECIPE = "runner train, the recipe's shapes"


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


def with_data_param(net_param, **changes):
    """The net with `changes` (batch_size=128, source=...) made to every HDF5Data layer."""
    layers = [replace(layer, hdf5_data_param=replace(layer.hdf5_data_param, **changes))
              if layer.type == "HDF5Data" else layer for layer in net_param.layer]
    return replace(net_param, layer=layers)


def shard_copy(h5_path, folder, files, names=("Input", "Ground")):
    """The pairs of one HDF5 file split in order into `files` files (train1.h5, ...) in
    `folder`, as `max_pairs_per_file` writes them; returns the source list naming them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(h5_path, "r") as h5:
        datasets = {name: h5[name][()] for name in names}
    count = len(datasets[names[0]])
    per_file = -(-count // files)
    paths = []
    for number, start in enumerate(range(0, count, per_file), 1):
        paths.append(folder / f"train{number}.h5")
        with h5py.File(paths[-1], "w") as h5:
            for name, values in datasets.items():
                h5.create_dataset(name, data=values[start:start + per_file])
    source = folder / "train.txt"
    source.write_text("".join(f"{path}\n" for path in paths))
    return source


class OurTraining:
    """runner train's Solver (runner/train/solver.py): samples per second over `iterations` steps.
    Testing, display and snapshots are off; everything else is the solver file's."""

    def __init__(self, setup, batch, iterations, run_folder, warmup=5, source=None,
                 device=None):
        solver_param = replace(setup.solver, test_interval=0,
                               display=0, snapshot=0, snapshot_after_train=False,
                               snapshot_prefix=str(Path(run_folder) / "bench"))
        data = {"batch_size": batch} | ({"source": str(source)} if source else {})
        setup = replace(setup, solver=solver_param,
                        train_net=with_data_param(setup.train_net, **data))
        self.solver = Solver(setup, TrainOptions(device=device, log=False))
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
    """FSRCNN(d, s, m) as yjn870/FSRCNN-pytorch builds it: padded convolutions and PReLUs, an
    nn.ConvTranspose2d last, initialised as theirs is (convolutions normal with std
    sqrt(2 / (outputs * kernel area)), the deconvolution N(0, 0.001), biases zero). The
    deconvolution's geometry is our net's (pad 3), under which a 7x7 LR sample gives the 21x21
    label our data aligns with it; theirs (pad 4, output_padding 2) gives the same size one
    pixel shifted."""
    layers = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
    for _ in range(m):
        layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
    layers += [nn.Conv2d(s, d, 1), nn.PReLU(d), nn.ConvTranspose2d(d, 1, 9, scale, padding=3)]
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                layer.weight.normal_(0.0, math.sqrt(2 / (layer.out_channels
                                                         * layer.kernel_size[0]
                                                         * layer.kernel_size[1])))
                layer.bias.zero_()
        layers[-1].weight.normal_(0.0, 0.001)
        layers[-1].bias.zero_()
    return nn.Sequential(*layers)


def sgd_momentum(parameter_groups, base_lr):
    """The tutorial's update rule (what `make bench`'s reference row uses): SGD, momentum
    0.9."""
    return torch.optim.SGD(parameter_groups, lr=base_lr, momentum=0.9)


def adam(parameter_groups, base_lr):
    """yjn870/FSRCNN-pytorch's update rule: Adam with torch's defaults."""
    return torch.optim.Adam(parameter_groups, lr=base_lr)


class ReferenceTraining:
    """The loop common PyTorch reimplementations write: the reference FSRCNN, `update_rule`
    with the deconvolution at a tenth of `base_lr`, nn.MSELoss, a DataLoader over the .h5
    files `h5_paths` that opens a file for every sample, each batch moved to `device`. Called,
    it gives samples per second over `batches` steps of a fresh DataLoader (its start-up and
    first batch untimed)."""

    def __init__(self, h5_paths, batch, base_lr, batches=0, workers=REFERENCE_WORKERS,
                 update_rule=sgd_momentum, seed=0, device="cpu"):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.model = reference_fsrcnn().to(self.device)
        deconvolution = self.model[-1]
        others = [p for module in self.model[:-1] for p in module.parameters()]
        self.optimizer = update_rule(
            [{"params": others}, {"params": deconvolution.parameters(), "lr": base_lr * 0.1}],
            base_lr)
        self.criterion = nn.MSELoss()
        self.dataset = torch.utils.data.ConcatDataset([PerSampleHDF5(path) for path in h5_paths])
        self.batch, self.batches, self.workers = batch, batches, workers

    def loader(self):
        """One epoch's batches, shuffled."""
        return torch.utils.data.DataLoader(self.dataset, batch_size=self.batch, shuffle=True,
                                           num_workers=self.workers, drop_last=True)

    def step(self, low, high):
        low, high = low.to(self.device), high.to(self.device)
        loss = self.criterion(self.model(low), high)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def __call__(self):
        batches = iter(self.loader())
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


def sample_size(setup):
    """(path of the first training .h5 file, (H, W) of one LR sample in it) of a solver."""
    h5_path = feeds.train_data_file(setup.train_net, setup.net_sources[0][0])
    with h5py.File(h5_path, "r") as h5:
        return h5_path, tuple(h5["Input"].shape[2:])


def recipe_training(recipe_path, iterations, folder, device=None):
    """(OurTraining of the time-to-quality recipe's solver at its own batch on `device`, its
    TrainingCost, its batch, its sample size): the shapes issue 15's throughput goal is set on."""
    setup = loading.load_solver(recipe_path)
    _, input_size = sample_size(setup)
    batch = solver_source(setup)[1].hdf5_data_param.batch_size
    cost = training_cost(setup.train_net, setup.net_sources[0][0], input_size)
    return OurTraining(setup, batch, iterations, folder, device=device), cost, batch, input_size


def measure_training(results, solver_path, folder, log, recipe_path=None):
    sizes = results.sizes
    setup = loading.load_solver(solver_path)
    source = setup.net_sources[0][0]
    h5_path, results.input_size = sample_size(setup)
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
        SHARDED: OurTraining(setup, sizes.batch, sizes.our_iterations, folder / "sharded",
                             source=shard_copy(h5_path, folder / "shards", sizes.shards)),
        "reference loop": ReferenceTraining([h5_path], sizes.batch, setup.solver.base_lr,
                                            sizes.reference_batches, sizes.reference_workers),
        "matmul": MatmulPeak(sizes.matmul_size, sizes.matmuls)}
    results.costs = dict.fromkeys(contenders, results.cost)
    if recipe_path:
        contenders[RECIPE], results.costs[RECIPE], batch, input_size = recipe_training(
            recipe_path, sizes.recipe_iterations, folder / "recipe")
        results.recipe = f"{Path(recipe_path).name}, batch {batch}, {input_size[0]}x{input_size[1]}"
    rates = interleaved(contenders, sizes.repeats)
    results.peak = rates.pop("matmul")
    results.training = rates
    results.profile = profile_training(ours)
    log("  " + ", ".join(f"{name} {median(values):,.0f} samples/s"
                         for name, values in rates.items())
        + f", matmul {median(results.peak):,.1f} GFLOP/s")


def category(op_name):
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
    gflops = {name: median(values) * results.costs[name].flops / 1e9
              for name, values in results.training.items()}
    lines = [f"## Training FSRCNN(56,12,4) x3, batch {sizes.batch}, T91 (`make prep`)", "",
             "| | samples/s | iterations/s | GFLOP/s | of the matmul peak | each repetition |",
             "|---|---:|---:|---:|---:|---|"]
    for name, values in results.training.items():
        lines.append(f"| {name} | {median(values):,.0f} | {median(values) / sizes.batch:,.1f} "
                     f"| {gflops[name]:,.1f} | {100 * gflops[name] / peak:.1f}% | "
                     f"{values_text(values)} |")
    lines += [f"| fp32 matmul {sizes.matmul_size}x{sizes.matmul_size} (the peak) | | | "
              f"{peak:,.1f} | 100% | {values_text(results.peak, 1)} |", "",
              ratio_line("runner train / reference loop", ours / reference,
                          TARGETS["training_ratio"]),
              ratio_line("runner train / matmul peak", gflops["runner train"] / peak,
                          TARGETS["peak_fraction"], "%"),
              ratio_line(f"{SHARDED} / runner train (the same pairs in {sizes.shards} files "
                         "read one at a time / one file in memory)",
                         median(results.training[SHARDED]) / ours, TARGETS["sharded_ratio"]),
              *([ratio_line(f"{RECIPE} / matmul peak", gflops[RECIPE] / peak,
                            TARGETS["recipe_peak_fraction"], "%")] if RECIPE in gflops else []),
              f"- runner train / runner train with the fast paths off (F.conv_transpose2d, "
              f"NCHW memory): **{ours / median(results.training[f'runner train, {PLAIN}']):.2f}"
              "x**", "",
              f"- runner train: the Solver of runner/train/solver.py on {results.solver}, batches "
              "drawn from the HDF5 data held in memory; testing, display and snapshots off.",
              f"- {SHARDED}: the same, the training file split in order into {sizes.shards} "
              "files (as `max_pairs_per_file` writes them), read one at a time as Caffe reads "
              "them, the next file read by a background thread.",
              *([f"- {RECIPE}: the same Solver on the time-to-quality recipe ({results.recipe} "
                 f"LR samples: {results.costs[RECIPE].flops:,} FLOPs each), the shapes issue "
                 "15's throughput goal is set on; its samples/s are not comparable with the "
                 "other rows', its GFLOP/s are."] if RECIPE in gflops else []),
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
        shares[category(name)] = shares.get(category(name), 0.0) + ms
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
