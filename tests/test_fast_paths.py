"""The fast paths (runner/net/fast_paths.py) compute what the plain layers compute, and the bench's
pieces (runner/bench/) run, on tiny sizes (nothing here is timed)."""
import importlib.util
import math
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_run, write_h5
from runner.bench import gpu, measure, prediction, suite, training, whole_process
from runner.config import loading, schema
from runner.imaging import datasets, matlab
from runner.infer import tiles, torch_engine
from runner.net import builder, fast_paths, subpixel
from runner.net.layers import convolution
from sr_models import ROOT, save_initial_model, stronger_deconvolution

BUTTERFLY = datasets.data_root() / "Set5" / "butterfly_GT.bmp"
# fp32 results of the fast and the plain computation may differ by rounding only
TOLERANCE = 1e-5


def plain_conv_transpose2d(bottom, weight, bias, stride, pad, dilation=(1, 1), group=1):
    return F.conv_transpose2d(bottom, weight, bias, stride, pad, 0, group, dilation)


def max_difference(first, second):
    return (first - second).abs().max().item()


# --------------------------------------------------------------------------- the deconvolution

# (kernel, stride, pad): FSRCNN x3 (7 -> 21), x2 and x4 variants, stride 1, a kernel smaller
# than its stride, asymmetric conv padding (x4, pad 3: 2 LR pixels before, 1 after)
GEOMETRIES = [(9, 3, 3), (9, 2, 4), (9, 4, 3), (9, 4, 2), (9, 3, 4), (5, 1, 2), (2, 3, 0),
              (3, 3, 1), (4, 2, 1), (9, 3, 0)]


@pytest.mark.parametrize("kernel, stride, pad", GEOMETRIES)
@pytest.mark.parametrize("group", [1, 2])
def test_subpixel_deconvolution_equals_conv_transpose2d(kernel, stride, pad, group):
    generator = torch.Generator().manual_seed(kernel * 100 + stride * 10 + pad)
    bottom = torch.randn(2, 4, 7, 6, generator=generator, requires_grad=True)
    weight = torch.randn(4, 4 // group, kernel, kernel, generator=generator,
                         requires_grad=True)
    bias = torch.randn(4, generator=generator, requires_grad=True)
    arguments = (bottom, weight, bias, (stride, stride), (pad, pad), (1, 1), group)
    assert subpixel.subpixel_geometry(kernel, stride, pad) is not None
    fast, plain = fast_paths.conv_transpose2d(*arguments), plain_conv_transpose2d(*arguments)
    assert fast.shape == plain.shape
    assert max_difference(fast, plain) < TOLERANCE
    # training goes through it too: the gradients of input, weights and bias agree
    top_grad = torch.randn(plain.shape, generator=generator)
    fast_grads = torch.autograd.grad(fast, (bottom, weight, bias), top_grad)
    plain_grads = torch.autograd.grad(plain, (bottom, weight, bias), top_grad)
    for fast_grad, plain_grad in zip(fast_grads, plain_grads):
        assert max_difference(fast_grad, plain_grad) < TOLERANCE * plain_grad.abs().max()


def test_rectangular_kernels_strides_and_pads():
    generator = torch.Generator().manual_seed(1)
    bottom = torch.randn(1, 3, 5, 6, generator=generator)
    weight = torch.randn(3, 2, 7, 5, generator=generator)
    bias = torch.randn(2, generator=generator)
    for stride, pad in (((2, 3), (1, 2)), ((3, 1), (3, 0)), ((4, 2), (2, 4))):
        fast = fast_paths.conv_transpose2d(bottom, weight, bias, stride, pad)
        assert max_difference(fast, plain_conv_transpose2d(bottom, weight, bias, stride,
                                                           pad)) < TOLERANCE


