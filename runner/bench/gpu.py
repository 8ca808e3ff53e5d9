"""On a CUDA device, where the machine has one: training samples/s and milliseconds per image,
ours beside the reference loop and model on the same GPU, and as a fraction of the GPU's fp32
matmul peak. We compute in IEEE fp32 there, as Caffe does (runner/net/devices.py); so does
everything measured beside us."""
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np
import torch

from runner.bench.measure import MatmulPeak, interleaved, timed_rate, values_text
from runner.bench.prediction import (
    FSRCNN_NET,
    our_contender,
    sample_frame,
    sample_image,
    seeded_model,
)
from runner.bench.training import (
    OurTraining,
    ReferenceTraining,
    recipe_training,
    reference_fsrcnn,
    sample_size,
    training_cost,
)
from runner.config import loading
from runner.net import devices

DEVICE = "cuda"
# yjn870/FSRCNN-pytorch's README trains with 8 DataLoader workers
REFERENCE_WORKERS = 8
OURS = "runner train"
RECIPE = "runner train, the recipe's shapes"
REFERENCE = f"reference loop ({REFERENCE_WORKERS} workers)"


@dataclass(frozen=True)
class GpuSizes:
    iterations: int = 300           # our training steps per repetition
    recipe_iterations: int = 300
    reference_batches: int = 40
    matmul_size: int = 8192
    matmuls: int = 20
    predictions: int = 20           # images per repetition
    photo_size: tuple = (360, 640)  # LR colour photo (height, width): a 1080p result


@dataclass
class GpuResults:
    device: str
    sizes: GpuSizes
    training: dict                  # name -> [samples/s]
    flops: dict                     # name -> FLOPs of one of its samples
    recipe: str                     # the recipe row's batch and sample size, in words
    peak: list                      # [GFLOP/s]
    predictions: list               # (task, {name: [images/s]})


def reference_y_prediction(model, image):
    """yjn870/FSRCNN-pytorch's test.py on an 8-bit Y plane: /255 to a float tensor on the
    model's device, the net, clamp to [0, 1], x255 back to the host, rounded to 8 bits."""
    device = next(model.parameters()).device
    with torch.no_grad():
        low = torch.from_numpy(image.astype(np.float32) / 255.0).to(device)[None, None]
        high = model(low).clamp(0.0, 1.0).mul(255.0).cpu().numpy()[0, 0]
    return np.round(high).astype(np.uint8)


def reference_contender(image, count):
    model = reference_fsrcnn().to(DEVICE).eval()
    return lambda: timed_rate(lambda: [reference_y_prediction(model, image)
                                       for _ in range(count)], count)


