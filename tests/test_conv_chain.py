"""The convolution-chain kernel (runner/net/conv_chain.py, .c) against the layers it replaces
(PyTorch's own ops, the net computed whole), its pixels the same wherever they are computed,
and the chains a net is planned into."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from runner.infer import torch_engine
from runner.net import compiled, conv_chain, row_bands
from sr_models import ROOT, save_initial_model

pytestmark = pytest.mark.skipif(conv_chain.library() is None,
                                reason="the kernel needs AVX-512 or AVX2 and a C compiler")

SHIPPED = ROOT / "results" / "models" / "fsrcnn_x3.model"

# net file -> the chains' (first, last) steps of its deploy net: FSRCNN whole (at x2, x3, x4,
# and FSRCNN-s), SRCNN's three layers with their ReLUs; VDSR's layers of 64 channels in and out
# are oneDNN's, and ESPCN's TanH breaks every run into single convolutions
NETS = {"fsrcnn_net.yaml": [(0, 14)], "fsrcnn_x2_net.yaml": [(0, 14)],
        "fsrcnn_x4_net.yaml": [(0, 14)], "fsrcnn_s_net.yaml": [(0, 8)],
        "srcnn_net.yaml": [(0, 4)], "vdsr_net.yaml": [], "espcn_net.yaml": []}
# (height, width): one pixel, fewer columns than a vector, more than the kernel's 64-pixel block
SIZES = [(1, 1), (7, 5), (33, 70), (20, 130)]


def stronger_last_layer(blobs):
    """Random weights whose output spans about the 0..1 pixel range (not ~0)."""
    blobs[list(blobs)[-1]][0] *= 30.0


@pytest.fixture(scope="module", params=sorted(NETS))
def net_model(request, tmp_path_factory):
    name = request.param
    scale = 2 if "x2" in name else 4 if "x4" in name else 3
    path = save_initial_model(tmp_path_factory.mktemp("chain") / "random.model",
                              ROOT / "configs" / name, scale=scale,
                              edit=stronger_last_layer if name.startswith("fsrcnn") else None)
    return name, torch_engine.load_for_inference(path)


def fed_plane(model, plane):
    return {model.input_name: torch.from_numpy(model.geometry.padded(plane))[None, None]}


def whole_and_chained(model, plane, fed=None):
    """The output blob computed whole, layer by layer (no `keep`: no chains), and as predict
    computes it."""
    fed = fed or fed_plane(model, plane)
    with torch.no_grad():
        return (model.net(fed)[model.output_name],
                model.net(fed, keep=(model.output_name,))[model.output_name])


def assert_float32_close(ours, reference):
    """The same sums in another order: float32 rounding apart."""
    assert ours.shape == reference.shape
    scale = reference.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=2e-5 * scale)


def chain_steps(model, keep):
    return [(chain.first, chain.last)
            for chain in conv_chain.plan(model.net.layer_modules(), set(keep))]


def test_the_plan_takes_the_runs_of_convolutions(net_model):
    name, model = net_model
    assert chain_steps(model, [model.output_name]) == NETS[name]


@pytest.mark.parametrize("height, width", SIZES)
def test_the_kernel_gives_the_layers_result(net_model, height, width):
    name, model = net_model
    plane = np.random.default_rng(height * width).random((height, width), np.float32)
    whole, chained = whole_and_chained(model, plane)
    assert_float32_close(chained, whole)


def test_a_batch_and_a_view_of_some_channels():
    # FSRCNN's chain fed from the middle: its first mapping layer's input, a channels-last view
    # of the first 12 channels of 16 (as oneDNN leaves a 12-channel blob)
    model = torch_engine.load_for_inference(SHIPPED)
    layers = model.net.layer_modules()[4:]
    chain, = conv_chain.plan(layers, {model.output_name})
    generator = torch.Generator().manual_seed(2)
    bottom = torch.randn(2, 16, 23, 41, generator=generator).contiguous(
        memory_format=torch.channels_last)[:, :12]
    with torch.no_grad():
        ours = chain.run(bottom)
        for _, module in layers:
            bottom = module(bottom)[0]
    assert_float32_close(ours, bottom)


def test_a_pixel_is_the_same_sum_wherever_it_is_computed():
    # the plane cut at its top and left: every output pixel beyond the net's reach of the cut
    # is the whole plane's to the bit (tiles and bands rest on it); one to three threads alike
    model = torch_engine.load_for_inference(SHIPPED)
    plane = np.random.default_rng(1).random((45, 150), np.float32)
    fed = {model.input_name: torch.from_numpy(plane)[None, None]}
    _, whole = whole_and_chained(model, None, fed)
    top, left = 9, 37
    cut = {model.input_name: torch.from_numpy(plane[top:, left:].copy())[None, None]}
    _, part = whole_and_chained(model, None, cut)
    reach = 3 * 9            # beyond the receptive field of the unpadded deploy net, at x3
    rows, columns = part.shape[2] - reach, part.shape[3] - reach
    assert torch.equal(part[:, :, reach:, reach:],
                       whole[:, :, 3 * top + reach:3 * top + reach + rows,
                             3 * left + reach:3 * left + reach + columns])
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            assert torch.equal(whole_and_chained(model, None, fed)[1], whole)
    finally:
        torch.set_num_threads(threads)


def test_the_shipped_model_is_one_chain(monkeypatch):
    model = torch_engine.load_for_inference(SHIPPED)
    assert chain_steps(model, [model.output_name]) == [(0, 14)]
    plane = np.random.default_rng(4).random((row_bands.BAND_ROWS + 11, 70), np.float32)
    ours = model.forward(plane)
    monkeypatch.setattr(conv_chain, "library", lambda: None)     # row bands then
    assert_float32_close(torch.from_numpy(ours), torch.from_numpy(model.forward(plane)))


def test_a_blob_asked_for_or_read_later_ends_a_chain():
    model = torch_engine.load_for_inference(SHIPPED)
    layers = model.net.layer_modules()
    inner = layers[6][0].top[0]             # the second mapping layer's
    assert chain_steps(model, [model.output_name, inner]) == [(0, 7), (8, 14)]
    # a layer after the chain reading an inner blob (a branch) keeps it too
    reader = (layers[1][0].__class__(name="branch", type="ReLU", bottom=[inner],
                                     top=["branch"]), layers[1][1])
    steps = layers + [reader]
    assert [(chain.first, chain.last) for chain in conv_chain.plan(
        steps, {model.output_name, "branch"})] == [(0, 7), (8, 14)]


def test_a_leaky_relu_is_a_prelu_of_one_slope(tmp_path):
    text = (ROOT / "configs" / "srcnn_net.yaml").read_text()
    assert "type: ReLU" in text
    text = text.replace("type: ReLU", "type: ReLU, relu_param: {negative_slope: 0.1}")
    model = torch_engine.load_for_inference(save_initial_model(tmp_path / "leaky.model",
                                                               net_text=text, scale=3))
    assert chain_steps(model, [model.output_name]) == [(0, 4)]
    plane = np.random.default_rng(6).random((30, 40), np.float32) - 0.5
    whole, chained = whole_and_chained(model, plane)
    assert_float32_close(chained, whole)


@pytest.fixture
def fresh_load(tmp_path, monkeypatch):
    """`compiled.load` forgetting what it loaded, an empty kernel cache; restored after."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(compiled, "unavailable", {})
    compiled.load.cache_clear()
    yield
    compiled.load.cache_clear()