def test_what_the_rewrite_cannot_do_falls_back_to_the_plain_layer():
    # a pad beyond the kernel needs negative padding; dilation interleaves the taps
    assert subpixel.subpixel_geometry(3, 2, 3) is None
    bottom, weight = torch.randn(1, 2, 6, 6), torch.randn(2, 1, 3, 3)
    for stride, pad, dilation in (((2, 2), (3, 3), (1, 1)), ((2, 2), (1, 1), (2, 2))):
        fast = fast_paths.conv_transpose2d(bottom, weight, None, stride, pad, dilation)
        assert torch.equal(fast, plain_conv_transpose2d(bottom, weight, None, stride, pad,
                                                        dilation))


def test_subpixel_weights_put_each_tap_at_its_phase():
    # stride 3, kernel 9: phase r of the output takes kernel taps r, r + 3, r + 6, reversed
    weight = torch.arange(81.0).reshape(1, 1, 9, 9)
    converted, bias = fast_paths.subpixel_weights(weight, torch.tensor([5.0]), (3, 3))
    assert converted.shape == (9, 1, 3, 3) and torch.equal(bias, torch.full((9,), 5.0))
    row_phase, column_phase = 1, 2
    expected = weight[0, 0][[7, 4, 1]][:, [8, 5, 2]]
    assert torch.equal(converted[row_phase * 3 + column_phase, 0], expected)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_pixel_shuffle_is_torchs(memory_format):
    phases = torch.randn(2, 18, 5, 7).contiguous(memory_format=memory_format)
    assert torch.equal(fast_paths.pixel_shuffle(phases, (3, 3)), F.pixel_shuffle(phases, 3))
    # rectangular: output pixel (h * 2 + i, w * 3 + j) of channel c is input channel c*6 + i*3 + j
    shuffled = fast_paths.pixel_shuffle(phases, (2, 3))
    assert shuffled.shape == (2, 3, 10, 21)
    assert shuffled[1, 2, 4 * 2 + 1, 5 * 3 + 2] == phases[1, 2 * 6 + 1 * 3 + 2, 4, 5]


# (in, out, kernel, stride, pad, dilation, group): FSRCNN's 1x1 and 5x5, its sub-pixel
# deconvolution's 9 phases, and the other options
CONVOLUTIONS = [(56, 12, 1, 1, 0, 1, 1), (12, 56, 1, 1, 0, 1, 1), (1, 56, 5, 1, 2, 1, 1),
                (12, 12, 3, 1, 1, 1, 1), (56, 9, 3, 1, 1, 1, 1), (4, 6, 3, 2, 1, 2, 2),
                (3, 5, 4, 3, 2, 1, 1)]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("in_channels, out_channels, kernel, stride, pad, dilation, group",
                         CONVOLUTIONS)
def test_inference_conv2d_equals_f_conv2d(in_channels, out_channels, kernel, stride, pad,
                                          dilation, group, channels_last):
    generator = torch.Generator().manual_seed(in_channels * out_channels + kernel)
    bottom = torch.randn(1, in_channels, 11, 9, generator=generator)
    # outputs of about unit size, as FSRCNN's (He initialisation)
    fan_in = in_channels // group * kernel * kernel
    weight = torch.randn(out_channels, in_channels // group, kernel, kernel,
                         generator=generator) / math.sqrt(fan_in)
    bias = torch.randn(out_channels, generator=generator)
    if channels_last:
        bottom, weight = (tensor.contiguous(memory_format=torch.channels_last)
                          for tensor in (bottom, weight))
    arguments = (bottom, weight, bias, (stride, stride), (pad, pad), (dilation, dilation), group)
    plain = F.conv2d(bottom, weight, bias, stride, pad, dilation, group)
    with torch.no_grad():
        fast = fast_paths.conv2d(*arguments)
        assert max_difference(fast, plain) < TOLERANCE
        assert max_difference(fast_paths.conv2d(bottom, weight, None, *arguments[3:]),
                              plain - bias[:, None, None]) < TOLERANCE
    # with autograd (training) it is F.conv2d itself
    assert torch.equal(fast_paths.conv2d(*arguments), plain)


@pytest.mark.parametrize("channels, padded", [(1, 1), (5, 5), (8, 8), (9, 16), (12, 16),
                                               (16, 16), (56, 56)])
