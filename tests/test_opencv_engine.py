"""The OpenCV engine (runner/infer/opencv_engine.py) computes what the torch engine computes,
within 1e-5, on real Set5 planes, whole and tiled, for the shipped models and for a net of every
layer type it claims; `runner predict` takes it by default without importing torch, and falls
back to torch (or, forced, says which layer it cannot run) where it cannot."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import ROOT, assert_one_line_error, cli_environment
from in_process import run_main
from runner import predict
from runner.config import loading, schema
from runner.errors import UserError
from runner.imaging import datasets, matlab
from runner.infer import deploy, engines, opencv_engine, tiles
from runner.net import compiled
from sr_models import save_initial_model, stronger_deconvolution
from test_caffe_export_layers import trained_looking
from test_deploy import BRANCHING_NET
from test_predict import BUTTERFLY, within_one_level, written

SHIPPED = ROOT / "results" / "models"
TOLERANCE = 1e-5
BABY = BUTTERFLY.with_name("baby_GT.bmp")


def set5_y(path):
    return matlab.rgb2y(cv2.imread(str(path)), channel_order="bgr") / 255.0


def both_engines(model_path):
    torch_model = engines.load_for_inference(model_path, engine="torch")
    opencv_model = engines.load_for_inference(model_path, engine="opencv")
    assert (torch_model.engine, opencv_model.engine) == ("torch", "opencv")
    assert opencv_model.geometry == torch_model.geometry
    assert opencv_model.scale == torch_model.scale
    return torch_model, opencv_model


def assert_engines_agree(model_path, plane, tile_sizes=(16, 29), tolerance=TOLERANCE):
    """Whole, OpenCV's output is torch's within `tolerance`; tiled, it is its own whole one."""
    torch_model, opencv_model = both_engines(model_path)
    ours = tiles.super_resolve(opencv_model, plane, tile_size=None)
    reference = tiles.super_resolve(torch_model, plane, tile_size=None)
    assert ours.shape == reference.shape and reference.std() > 0.05
    assert np.abs(ours - reference).max() < tolerance
    for tile_size in tile_sizes:
        tiled = tiles.super_resolve(opencv_model, plane, tile_size=tile_size)
        assert np.abs(tiled - ours).max() < tolerance, tile_size


def test_shipped_fsrcnn_x3_on_whole_set5_images():
    # the butterfly whole (256x256, one pass), the baby (512x512) in predict's tiles of 256
    assert_engines_agree(SHIPPED / "fsrcnn_x3.model", set5_y(BUTTERFLY), tile_sizes=(37,))
    torch_model, opencv_model = both_engines(SHIPPED / "fsrcnn_x3.model")
    baby = set5_y(BABY)
    assert np.abs(tiles.super_resolve(opencv_model, baby)
                  - tiles.super_resolve(torch_model, baby)).max() < TOLERANCE


@pytest.mark.parametrize("shipped", ["fsrcnn_s_x3", "srcnn_x3", "fsrcnn_x2", "fsrcnn_x4"])
def test_shipped_models_on_a_crop(shipped):
    """FSRCNN-s, SRCNN (no deconvolution: a bicubic input), x2's 10x10 deconvolution and x4's."""
    assert_engines_agree(SHIPPED / f"{shipped}.model", set5_y(BUTTERFLY)[60:150, 90:161])


def test_an_odd_deconvolution_at_an_even_scale(tmp_path):
    # the paper's 9x9 deconvolution at stride 2: an odd output, its extra pixel at the end
    model_path = save_initial_model(tmp_path / "odd.model",
                                    ROOT / "configs" / "fsrcnn_x2_long_net.yaml",
                                    edit=stronger_deconvolution)
    assert engines.load_for_inference(model_path).engine == "opencv"
    assert_engines_agree(model_path, set5_y(BUTTERFLY)[60:150, 90:161])


# every layer type the engine runs, in a net of the kind predict runs (layer types in
# comments): name -> (net file, LR crop, tolerance). DRRN's random weights through 52 layers of
# 128 channels give outputs up to 8, float32 sums of another order 4e-5 off: 1e-5 of that range.
NETS = {"vdsr": (ROOT / "configs" / "vdsr_net.yaml", 32, TOLERANCE),       # ReLU, Eltwise
        "drrn": (ROOT / "configs" / "drrn_net.yaml", 20, 8e-5),           # BatchNorm, Scale
        "branching": (None, 48, TOLERANCE)}                # Split, Pooling, Concat, TanH


@pytest.mark.parametrize("name", NETS)
def test_every_supported_layer_type_in_a_net(name, tmp_path):
    net_file, crop, tolerance = NETS[name]
    if net_file is None:
        net_file = tmp_path / "branching.yaml"
        net_file.write_text(BRANCHING_NET)
    model_path = save_initial_model(tmp_path / "net.model", net_file, edit=trained_looking,
                                    scale=3)
    assert_engines_agree(model_path, set5_y(BUTTERFLY)[100:100 + crop, 90:90 + crop],
                         tile_sizes=(17,), tolerance=tolerance)


def test_the_nets_above_hold_every_supported_type():
    texts = [BRANCHING_NET] + [path.read_text() for path, _, _ in NETS.values() if path]
    tested = {layer.type for text in texts for layer in deploy.deploy_net(
        loading.parse_config(schema.NetParameter, text, "net.yaml")).layer}
    tested |= {"PReLU", "Deconvolution"}              # FSRCNN's, tested above
    assert opencv_engine.SUPPORTED_TYPES <= tested


def test_a_net_opencv_does_not_run_goes_to_torch_or_is_one_error(tmp_path, capfd):
    # ESPCN's PixelShuffle is srcaffe's own layer; OpenCV's Caffe importer has none
    model_path = save_initial_model(tmp_path / "espcn.model", ROOT / "configs" / "espcn_net.yaml")
    assert engines.load_for_inference(model_path).engine == "torch"
    with pytest.raises(UserError, match=r"espcn.model: --engine opencv .*\(PixelShuffle\)"):
        engines.load_for_inference(model_path, engine="opencv")
    image = tmp_path / "small.png"
    cv2.imwrite(str(image), cv2.imread(str(BUTTERFLY))[:20, :20])
    result = run_main(capfd, "predict", image, "--model", model_path, "--out", tmp_path / "out",
                      "--engine", "opencv")
    assert_one_line_error(result, "espcn.model", "PixelShuffle")
    assert_one_line_error(run_main(capfd, "predict", image, "--engine", "opencv", "--device",
                                   "cuda", "--out", tmp_path / "out"), "--device cuda")


def test_an_opencv_without_caffes_importer_goes_to_torch_or_is_one_error(monkeypatch):
    """OpenCV 5 reads no Caffe nets: auto takes torch, a forced --engine opencv says why."""
    model_path = SHIPPED / "fsrcnn_x3.model"
    monkeypatch.delattr(cv2.dnn, "readNetFromCaffe", raising=False)   # absent from OpenCV 5
    assert engines.load_for_inference(model_path).engine == "torch"
    with pytest.raises(UserError, match=r"fsrcnn_x3.model: OpenCV .* reads no Caffe nets"):
        engines.load_for_inference(model_path, engine="opencv")


def test_threads_are_opencvs():
    model = engines.load_for_inference(SHIPPED / "fsrcnn_s_x3.model")
    model.use_threads(1)
    assert cv2.getNumThreads() == 1


def test_predict_by_default_imports_no_torch_and_writes_torchs_png(tmp_path):
    probe = ("import sys; from runner import cli; "
             f"code = cli.main(['predict', {str(BUTTERFLY)!r}, '--out', {str(tmp_path)!r}, "
             f"'--model', {str(SHIPPED / 'fsrcnn_x3.model')!r}, '--threads', '1']); "
             "print(code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=cli_environment(), timeout=600, check=True)
    assert "opencv engine" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "0 False", result.stdout + result.stderr
    output = tmp_path / "butterfly_GT_x3_fsrcnn-56_12_4.png"
    torch_model = engines.load_for_inference(SHIPPED / "fsrcnn_x3.model", engine="torch")
    predict.predict_image(torch_model, BUTTERFLY, [tmp_path / "torch.png"])
    within_one_level(written(output), written(tmp_path / "torch.png"))


def test_auto_takes_torch_for_large_work_and_videos():
    # OpenCV's net is slower per pixel: it pays where torch's import, paid in every process,
    # is the larger cost
    set14 = sorted((datasets.data_root() / "Set14").iterdir())
    pixels = predict.input_pixels(set14, limit=10 ** 9)
    assert pixels == sum(height * width for height, width
                         in (cv2.imread(str(path)).shape[:2] for path in set14))
    assert predict.input_pixels(set14, limit=1) < pixels       # counting stops past the limit
    assert predict.input_pixels([BUTTERFLY, ROOT / "clip.mp4"], limit=10 ** 9) is None
    assert predict.input_pixels([ROOT / "absent.png"], limit=10 ** 9) is None
    limit = engines.opencv_pixel_limit(threads=2)
    assert limit == engines.opencv_limits().one_input
    assert engines.engine_for("auto", pixels // 2, limit) == "auto"
    assert [engines.engine_for("auto", count, limit) for count in (1, limit, limit + 1, None)] \
        == ["auto", "auto", "torch", "torch"]
    assert engines.opencv_pixel_limit(threads=2, processes=2) == 2 * limit
    # several inputs side by side on several threads, or a process on one thread: torch's
    # import pays off sooner than for one input on several threads
    for limits in (engines.WITH_OUR_KERNEL, engines.WITH_ONEDNN):
        one_input = engines.opencv_pixel_limit(2, limits=limits)
        assert engines.opencv_pixel_limit(2, several_inputs=True, limits=limits) < one_input
        assert engines.opencv_pixel_limit(1, limits=limits) < one_input
        assert engines.opencv_pixel_limit(1, 2, limits=limits) == 2 * limits.one_thread
    assert [engines.engine_for(name, None, limit) for name in ("torch", "opencv")] == \
        ["torch", "opencv"]


def test_the_limits_follow_what_torch_computes_with(monkeypatch):
    # torch's net is faster where conv_chain's kernel runs, and pays for its import sooner
    assert engines.WITH_OUR_KERNEL.one_input < engines.WITH_ONEDNN.one_input
    assert engines.WITH_OUR_KERNEL.side_by_side < engines.WITH_ONEDNN.side_by_side
    monkeypatch.setattr(compiled, "cpu_flags", lambda: frozenset({"sse4_2"}))
    assert engines.opencv_limits() == engines.WITH_ONEDNN
    monkeypatch.setattr(compiled, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(compiled, "compiler", lambda: "/usr/bin/cc")
    assert engines.opencv_limits() == engines.WITH_OUR_KERNEL
    monkeypatch.setattr(compiled, "compiler", lambda: None)
    assert engines.opencv_limits() == engines.WITH_ONEDNN


def test_one_thread_takes_torch_beyond_its_limit(tmp_path, capfd, monkeypatch):
    """`--threads 1` on more input pixels than OpenCV's one-thread limit (lowered here to below
    two Set5 images) loads torch; `--threads 2` on the same images, side by side, keeps OpenCV."""
    monkeypatch.setattr(engines, "opencv_limits", lambda: engines.OpenCVLimits(
        one_input=10 ** 9, side_by_side=10 ** 9, one_thread=100_000))
    for threads, engine in (("1", "torch"), ("2", "opencv")):
        result = run_main(capfd, "predict", BUTTERFLY, BABY, "--model",
                          SHIPPED / "fsrcnn_x3.model", "--out", tmp_path / threads,
                          "--threads", threads)
        assert result.returncode == 0, result.stderr
        assert f"; {engine} engine)" in result.stdout.splitlines()[0]


def test_blobs_that_do_not_fit_the_net_are_refused_as_torch_refuses_them(tmp_path):
    def narrower(blobs):
        blobs["conv1"][0] = np.zeros((32, 1, 5, 5), np.float32)
    model_path = save_initial_model(tmp_path / "narrow.model", edit=narrower)
    problem = r"layer 'conv1': blob 0 has shape \(32, 1, 5, 5\) in the source but \(56, 1, 5, 5\)"
    for engine in engines.ENGINES:
        with pytest.raises(UserError, match=f"narrow.model: {problem}"):
            engines.load_for_inference(model_path, engine=engine)