def measure_gpu(threads, solver_path, recipe_path, folder, data_root, log, sizes=GpuSizes(),
                repeats=5, batch=128):
    """GpuResults, or None where no CUDA device is here."""
    if not torch.cuda.is_available():
        log("no CUDA device: the GPU rows are left out")
        return None
    devices.torch_device(DEVICE)
    folder = Path(folder)
    setup = loading.load_solver(solver_path)
    h5_path, input_size = sample_size(setup)
    cost = training_cost(setup.train_net, setup.net_sources[0][0], input_size)
    contenders = {
        OURS: OurTraining(setup, batch, sizes.iterations, folder / "gpu_run", device=DEVICE),
        REFERENCE: ReferenceTraining([h5_path], batch, setup.solver.base_lr,
                                     sizes.reference_batches, REFERENCE_WORKERS, device=DEVICE),
        "matmul": MatmulPeak(sizes.matmul_size, sizes.matmuls, DEVICE)}
    flops = dict.fromkeys(contenders, cost.flops)
    recipe = ""
    if recipe_path:
        contenders[RECIPE], recipe_cost, recipe_batch, recipe_input = recipe_training(
            recipe_path, sizes.recipe_iterations, folder / "gpu_recipe", DEVICE)
        flops[RECIPE] = recipe_cost.flops
        recipe = f"batch {recipe_batch}, {recipe_input[0]}x{recipe_input[1]} LR samples"
    log(f"training on {torch.cuda.get_device_name()}, {repeats} repetitions")
    training = interleaved(contenders, repeats)
    peak = training.pop("matmul")

    fsrcnn = seeded_model(FSRCNN_NET, folder / f"{FSRCNN_NET.stem}.model")
    y_image, photo = sample_image(256, data_root), sample_frame(*sizes.photo_size, data_root)
    count = sizes.predictions
    tasks = [("FSRCNN x3, 256x256 -> 768x768 Y image", {
                  "ours, cuda": our_contender(fsrcnn, y_image, count, DEVICE),
                  "ours, cpu": our_contender(fsrcnn, y_image, count),
                  "reference model, cuda": reference_contender(y_image, count)}),
             (f"FSRCNN x3, {sizes.photo_size[1]}x{sizes.photo_size[0]} -> "
              f"{3 * sizes.photo_size[1]}x{3 * sizes.photo_size[0]} colour photo", {
                  "ours, cuda": our_contender(fsrcnn, photo, count, DEVICE),
                  "ours, cpu": our_contender(fsrcnn, photo, max(1, count // 10))})]
    predictions = []
    for task, task_contenders in tasks:
        for contender in task_contenders.values():
            contender()                                    # warm-up
        rates = interleaved(task_contenders, repeats)
        predictions.append((task, rates))
        log(f"{task}: " + ", ".join(f"{name} {1e3 / median(values):.2f} ms"
                                   for name, values in rates.items()))
    return GpuResults(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
                      f"{threads} CPU threads", sizes, training, flops, recipe, peak,
                      predictions)


def gpu_section(results, batch=128):
    peak = median(results.peak)
    lines = [f"## On the GPU ({results.device})", "",
             "| training | samples/s | GFLOP/s | of the fp32 matmul peak | each repetition |",
             "|---|---:|---:|---:|---|"]
    for name, values in results.training.items():
        gflops = median(values) * results.flops[name] / 1e9
        lines.append(f"| {name} | {median(values):,.0f} | {gflops:,.0f} | "
                     f"{100 * gflops / peak:.1f}% | {values_text(values)} |")
    ours, reference = (median(results.training[name]) for name in (OURS, REFERENCE))
    lines += [f"| fp32 matmul {results.sizes.matmul_size}x{results.sizes.matmul_size} (the "
              f"peak) | | {peak:,.0f} | 100% | {values_text(results.peak)} |", "",
              f"- runner train / reference loop on the GPU: **{ours / reference:.2f}x** (batch "
              f"{batch}, the tutorial's 7x7 samples; the reference loop's DataLoader opens the "
              "HDF5 file for every sample, as yjn870/FSRCNN-pytorch's does)."
              + (f" The recipe's row runs its own shapes ({results.recipe}): its samples/s are "
                 "not comparable with the others', its GFLOP/s are." if results.recipe else ""),
              "",
              "| super-resolving | " + " | ".join(results.predictions[0][1]) + " |",
              "|---|" + "---:|" * len(results.predictions[0][1])]
    for task, rates in results.predictions:
        lines.append(f"| {task} | " + " | ".join(
            f"{1e3 / median(rates[name]):.2f} ms" if name in rates else "" for name in
            results.predictions[0][1]) + " |")
    y_rates = results.predictions[0][1]
    lines += ["", f"- ours on the GPU / the reference model on the GPU (256x256 Y image): "
              f"**{median(y_rates['ours, cuda']) / median(y_rates['reference model, cuda']):.2f}"
              "x**; ours: runner predict's path without the file I/O (8-bit in, 8-bit out); "
              "the reference: yjn870/FSRCNN-pytorch's test.py (the plane /255 to the GPU, the "
              "net, clamp, back x255); random weights for both.", ""]
    return lines