def test_whole_output_blocks_append_zero_filters_past_the_first_block(channels, padded):
    weight, bias = torch.randn(channels, 3, 3, 3), torch.randn(channels)
    for padded_bias in (bias, None):
        wide, wide_bias = fast_paths.whole_output_blocks(weight, padded_bias)
        assert wide.shape == (padded, 3, 3, 3) and torch.equal(wide[:channels], weight)
        assert not wide[channels:].any()
        assert wide_bias is None if padded_bias is None else (
            wide_bias.shape == (padded,) and torch.equal(wide_bias[:channels], bias)
            and not wide_bias[channels:].any())


def test_inference_conv2d_in_whole_blocks_is_a_view_of_its_own_channels():
    bottom = torch.randn(1, 56, 12, 10).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(9, 56, 3, 3).contiguous(memory_format=torch.channels_last)
    bias = torch.randn(9)
    with torch.no_grad():
        top = fast_paths.conv2d(bottom, weight, bias, (1, 1), (1, 1))
        unpadded = torch.mkldnn_convolution(bottom, weight, bias, (1, 1), (1, 1), (1, 1), 1)
    assert top.shape == (1, 9, 12, 10) and top.stride()[1] == 1 and top.stride()[3] == 16
    assert max_difference(top, unpadded) < TOLERANCE
    # the layer after it reads the view: a PReLU's result is its own, on its 9 channels alone
    slope = torch.rand(9) - 0.5
    with torch.no_grad():
        assert torch.equal(fast_paths.prelu(top, slope), F.prelu(top.contiguous(), slope))


@pytest.mark.parametrize("channels", [1, 5, 12, 15, 16, 56])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_prelu_equals_f_prelu(channels, channels_last):
    generator = torch.Generator().manual_seed(channels)
    bottom = torch.randn(2, channels, 7, 9, generator=generator)
    bottom[0, 0, 0, :3] = 0                     # the kink itself takes the slope's side
    if channels_last:
        bottom = bottom.contiguous(memory_format=torch.channels_last)
    for slope in (torch.rand(channels, generator=generator) - 0.5, torch.tensor([0.25])):
        plain = F.prelu(bottom, slope)
        with torch.no_grad():
            fast = fast_paths.prelu(bottom, slope)
        assert torch.equal(fast, plain)         # the same multiplies, element by element
        assert fast.stride() == plain.stride()  # and the same memory layout


# --------------------------------------------------------------------------- whole nets

@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_initial_model(tmp_path_factory.mktemp("fast") / "random.model",
                              edit=stronger_deconvolution)


def convolution_weights(module):
    return [layer.weight for layer in module.layers if isinstance(layer, convolution.Convolution)]


def test_inference_model_uses_channels_last_on_the_cpu_unless_disabled(model_file):
    weights = convolution_weights(torch_engine.load_for_inference(model_file).net)
    assert weights and all(weight.is_contiguous(memory_format=torch.channels_last)
                           for weight in weights)
    with fast_paths.disabled():
        plain = convolution_weights(torch_engine.load_for_inference(model_file).net)
    assert all(weight.is_contiguous() for weight in plain)


def test_disabled_is_the_plain_layer_and_ends_with_its_block():
    bottom, weight = torch.randn(1, 2, 5, 5), torch.randn(2, 1, 9, 9)
    with fast_paths.disabled():
        plain = fast_paths.conv_transpose2d(bottom, weight, None, (3, 3), (3, 3))
    assert torch.equal(plain, plain_conv_transpose2d(bottom, weight, None, (3, 3), (3, 3)))
    fast = fast_paths.conv_transpose2d(bottom, weight, None, (3, 3), (3, 3))
    assert not torch.equal(fast, plain) and max_difference(fast, plain) < TOLERANCE