def test_two_threads_first_loading_it_build_it_once(fresh_load, tmp_path):
    # inputs side by side reach their first kernel call together
    start = threading.Barrier(2)

    def first_load():
        start.wait()
        return compiled.load("conv_chain")
    with ThreadPoolExecutor(2) as pool:
        libraries = list(pool.map(lambda _: first_load(), range(2)))
    assert all(library is not None for library in libraries)
    built = list((tmp_path / "srcaffe" / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"


def test_the_avx2_build_gives_the_same_sums(fresh_load, monkeypatch):
    # vectors of 8 floats, 24 pixels at a time: every pixel the same sum in the same order as
    # the AVX-512 build's, so the same values to the bit
    model = torch_engine.load_for_inference(SHIPPED)
    plane = np.random.default_rng(8).random((50, 130), np.float32)
    widest = model.forward(plane)
    monkeypatch.setattr(compiled, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    compiled.load.cache_clear()
    assert compiled.build_flags("conv_chain") == ("-mavx2", "-mfma")
    assert conv_chain.library() is not None
    assert np.array_equal(model.forward(plane), widest)
    monkeypatch.setattr(compiled, "cpu_flags", lambda: frozenset({"sse4_2"}))
    compiled.load.cache_clear()
    assert conv_chain.library() is None
    assert compiled.unavailable["conv_chain"] == \
        "this processor has none of avx512f and fma, avx2 and fma"


def test_no_kernel_with_autograd_or_without_a_compiler(tmp_path, monkeypatch):
    bottom = torch.rand(1, 12, 5, 5).contiguous(memory_format=torch.channels_last)
    with torch.enable_grad():
        assert not conv_chain.applies(bottom)
    with torch.no_grad():
        assert conv_chain.applies(bottom)
        assert not conv_chain.applies(bottom.double())
        assert not conv_chain.applies(bottom.contiguous())      # channels apart
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        monkeypatch.setenv("CC", "/nonexistent/cc")
        monkeypatch.setattr(compiled, "unavailable", {})
        compiled.load.cache_clear()
        try:
            assert conv_chain.library() is None and not conv_chain.applies(bottom)
            assert "no C compiler" in compiled.unavailable["conv_chain"]
        finally:
            compiled.load.cache_clear()
