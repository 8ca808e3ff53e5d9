"""The CUDA path, where this machine has a GPU (skipped elsewhere): FSRCNN(56,12,4) trained on
CUDA retraces the CPU's losses from the same seed, resumes exactly, runs data-parallel over NCCL,
and predicts and scores as the CPU does. Each of these paths runs on the CPU in the other
modules (test_solver, test_distributed, test_predict, test_evaluate); what a CUDA device sets
is checked here on any machine."""
import numpy as np
import pytest
import torch

from helpers import ROOT, read_csv, write_h5
from runner.config import loading
from runner.files import snapshot
from runner.imaging import datasets, images
from runner.net import devices
from runner.score import evaluate
from runner.train.solver import TrainOptions, train
from test_distributed import max_difference, records, run_to_end

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

GPU = "cuda"
ITERATIONS = 100
SHIPPED = ROOT / "results" / "models" / "fsrcnn_x3.model"
# fp32 on both, summed in other orders. The CPU alone, on this run, parts from itself as far:
# with the fast paths off (NCHW) its losses move by up to 1.2e-3 (relative) and its weights at
# 100 by 5.5e-4; on 2 threads instead of 1, 7.7e-4 and 4.7e-4
LOSS_TOLERANCE = 2e-3
WEIGHT_TOLERANCE = 1e-3