def test_fast_prediction_of_a_set5_image_equals_the_plain_layers(model_file):
    y = matlab.rgb2y(cv2.imread(str(BUTTERFLY)), channel_order="bgr") / 255.0
    fast = tiles.super_resolve(torch_engine.load_for_inference(model_file), y)
    with fast_paths.disabled():
        plain = tiles.super_resolve(torch_engine.load_for_inference(model_file), y)
    assert fast.shape == (768, 768) and plain.std() > 0.05
    assert np.abs(fast - plain).max() < TOLERANCE


def test_fast_training_step_equals_the_plain_layers():
    """One forward/backward of the FSRCNN train net: loss and every gradient agree."""
    param = loading.load(schema.NetParameter, ROOT / "configs" / "fsrcnn_net.yaml")
    shapes = {"data": (16, 1, 7, 7), "label": (16, 1, 21, 21)}
    generator = torch.Generator().manual_seed(3)
    batch = {name: torch.rand(shape, generator=generator) for name, shape in shapes.items()}

    def gradients():
        train = fast_paths.preferred_layout(builder.Net(
            param, "TRAIN", input_shapes=shapes, generator=torch.Generator().manual_seed(0)),
            "cpu")
        train.blobs_by_layer()["deconv"][0].data *= 30      # outputs of a useful size
        loss = train.loss(train.forward(batch))
        loss.backward()
        return loss, [blob.grad for _, _, blob, _, _ in train.learnable_blobs()]

    fast_loss, fast_grads = gradients()
    with fast_paths.disabled():
        plain_loss, plain_grads = gradients()
    assert abs(fast_loss.item() - plain_loss.item()) < TOLERANCE * plain_loss.item()
    for fast_grad, plain_grad in zip(fast_grads, plain_grads):
        assert max_difference(fast_grad, plain_grad) < TOLERANCE * plain_grad.abs().max()


def test_preferred_layout_and_kept_memory():
    module = torch.nn.Conv2d(2, 3, 3)
    assert fast_paths.preferred_layout(module, "cpu") is module
    assert module.weight.is_contiguous(memory_format=torch.channels_last)
    fast_paths.keep_freed_memory()
    fast_paths.keep_freed_memory()       # once per process; a second call is harmless


# --------------------------------------------------------------------------- the bench's pieces

def test_the_bench_compiles_our_modules_as_a_second_run_finds_them():
    measure.compile_sources()
    for package in ("runner", "prep"):
        source = ROOT / package / "__init__.py"
        assert Path(importlib.util.cache_from_source(str(source))).is_file()


def test_training_cost_counts_the_papers_multiply_adds():
    # FSRCNN(56,12,4): 12,464 multiply-adds per LR pixel forward (the paper); a 7x7 sample;
    # backward: weight gradients 12,464 more, input gradients 12,464 less conv1's 5*5*56
    param = loading.load(schema.NetParameter, ROOT / "configs" / "fsrcnn_net.yaml")
    cost = training.training_cost(param, "fsrcnn_net.yaml", (7, 7))
    assert cost.forward == 12_464 * 49
    assert cost.backward == (2 * 12_464 - 5 * 5 * 56) * 49
    assert cost.flops == 2 * 49 * (3 * 12_464 - 1_400)


# the whole-process rows on inputs of a few pixels, each of their processes once
TINY_INPUTS = whole_process.Inputs(photos=(("small", (48, 32)), ("large", (64, 48))),
                                   video_size=(32, 24), video_frames=(2, 4), plane_size=(40, 30),
                                   folder_images=2)


