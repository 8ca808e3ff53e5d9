"""How a comparison is measured and stated: contenders interleaved, rates timed, the machine's
fp32 matmul peak, and ratio lines against the targets."""
import compileall
import os
import platform
import time
from pathlib import Path

import torch

from runner.net import fast_paths

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every core this process may use (the reference loop's DataLoader workers use them all too).
# On a machine that other processes share, `--threads 1`: a second OpenMP thread makes every op
# wait at its barrier whenever the other core is taken (measured: training 5x slower with 2
# threads than with 1 while the load average was 3).
DEFAULT_THREADS = len(os.sched_getaffinity(0))
TARGETS = {"training_ratio": 25.0, "peak_fraction": 0.40, "recipe_peak_fraction": 0.50,
           "prediction_ratio": 2.0, "sharded_ratio": 0.90}
PLAIN = "fast paths off"


def compile_sources():
    """Write the bytecode of srcaffe's packages (`runner`, `prep`), as a user's second run finds
    it: Python writes it when a module is first imported, except where PYTHONDONTWRITEBYTECODE
    is set (this sandbox, some CI images), where every process we time would compile again
    each module it imports. A 1080p photo's whole process: 1.67 against 1.77 s (medians of 7,
    interleaved). The competitors' modules come compiled from their wheels."""
    for package in ("runner", "prep"):
        compileall.compile_dir(REPO_ROOT / package, quiet=1)


def cpu_name():
    """The processor's model name (/proc/cpuinfo), else what the platform module knows."""
    try:
        return next(line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def interleaved(contenders, repeats):
    """{name: [rate of each repetition]}: every repetition runs each contender once, in turn,
    so that the machine's load at the time weighs on all of them alike."""
    rates = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, measure in contenders.items():
            rates[name].append(measure())
    return rates


def timed_rate(work, count):
    """count / seconds taken by work(), to the end of the GPU work it queued where it uses
    CUDA (which runs behind the Python that queues it)."""
    synchronize()
    started = time.perf_counter()
    work()
    synchronize()
    return count / (time.perf_counter() - started)


def synchronize():
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def without_fast_paths(build):
    """The measurement build() makes, built and run with runner/net/fast_paths.py disabled: the
    plain layers (F.conv_transpose2d) in PyTorch's default memory layout."""
    with fast_paths.disabled():
        measure = build()

    def plain():
        with fast_paths.disabled():
            return measure()
    return plain


class MatmulPeak:
    """GFLOP/s of `count` fp32 size x size matmuls: the most a device computes (in IEEE fp32
    on CUDA, as we train there: runner/net/devices.py)."""

    def __init__(self, size, count, device="cpu"):
        generator = torch.Generator().manual_seed(0)
        self.a, self.b = (torch.randn(size, size, generator=generator).to(device)
                          for _ in range(2))
        self.out = torch.empty(size, size, device=device)
        self.size, self.count = size, count
        torch.mm(self.a, self.b, out=self.out)

    def __call__(self):
        def work():
            for _ in range(self.count):
                torch.mm(self.a, self.b, out=self.out)
        return timed_rate(work, self.count * 2 * self.size ** 3) / 1e9


def values_text(values, digits=0):
    return ", ".join(f"{value:,.{digits}f}" for value in values)


def ratio_line(what, ratio, target, unit="x"):
    met = "met" if ratio >= target else "**not met**"
    if unit == "%":
        return f"- {what}: **{100 * ratio:.0f}%** (target at least {100 * target:.0f}%: {met})"
    return f"- {what}: **{ratio:.2f}x** (target at least {target:g}x: {met})"