def fsrcnn_solver(folder, prefix):
    """configs/fsrcnn_solver.yaml (the tutorial's SGD) on its net, over 4,096 synthetic 7x7 ->
    21x21 pairs: a loss every iteration, snapshots at 50 and 100."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, count, seed in (("train", 4096, 1), ("test", 256, 2)):
        (folder / f"{name}.txt").write_text(f"{write_h5(folder / f'{name}.h5', count, seed)}\n")
    net = (ROOT / "configs" / "fsrcnn_net.yaml").read_text(encoding="utf-8")
    (folder / "net.yaml").write_text(
        net.replace("results/data/x3/train.txt", str(folder / "train.txt"))
        .replace("results/data/x3/test.txt", str(folder / "test.txt")))
    solver = (ROOT / "configs" / "fsrcnn_solver.yaml").read_text(encoding="utf-8")
    changes = {"net": folder / "net.yaml", "test_iter": 2, "test_interval": 50, "display": 1,
               "max_iter": ITERATIONS, "snapshot": 50, "snapshot_prefix": folder / prefix,
               "random_seed": 3}
    lines = [line for line in solver.splitlines()
             if line.split(":")[0].strip() not in changes]
    path = folder / "solver.yaml"
    path.write_text("\n".join(lines + [f"{key}: {value}" for key, value in changes.items()])
                    + "\n")
    return path


def losses(prefix):
    """{iteration: training loss} of a run's log."""
    return {record["iteration"]: record["loss"] for record in records(prefix)
            if "loss" in record}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 100 iterations on the CPU and on CUDA: {device: run prefix}."""
    folder = tmp_path_factory.mktemp("runs")
    prefixes = {}
    for device in ("cpu", GPU):
        solver_file = fsrcnn_solver(folder, f"{device}/fsrcnn")
        train(loading.load_solver(solver_file), TrainOptions(device=device, log=True))
        prefixes[device] = folder / device / "fsrcnn"
    return folder, prefixes


@needs_cuda
def test_the_first_100_iterations_on_cuda_match_the_cpu(runs):
    _, prefixes = runs
    cpu, cuda = (losses(prefixes[device]) for device in ("cpu", GPU))
    assert sorted(cpu) == sorted(cuda) == list(range(ITERATIONS + 1))
    relative = max(abs(cuda[i] - cpu[i]) / abs(cpu[i]) for i in cpu)
    weights = max_difference(*(snapshot.snapshot_paths(prefixes[device], ITERATIONS)[0]
                               for device in ("cpu", GPU)))
    print(f"losses 0..{ITERATIONS}: CPU {cpu[0]:.6g} .. {cpu[ITERATIONS]:.6g}, CUDA "
          f"{cuda[0]:.6g} .. {cuda[ITERATIONS]:.6g}; largest relative difference "
          f"{relative:.3g}; weights at {ITERATIONS}: max |CUDA - CPU| {weights:.3g}")
    assert cpu[ITERATIONS] < cpu[0]
    assert relative <= LOSS_TOLERANCE
    assert weights <= WEIGHT_TOLERANCE


@needs_cuda
def test_resume_on_cuda_is_exact(runs):
    folder, prefixes = runs
    state_path = snapshot.snapshot_paths(prefixes[GPU], 50)[1]
    setup = loading.load_solver(fsrcnn_solver(folder, "resumed/fsrcnn"))
    resumed = train(setup, TrainOptions(device=GPU, log=True),
                    resume_from=(state_path, snapshot.load_solverstate(state_path)))
    assert resumed.iteration == ITERATIONS
    straight, again = losses(prefixes[GPU]), losses(folder / "resumed" / "fsrcnn")
    assert set(range(51, ITERATIONS + 1)) <= set(again)
    assert all(again[i] == straight[i] for i in again), [(i, straight[i], again[i])
                                                          for i in again]
    difference = max_difference(snapshot.snapshot_paths(prefixes[GPU], ITERATIONS)[0],
                                snapshot.snapshot_paths(folder / "resumed" / "fsrcnn",
                                                        ITERATIONS)[0])
    print(f"resumed at 50 on CUDA: losses 51..100 equal bit for bit, weights at 100 differ by "
          f"{difference:.3g}")
    assert difference == 0


@needs_cuda
def test_procs_1_trains_over_nccl(runs):
    folder, prefixes = runs
    result = run_to_end("train", "--solver", fsrcnn_solver(folder, "nccl/fsrcnn"),
                        "--device", GPU, "--procs", "1")
    assert result.returncode == 0, result.stderr
    assert "Solving FSRCNN-56_12_4 on cuda:0, 1 process over nccl" in result.stdout
    difference = max_difference(snapshot.snapshot_paths(prefixes[GPU], ITERATIONS)[0],
                                snapshot.snapshot_paths(folder / "nccl" / "fsrcnn",
                                                        ITERATIONS)[0])
    print(f"--procs 1 over NCCL against no launcher: max difference {difference:.3g}")
    assert difference <= WEIGHT_TOLERANCE


@needs_cuda
def test_predict_on_cuda_writes_the_cpus_image(tmp_path):
    image_path = datasets.set_images(["Set5"])[0][1]
    written = {}
    for device in ("cpu", GPU):
        result = run_to_end("predict", image_path, "--model", SHIPPED, "--device", device,
                            "--engine", "torch", "--out", tmp_path / device)
        assert result.returncode == 0, result.stderr
        (written[device],) = (tmp_path / device).iterdir()
    cpu, cuda = (images.read_image(written[device]).astype(np.int16)
                 for device in ("cpu", GPU))
    difference = np.abs(cuda - cpu)
    print(f"{image_path.name} x3: {np.count_nonzero(difference)} of {difference.size} values "
          f"differ (by at most {difference.max()})")
    assert cuda.shape == cpu.shape
    assert difference.max() <= 1 and np.count_nonzero(difference) <= difference.size // 1000


@needs_cuda
def test_runner_test_on_cuda_scores_as_the_cpu(tmp_path):
    scores = {}
    for device in ("cpu", GPU):
        result = run_to_end("test", "--model", SHIPPED, "--sets", "Set5", "--device", device,
                            "--out", tmp_path / device)
        assert result.returncode == 0, result.stderr
        scores[device] = {(row["image"], row["method"]): float(row["psnr"])
                          for report in (tmp_path / device).glob("*.csv")
                          for row in read_csv(report)}
    model = [key for key in scores["cpu"] if key[1] != evaluate.BICUBIC]
    print("Set5 x3 PSNR, CUDA - CPU: " + ", ".join(
        f"{image} {scores[GPU][image, method] - scores['cpu'][image, method]:+.2g}"
        for image, method in model))
    assert scores[GPU].keys() == scores["cpu"].keys() and len(model) == 5
    assert all(abs(scores[GPU][key] - psnr) <= 1e-3 for key, psnr in scores["cpu"].items())


def test_cuda_arithmetic_is_fp32_and_deterministic():
    flags = [(torch.backends.cuda.matmul, "fp32_precision"),
             (torch.backends.cudnn.conv, "fp32_precision"),
             (torch.backends.cudnn, "deterministic"), (torch.backends.cudnn, "benchmark")]
    before = [getattr(owner, name) for owner, name in flags]
    try:
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        torch.backends.cudnn.benchmark = True
        devices.exact_cuda_arithmetic()
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        for (owner, name), value in zip(flags, before):
            setattr(owner, name, value)