def test_bench_runs_end_to_end_on_tiny_sizes(tmp_path):
    # the whole-process rows start some 35 processes: their own tests below
    solver = tiny_run(tmp_path)
    sizes = suite.Sizes(repeats=1, batch=4, our_iterations=2, recipe_iterations=2,
                        reference_batches=2, matmul_size=32, matmuls=1, image_size=12,
                        frame_size=(6, 10),
                        predictions=1, prep_runs=0, reference_workers=0, whole_inputs=None)
    # the tiny solver stands in for the recipe too: its row at its own batch and shapes
    results = suite.run(sizes, threads=1, solver_path=solver, log=lambda line: None,
                        recipe_path=solver)
    assert all(value > 0 for values in results.training.values() for value in values)
    assert results.costs[training.RECIPE] == results.cost
    assert results.cost.forward > 0 and results.peak[0] > 0
    tasks = [task for task, _, _, _ in results.predictions]
    assert tasks[0].startswith("FSRCNN x3, 12x12 -> 36x36")
    assert prediction.SHIPPED_CONTENDER in results.predictions[0][2]     # the shipped x3 as well
    text = suite.report(results)
    for heading in ("## Training", "runner train / reference loop", "of the matmul peak",
                    "torch.profiler", "## Super-resolving", "torch.set_num_threads(1)",
                    "fast paths off", "sharded files / runner train",
                    "the recipe's shapes / matmul peak"):
        assert heading in text
    assert "## Whole processes" not in text


def test_whole_process_commands_write_the_3x_picture(tmp_path):
    """The two processes a photo row times, ours and the OpenCV script, run and write the
    picture three times the size (the rows' other inputs go through the same commands)."""
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), whole_process.mosaic(40, 24))
    for argv, out in [(whole_process.ours(photo, "FSRCNN", tmp_path / "ours", 1),
                       tmp_path / "ours"),
                      (whole_process.opencv("photo", photo, "FSRCNN", tmp_path / "opencv.png",
                                            1), tmp_path)]:
        seconds, peak = whole_process.run_process(argv)
        assert seconds > 0 and peak > 0
        [written] = [path for path in out.glob("*.png") if path != photo]
        assert cv2.imread(str(written)).shape == (72, 120, 3)


def test_whole_process_section_states_each_ratio_and_target():
    inputs = whole_process.Inputs(photos=(("4K", (3840, 2160)),), video_size=(640, 360))
    result = whole_process.WholeProcess(
        threads=2, inputs=inputs, photos={"4K": {"ours": [1.0, 1.2, 0.9],
                                                 "OpenCV": [3.0, 3.2, 2.9]}},
        peak_bytes={"4K": {"ours": [500 << 20], "OpenCV": [2000 << 20]}},
        output_bytes={"4K": 9 * 3840 * 2160 * 3}, folder={"ours": [10.0], "OpenCV": [4.0]},
        folder_count=100, videos={"FSRCNN-s": {"ours": [30.0], "OpenCV": [10.0]}},
        onnx={"ours": [20.0], "onnxruntime": [25.0]}, onnx_size=(540, 960),
        starts={"--help": [0.1], "train --help": [0.3]})
    text = "\n".join(whole_process.whole_process_section(result))
    # photos in seconds: OpenCV's over ours; rates: ours over OpenCV's
    assert "| photo 3840x2160 -> 11520x6480 (FSRCNN x3) | 1.00 s | 3.00 s | **3.00x** | 2x |" \
        in text
    assert "BSD100 folder, 100 images x3 | 10.00 images/s | 4.00 images/s | **2.50x** | 3x |" \
        in text
    assert "video 640x360 -> 1920x1080 (FSRCNN-s x3)" in text and "**3.00x**" in text
    assert "| 960x540 Y plane (FSRCNN x3), in one process | 50 ms | onnxruntime 40 ms | " \
        "**0.80x** |" in text
    assert "FSRCNN-s video in real time: **30.0 frames/s**" in text
    assert "peak memory, 4K photo: ours **500 MiB**" in text and "met" in text
    assert "is `runner train --help`, **0.30 s**" in text


