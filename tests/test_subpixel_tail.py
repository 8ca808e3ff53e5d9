"""The sub-pixel tail kernel (runner/net/subpixel_tail.py, .c) against the layers it replaces
(a 1x1 Convolution, a PReLU, a Deconvolution: PyTorch's own ops), its pixels the same wherever
they are computed, and the nets that take it."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runner.config import schema
from runner.infer import torch_engine
from runner.net import compiled, fast_paths, row_bands, subpixel_tail
from runner.net.builder import Net
from sr_models import ROOT

pytestmark = pytest.mark.skipif(subpixel_tail.library() is None,
                                reason="the kernel needs AVX-512 and a C compiler")

SHIPPED = ROOT / "results" / "models" / "fsrcnn_x3.model"

# (narrow, wide, outputs, deconvolution kernel, stride, pad): FSRCNN x3, x2 and x4, FSRCNN-s
# x3, a colour output of 27 phases from a wide blob of no whole number of the kernel's groups,
# a deconvolution without padding
TAILS = [(12, 56, 1, 9, 3, 3), (12, 56, 1, 9, 2, 4), (12, 56, 1, 9, 4, 3), (5, 32, 1, 9, 3, 3),
         (12, 20, 3, 9, 3, 4), (4, 16, 1, 6, 3, 0)]
# (height, width): one pixel, fewer columns than a vector, more than the kernel's 64-pixel block
SIZES = [(1, 1), (7, 5), (33, 70), (20, 130)]


def tail_modules(narrow, wide, outputs, kernel, stride, pad, shared=False, seed=0):
    """The tail's three layer modules with random weights (float32, as inference loads them)."""
    layers = [
        {"name": "input", "type": "Input", "top": ["narrow"],
         "input_param": {"shape": [{"dim": [1, narrow, 8, 8]}]}},
        {"name": "expand", "type": "Convolution", "bottom": ["narrow"], "top": ["wide"],
         "convolution_param": {"num_output": wide, "kernel_size": 1}},
        {"name": "relu", "type": "PReLU", "bottom": ["wide"], "top": ["wide"],
         "prelu_param": {"channel_shared": shared}},
        {"name": "deconv", "type": "Deconvolution", "bottom": ["wide"], "top": ["out"],
         "convolution_param": {"num_output": outputs, "kernel_size": kernel,
                               "stride": stride, "pad": pad}}]
    net_param = schema.from_mapping(schema.NetParameter, {"layer": layers}, "tail.yaml")
    net = Net(net_param, "TEST", "tail.yaml")
    generator = torch.Generator().manual_seed(seed)
    modules = tuple(module for _, module in net.layer_modules())
    with torch.no_grad():
        for module in modules:
            for blob in module.blobs():
                blob.copy_(torch.randn(blob.shape, generator=generator) * 0.5)
    return modules


def narrow_blob(batch, channels, height, width, seed=1, spare=0):
    """A random channels-last blob; with `spare`, a view of its first channels of more."""
    blob = torch.randn(batch, channels + spare, height, width,
                       generator=torch.Generator().manual_seed(seed))
    return blob.contiguous(memory_format=torch.channels_last)[:, :channels]


def layers_result(bottom, modules):
    expand, prelu, deconvolution = modules
    wide = F.prelu(F.conv2d(bottom, expand.weight, expand.bias), prelu.slope)
    return F.conv_transpose2d(wide, deconvolution.weight, deconvolution.bias,
                              deconvolution.stride, deconvolution.pad)


def kernel_result(bottom, modules):
    deconvolution = modules[2]
    form = fast_paths.subpixel_form(deconvolution.weight, deconvolution.bias,
                                    deconvolution.stride, deconvolution.pad)
    with torch.no_grad():
        assert subpixel_tail.applies(bottom)
        return form.finish(subpixel_tail.phases(bottom, *modules[:2], form), bottom.shape[2:])


def assert_float32_close(ours, reference):
    """The same sums in another order: float32 rounding apart."""
    assert ours.shape == reference.shape
    scale = reference.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("height, width", SIZES)
def test_the_kernel_gives_the_layers_result(tail, height, width):
    modules = tail_modules(*tail)
    bottom = narrow_blob(2, tail[0], height, width)
    assert_float32_close(kernel_result(bottom, modules), layers_result(bottom, modules))


def test_a_shared_slope_and_a_view_of_some_channels():
    modules = tail_modules(12, 56, 1, 9, 3, 3, shared=True)
    bottom = narrow_blob(1, 12, 17, 40, spare=4)      # oneDNN's 16-channel blob, cut to 12
    assert bottom.stride(3) == 16
    assert_float32_close(kernel_result(bottom, modules), layers_result(bottom, modules))


def test_a_pixel_is_the_same_sum_wherever_it_is_computed():
    # the image cut at its top and left: every output pixel that reads no padding of the cut
    # is the whole image's to the bit (tiles and bands rest on it); one to three threads alike
    modules = tail_modules(12, 56, 1, 9, 3, 3)
    bottom = narrow_blob(1, 12, 41, 150)
    whole = kernel_result(bottom, modules)
    top, left = 9, 37
    part = kernel_result(bottom[:, :, top:, left:].contiguous(memory_format=torch.channels_last),
                         modules)
    reach = 3 * 2            # the sub-pixel convolution's padding of one LR pixel, at x3
    assert torch.equal(part[:, :, reach:, reach:],
                       whole[:, :, 3 * top + reach:, 3 * left + reach:])
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            assert torch.equal(kernel_result(bottom, modules), whole)
    finally:
        torch.set_num_threads(threads)


def test_the_shipped_model_computes_its_tail_here(monkeypatch):
    model = torch_engine.load_for_inference(SHIPPED)
    plane = np.random.default_rng(4).random((row_bands.BAND_ROWS + 11, 70), np.float32)
    calls = []
    phases = subpixel_tail.phases
    monkeypatch.setattr(subpixel_tail, "phases",
                        lambda *arguments: calls.append(1) or phases(*arguments))
    ours = model.forward(plane)
    assert calls == [1]
    monkeypatch.setattr(subpixel_tail, "library", lambda: None)
    layers = model.forward(plane)
    assert calls == [1]
    assert_float32_close(torch.from_numpy(ours), torch.from_numpy(layers))


@pytest.mark.parametrize("change", ["3x3 expansion", "ReLU", "grouped deconvolution"])
def test_other_layers_are_no_tail(change):
    modules = tail_modules(12, 56, 1, 9, 3, 3)
    assert subpixel_tail.is_tail(modules)
    expand, prelu, deconvolution = modules
    if change == "3x3 expansion":
        expand.kernel = (3, 3)
    elif change == "ReLU":
        prelu = torch.nn.ReLU()
    else:
        deconvolution.group = 2
    assert not subpixel_tail.is_tail((expand, prelu, deconvolution))


def test_no_kernel_with_autograd_or_without_a_compiler(tmp_path, monkeypatch):
    bottom = narrow_blob(1, 12, 5, 5)
    with torch.enable_grad():
        assert not subpixel_tail.applies(bottom)
    with torch.no_grad():
        assert not subpixel_tail.applies(bottom.double())
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        monkeypatch.setenv("CC", "/nonexistent/cc")
        monkeypatch.setattr(compiled, "unavailable", {})
        compiled.load.cache_clear()
        try:
            assert subpixel_tail.library() is None and not subpixel_tail.applies(bottom)
            assert "no C compiler" in compiled.unavailable["subpixel_tail"]
        finally:
            compiled.load.cache_clear()
