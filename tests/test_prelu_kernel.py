"""Our PReLU kernels for training (runner/net/prelu_kernel.py, .c) against PyTorch's F.prelu, and
their build (runner/net/compiled.py): compiled once into the cache, and PyTorch's PReLU where
they cannot be had."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import run_cli, tiny_run
from runner.net import compiled, fast_paths, prelu_kernel

# (batch, channels, height, width): FSRCNN's 56 and 12 channels, FSRCNN-s's 5, one channel, a
# width of more than one 64-byte vector of floats; 3 x 7 x 9 pixels are 189, not a whole number
# of the kernel's 64-pixel blocks
SHAPES = [(3, 56, 7, 9), (3, 12, 7, 9), (2, 5, 11, 13), (2, 1, 9, 7), (1, 70, 5, 6)]


def channels_last_blob(shape, dtype, seed):
    """A random blob with the kink (0, -0), infinities and a NaN among its values."""
    generator = torch.Generator().manual_seed(seed)
    blob = torch.randn(shape, generator=generator) * 3
    flat = blob.view(-1)
    flat[:6] = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-30])
    return blob.to(dtype).contiguous(memory_format=torch.channels_last)


def slopes_for(channels, shared, seed):
    generator = torch.Generator().manual_seed(seed + 1)
    return torch.rand(1 if shared else channels, generator=generator) - 0.25


def same_values(first, second):
    """Equal value by value, NaN where the other has NaN."""
    return torch.allclose(first.float(), second.float(), rtol=0, atol=0, equal_nan=True)


def reference(bottom, slope, top_diff):
    """F.prelu's top and gradients, computed in float32 from the same values."""
    bottom = bottom.detach().float().requires_grad_()
    slope = slope.detach().clone().requires_grad_()
    top = F.prelu(bottom, slope)
    bottom_diff, slope_diff = torch.autograd.grad(top, (bottom, slope), top_diff.float())
    return top, bottom_diff, slope_diff


def ours(bottom, slope, top_diff):
    bottom = bottom.detach().clone().requires_grad_()
    slope = slope.detach().clone().requires_grad_()
    top = prelu_kernel.prelu(bottom, slope)
    bottom_diff, slope_diff = torch.autograd.grad(top, (bottom, slope), top_diff)
    return top, bottom_diff, slope_diff


def finite_slope_diff(bottom, slope_diff_shape, top_diff, slope):
    """The slopes' gradient in float64 over the finite values only (the infinities' and NaN's
    terms make the sum itself infinite or NaN, which `torch.equal` compares below)."""
    bottom, top_diff = bottom.double(), top_diff.double()
    terms = torch.where(bottom > 0, 0.0, bottom * top_diff).nan_to_num(0.0, 0.0, 0.0)
    per_channel = terms.sum((0, 2, 3))
    return per_channel.sum().reshape(slope_diff_shape) if slope.numel() == 1 else per_channel


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("shared", [False, True])
def test_float32_is_f_prelu(shape, shared):
    bottom = channels_last_blob(shape, torch.float32, seed=shape[1])
    slope = slopes_for(shape[1], shared, seed=shape[1])
    top_diff = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    expected, got = reference(bottom, slope, top_diff), ours(bottom, slope, top_diff)
    # the top and the bottom's gradient are the same multiplies, value by value
    assert same_values(got[0], expected[0]) and same_values(got[1], expected[1])
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    # the slopes' gradient: the same sum in another order, NaN and infinite where F.prelu's is
    assert got[2].shape == slope.shape
    assert torch.equal(got[2].isfinite(), expected[2].isfinite()) and not got[2].isfinite().all()
    assert same_values(got[2][~got[2].isfinite()], expected[2][~expected[2].isfinite()])
    finite = bottom.nan_to_num(0.0, 0.0, 0.0)
    clean = ours(finite, slope, top_diff)[2]
    assert torch.allclose(clean.double(), finite_slope_diff(finite, slope.shape, top_diff, slope),
                          rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_bfloat16_is_float32_rounded_once(shape):
    """In bfloat16, each value is float32's result on the same bfloat16 inputs, rounded once."""
    bottom = channels_last_blob(shape, torch.bfloat16, seed=shape[1] + 7)
    slope = slopes_for(shape[1], False, seed=shape[1])
    top_diff = torch.randn(shape).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    expected, got = reference(bottom, slope, top_diff), ours(bottom, slope, top_diff)
    assert got[0].dtype == got[1].dtype == torch.bfloat16 and got[2].dtype == torch.float32
    for ours_value, float32_value in zip(got[:2], expected[:2]):
        assert same_values(ours_value, float32_value.to(torch.bfloat16))
    finite = bottom.nan_to_num(0.0, 0.0, 0.0)
    assert torch.allclose(ours(finite, slope, top_diff)[2].double(),
                          finite_slope_diff(finite.float(), slope.shape, top_diff.float(), slope),
                          rtol=1e-5, atol=1e-5)


def test_rounding_to_bfloat16_is_to_nearest_even():
    """Products halfway between two bfloat16 values go to the even one, as PyTorch rounds."""
    # 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to 1 (even); 1 + 3 * 2^-8 to 1 + 2^-6
    bottom = -torch.tensor([1.0, 1.0, 1.0, 1.0]).to(torch.bfloat16).view(1, 4, 1, 1)
    slope = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, 0.5])
    top = prelu_kernel.prelu(bottom.contiguous(memory_format=torch.channels_last), slope)
    assert top.flatten().tolist() == [-1.0, -(1 + 2 ** -6), -1.0, -0.5]
    assert torch.equal(top.flatten(), (bottom.float().flatten() * slope).to(torch.bfloat16))