def test_gpu_section_states_each_row_and_ratio():
    results = gpu.GpuResults(
        "NVIDIA H200, torch 2.11.0, 16 CPU threads", gpu.GpuSizes(),
        training={gpu.OURS: [30_000.0], gpu.REFERENCE: [10_000.0], gpu.RECIPE: [3_000.0]},
        flops={gpu.OURS: 3_000_000, gpu.REFERENCE: 3_000_000, gpu.RECIPE: 40_000_000},
        recipe="batch 16, 33x33 LR samples", peak=[50_000.0],
        predictions=[("a Y image", {"ours, cuda": [300.0], "ours, cpu": [100.0],
                                    "reference model, cuda": [250.0]}),
                     ("a colour photo", {"ours, cuda": [40.0], "ours, cpu": [10.0]})])
    text = "\n".join(gpu.gpu_section(results))
    assert "## On the GPU (NVIDIA H200" in text
    assert "| runner train | 30,000 | 90 | 0.2% | 30,000 |" in text
    assert "| runner train, the recipe's shapes | 3,000 | 120 | 0.2% |" in text
    assert "runner train / reference loop on the GPU: **3.00x**" in text
    assert "| a Y image | 3.33 ms | 10.00 ms | 4.00 ms |" in text
    assert "| a colour photo | 25.00 ms | 100.00 ms |  |" in text
    assert "(256x256 Y image): **1.20x**" in text


def test_the_gpu_rows_are_left_out_without_a_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    said = []
    assert gpu.measure_gpu(1, suite.SOLVER, None, ".", None, said.append) is None
    assert said == ["no CUDA device: the GPU rows are left out"]


@pytest.mark.slow
def test_whole_process_rows_run_end_to_end_on_tiny_inputs():
    result = whole_process.measure_whole_process(1, 1, TINY_INPUTS, log=lambda line: None)
    assert result.folder_count == 2 and result.onnx_size == (30, 40)
    text = "\n".join(whole_process.whole_process_section(result))
    for row in ("photo 64x48 -> 192x144", "BSD100 folder, 2 images x3",
                "video 32x24 -> 96x72 (FSRCNN-s x3)", "peak memory, large photo",
                "40x30 Y plane", "start: the slowest"):
        assert row in text


def test_reference_dataset_opens_the_file_per_sample(tmp_path):
    path = write_h5(tmp_path / "set.h5", 5, seed=0)
    dataset = training.PerSampleHDF5(path)
    low, high = dataset[3]
    assert len(dataset) == 5 and low.shape == (1, 7, 7) and high.shape == (1, 21, 21)
    model = training.reference_fsrcnn()
    assert model(torch.from_numpy(low)[None]).shape == (1, 1, 21, 21)


def test_our_prediction_gives_the_8_bit_result(tmp_path):
    path, _ = prediction.model_file(tmp_path / "none.model", ROOT / "configs" / "fsrcnn_s_net.yaml",
                               tmp_path)
    model = torch_engine.load_for_inference(path)
    frame = prediction.sample_frame(6, 10)
    assert prediction.our_prediction(model, frame).shape == (18, 30, 3)
    assert prediction.our_prediction(model, prediction.sample_image(8)).dtype == np.uint8
    opencv = prediction.opencv_model(*prediction.OPENCV_FSRCNN_S)
    if opencv is not None:
        assert opencv.upsample(frame).shape == (18, 30, 3)


def test_with_data_param_sets_every_data_layer():
    param = loading.load(schema.NetParameter, ROOT / "configs" / "fsrcnn_net.yaml")
    changed = training.with_data_param(param, batch_size=8, source="shards.txt")
    assert [(layer.hdf5_data_param.batch_size, layer.hdf5_data_param.source)
            for layer in changed.layer if layer.type == "HDF5Data"] == [(8, "shards.txt")] * 2


def test_shard_copy_splits_a_file_in_order(tmp_path):
    original = write_h5(tmp_path / "train.h5", 10, seed=1)
    source = training.shard_copy(original, tmp_path / "shards", 3)
    paths = source.read_text().split()
    assert [Path(path).name for path in paths] == ["train1.h5", "train2.h5", "train3.h5"]
    with h5py.File(original, "r") as h5:
        whole = {name: h5[name][()] for name in ("Input", "Ground")}
    parts = {name: [] for name in whole}
    for path in paths:
        with h5py.File(path, "r") as h5:
            for name in whole:
                parts[name].append(h5[name][()])
    assert [len(part) for part in parts["Input"]] == [4, 4, 2]
    for name, values in whole.items():
        assert np.array_equal(np.concatenate(parts[name]), values)
