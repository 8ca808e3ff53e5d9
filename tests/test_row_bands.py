"""Inference in row bands (runner/net/row_bands.py): the same result to the bit as the whole
layers, for the nets it bands and those it leaves alone."""
import numpy as np
import pytest
import torch

from runner.infer import torch_engine
from runner.net import conv_chain, fast_paths, row_bands
from sr_models import ROOT, save_initial_model, stronger_deconvolution

# (net file, the chains' (first, last) steps of its deploy net); the shipped FSRCNN's deploy
# net has no padding, the tutorial's pads every layer and its deconvolution
NETS = {"fsrcnn_net.yaml": [(0, 2), (12, 14)], "fsrcnn_s_net.yaml": [(0, 2), (6, 8)],
        "espcn_net.yaml": [], "srcnn_net.yaml": [], "vdsr_net.yaml": []}
SHIPPED = ROOT / "results" / "models" / "fsrcnn_x3.model"


@pytest.fixture(autouse=True)
def layers_in_bands(monkeypatch):
    """Row bands, not conv_chain.py's kernel (which takes FSRCNN whole where it runs, the same
    values summed in another order: its own tests)."""
    monkeypatch.setattr(conv_chain, "library", lambda: None)


def random_model(folder, name):
    path = save_initial_model(folder / "random.model", ROOT / "configs" / name,
                              edit=stronger_deconvolution if name.startswith("fsrcnn") else None,
                              scale=3)
    return name, torch_engine.load_for_inference(path)


@pytest.fixture(scope="module", params=sorted(NETS))
def net_model(request, tmp_path_factory):
    return random_model(tmp_path_factory.mktemp("bands"), request.param)


@pytest.fixture(scope="module", params=sorted(name for name in NETS if NETS[name]))
def banded_model(request, tmp_path_factory):
    return random_model(tmp_path_factory.mktemp("bands"), request.param)


def whole_and_banded(model, plane):
    """The output blob of a plane, padded as predict pads it, computed whole (no `keep`:
    nothing banded) and as predict computes it."""
    net, name = model.net, model.output_name
    fed = {model.input_name: torch.from_numpy(model.geometry.padded(plane))[None, None].contiguous(
        memory_format=torch.channels_last)}
    with torch.no_grad():
        return net(fed)[name], net(fed, keep=(name,))[name]


def chain_steps(model, keep):
    return [(chain.first, chain.last) for chain in row_bands.plan(
        model.net.layer_modules(), set(keep), {model.input_name: 1})]


def test_the_plan_bands_the_runs_that_widen_and_narrow(net_model):
    name, model = net_model
    assert chain_steps(model, [model.output_name]) == NETS[name]


@pytest.mark.parametrize("height, width", [(75, 41), (33, 70), (5, 3), (1, 1), (96, 64)])
def test_bands_give_the_whole_layers_result_to_the_bit(net_model, height, width):
    _, model = net_model
    plane = np.random.default_rng(height * width).random((height, width), np.float32)
    whole, banded = whole_and_banded(model, plane)
    assert whole.shape == banded.shape and whole.abs().max() > 0
    assert torch.equal(whole, banded)


def test_the_shipped_model_in_bands_is_its_whole_self():
    model = torch_engine.load_for_inference(SHIPPED)
    assert chain_steps(model, [model.output_name]) == [(0, 2), (12, 14)]
    plane = np.random.default_rng(3).random((row_bands.BAND_ROWS * 3 + 7, 50), np.float32)
    whole, banded = whole_and_banded(model, plane)
    assert torch.equal(whole, banded)


def test_a_blob_asked_for_or_read_later_is_never_banded_away(banded_model):
    name, model = banded_model
    layers = model.net.layer_modules()
    first, last = NETS[name][0]
    inner = layers[first][0].top[0]
    assert (first, last) not in chain_steps(model, [model.output_name, inner])
    # a layer after the run reading its inner blob (a branch) keeps it whole too
    reader = (layers[last][0].__class__(name="branch", type="ReLU", bottom=[inner],
                                        top=["branch"]), layers[first + 1][1])
    steps = layers[:last + 1] + [reader] + layers[last + 1:]
    assert (first, last) not in [(chain.first, chain.last) for chain in row_bands.plan(
        steps, {model.output_name}, {model.input_name: 1})]


def test_no_bands_with_autograd_or_with_the_fast_paths_off(net_model):
    name, model = net_model
    fed = {model.input_name: torch.rand(1, 1, 20, 20)}
    assert not model.net._inference_chains(fed, keep=None)
    with torch.enable_grad():
        assert not model.net._inference_chains(fed, keep=(model.output_name,))
    with torch.no_grad(), fast_paths.disabled():
        assert not model.net._inference_chains(fed, keep=(model.output_name,))
    with torch.no_grad():
        assert bool(model.net._inference_chains(fed, keep=(model.output_name,))) \
            == bool(NETS[name])


def test_a_dilated_first_layer_in_bands(tmp_path):
    # a 3x3 kernel dilated by 2 reads 5 rows, padded by 2 as the tutorial's 5x5
    text = (ROOT / "configs" / "fsrcnn_net.yaml").read_text().replace(
        "kernel_size: 5, pad: 2", "kernel_size: 3, pad: 2, dilation: 2")
    assert "dilation: 2" in text
    model = torch_engine.load_for_inference(save_initial_model(
        tmp_path / "dilated.model", net_text=text, edit=stronger_deconvolution))
    assert chain_steps(model, [model.output_name]) == NETS["fsrcnn_net.yaml"]
    plane = np.random.default_rng(7).random((row_bands.BAND_ROWS + 9, 29), np.float32)
    whole, banded = whole_and_banded(model, plane)
    assert torch.equal(whole, banded)


def test_a_batch_of_planes_in_bands():
    model = torch_engine.load_for_inference(SHIPPED)
    fed = {model.input_name: torch.rand(3, 1, 45, 38, generator=torch.Generator()
                                        .manual_seed(0))}
    with torch.no_grad():
        whole = model.net(fed)[model.output_name]
        banded = model.net(fed, keep=(model.output_name,))[model.output_name]
    assert torch.equal(whole, banded)


def test_weights_changed_after_a_pass_are_read_by_the_next():
    # a test net shares its weights with the training net, which changes them every step
    model = torch_engine.load_for_inference(SHIPPED)
    plane = np.random.default_rng(5).random((40, 40), np.float32)
    before = model.forward(plane)
    deconvolution = model.net.layer_modules()[-1][1]
    with torch.no_grad():
        deconvolution.weight.mul_(2)
        deconvolution.bias.mul_(2)
    assert np.array_equal(model.forward(plane), 2 * before)