def test_thread_counts_agree():
    """The blocks split between threads; the top is the same, the slopes' gradient sums the
    threads' rows in another order."""
    shape = (8, 56, 29, 29)
    bottom = channels_last_blob(shape, torch.float32, seed=3).nan_to_num(0.0, 0.0, 0.0)
    slope = slopes_for(56, False, seed=3)
    top_diff = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    before = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results[threads] = ours(bottom, slope, top_diff)
    finally:
        torch.set_num_threads(before)
    for threads in (2, 3):
        assert torch.equal(results[threads][0], results[1][0])
        assert torch.equal(results[threads][1], results[1][1])
        assert torch.allclose(results[threads][2], results[1][2], rtol=1e-5, atol=1e-4)


def test_fast_paths_take_the_kernels_for_training_only(monkeypatch):
    bottom = channels_last_blob((2, 12, 5, 5), torch.float32, seed=4).requires_grad_()
    slope = slopes_for(12, False, seed=4)
    calls = []
    monkeypatch.setattr(prelu_kernel, "prelu",
                        lambda *arguments: calls.append(1) or F.prelu(*arguments))
    fast_paths.prelu(bottom, slope)
    assert calls == [1]
    with torch.no_grad():
        fast_paths.prelu(bottom, slope)
    with fast_paths.disabled():
        fast_paths.prelu(bottom, slope)
    fast_paths.prelu(bottom.detach().contiguous(), slope)       # not channels-last
    fast_paths.prelu(bottom.detach().double().contiguous(memory_format=torch.channels_last),
                     slope.double())
    assert calls == [1]


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """An empty kernel cache, and `compiled.load` forgetting what it loaded; restored after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    compiled.load.cache_clear()
    monkeypatch.setattr(compiled, "unavailable", {})
    yield tmp_path / "srcaffe" / "kernels"
    compiled.load.cache_clear()


def test_compiled_once_into_the_cache(fresh_build):
    assert prelu_kernel.library() is not None
    built = list(fresh_build.iterdir())
    assert len(built) == 1 and built[0].name.startswith("prelu_kernel-")
    assert built[0].suffix == ".so"                 # no partial file left beside it
    stamp = built[0].stat().st_mtime_ns
    compiled.load.cache_clear()
    assert prelu_kernel.library() is not None
    assert built[0].stat().st_mtime_ns == stamp     # loaded again, not rebuilt


@pytest.mark.parametrize("compiler, reason", [
    ("/nonexistent/cc", "no C compiler (/nonexistent/cc) to build prelu_kernel.c"),
    ("false", "false could not build prelu_kernel.c"),
])
def test_without_a_compiler_pytorch_computes(fresh_build, monkeypatch, compiler, reason):
    monkeypatch.setenv("CC", compiler)
    assert prelu_kernel.library() is None
    assert compiled.unavailable["prelu_kernel"].startswith(reason)
    assert not fresh_build.exists() or not list(fresh_build.iterdir())   # nothing half-built
    bottom = channels_last_blob((2, 12, 5, 5), torch.float32, seed=5).requires_grad_()
    slope = slopes_for(12, False, seed=5).requires_grad_()
    assert not prelu_kernel.applies(bottom)
    top_diff = torch.randn(bottom.shape)
    fast = torch.autograd.grad(fast_paths.prelu(bottom, slope), (bottom, slope), top_diff)
    plain = torch.autograd.grad(F.prelu(bottom, slope), (bottom, slope), top_diff)
    assert all(torch.equal(first.nan_to_num(), second.nan_to_num())
               for first, second in zip(fast, plain))


def test_training_without_a_compiler_says_so_and_trains(fresh_build, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")
    solver = tiny_run(tmp_path, max_iter=4, snapshot=4)
    result = run_cli("train", "--solver", solver, "--no-tensorboard")
    assert result.returncode == 0, result.stderr
    assert ("PReLU computed by PyTorch's kernels, slower in training than our own, which cannot "
            "be had here: false could not build prelu_kernel.c") in result.stderr + result.stdout
    assert (tmp_path / "run" / "tiny_iter_4.model").exists()
