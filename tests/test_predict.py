"""`runner predict`: the colour pipeline, tiles, file kinds, --degrade, video, and bad input."""
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers import assert_one_line_error, run_cli
from in_process import run_main
from runner import predict
from runner.errors import UserError
from runner.imaging import datasets, images, matlab, picture
from runner.infer import colour, engines, tile_sizes, tiles, torch_engine
from runner.score import degraded
from sr_models import ROOT, save_initial_model, stronger_deconvolution, trained_model

BUTTERFLY = datasets.data_root() / "Set5" / "butterfly_GT.bmp"
NET_LABEL = "fsrcnn-56_12_4"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_initial_model(tmp_path_factory.mktemp("model") / "random.model",
                              edit=stronger_deconvolution)


@pytest.fixture(scope="module")
def model(model_file):
    """The model as `runner predict` loads it (its default engine)."""
    return engines.load_for_inference(model_file)


def smooth_image(height, width, channels, dtype=np.uint8, seed=0):
    """A smooth random image: coarse noise upscaled, full range of `dtype`."""
    generator = np.random.default_rng(seed)
    coarse = generator.random((max(height // 8, 2), max(width // 8, 2), channels))
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    top = np.iinfo(dtype).max
    image = np.clip(image * top, 0, top).astype(dtype).reshape(height, width, channels)
    return image[:, :, 0] if channels == 1 else image


def written(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def files_in(folder):
    return sorted(path.name for path in Path(folder).iterdir()) if Path(folder).exists() else []


# --------------------------------------------------------------------------- tiles and geometry

def test_tiled_result_equals_the_whole_image(model):
    y = matlab.rgb2y(cv2.imread(str(BUTTERFLY)), channel_order="bgr") / 255.0
    whole = tiles.super_resolve(model, y, tile_size=None)
    assert whole.shape == (768, 768) and whole.std() > 0.05   # a far-from-trivial output
    for tile_size in (64, 37):
        tiled = tiles.super_resolve(model, y, tile_size=tile_size)
        assert np.abs(tiled - whole).max() < 1e-5, tile_size


def test_small_planes_run_whole_and_large_ones_in_tiles(model):
    # a BSD100 image (321x481) and a 640x360 video frame run whole, a 1080p photo in tiles; an
    # SRCNN-style net's input is the upscaled plane, nine times as many pixels at x3
    assert tile_sizes.tile_size_for(model, (321, 481), 256) is None
    assert tile_sizes.tile_size_for(model, (360, 640), 256) is None
    assert tile_sizes.tile_size_for(model, (1080, 1920), 256) == 256
    srcnn = torch_engine.load_for_inference(ROOT / "results" / "models" / "srcnn_x3.model")
    assert tile_sizes.tile_size_for(srcnn, (321, 481), 256) == 256
    assert tile_sizes.tile_size_for(srcnn, (170, 170), 256) is None


@pytest.mark.parametrize("shipped", ["fsrcnn_x3", "fsrcnn_s_x3", "fsrcnn_x4", "srcnn_x3"])
def test_tiles_of_the_shipped_models_are_seamless(shipped):
    """Trained weights reach as far as the receptive field does: tiles overlapping by the
    geometry's context (half the field and two) give the whole-image result at every seam, for
    unpadded nets with their mirrored border, a x4 deconvolution and SRCNN's bicubic input."""
    model = torch_engine.load_for_inference(ROOT / "results" / "models" / f"{shipped}.model")
    y = matlab.rgb2y(cv2.imread(str(BUTTERFLY)), channel_order="bgr")[:90, :71] / 255.0
    whole = tiles.super_resolve(model, y, tile_size=None)
    for tile_size in (16, 29):
        assert np.abs(tiles.super_resolve(model, y, tile_size=tile_size) - whole).max() < 1e-5


@pytest.mark.parametrize("shipped", ["fsrcnn_x3", "srcnn_x3"])
def test_the_image_is_extended_as_its_mirror_at_the_border(shipped):
    """An unpadded net sees past the image's edge the image mirrored there (MATLAB's
    'symmetric'), the rule the held-out images chose: super-resolving a plane gives the centre
    of super-resolving it with a mirrored border of its own, and not with its edge repeated."""
    model = torch_engine.load_for_inference(ROOT / "results" / "models" / f"{shipped}.model")
    y = matlab.rgb2y(cv2.imread(str(BUTTERFLY)), channel_order="bgr")[:60, :45] / 255.0
    border = model.geometry.padding + 3
    centre = (slice(border * model.scale, -border * model.scale),) * 2
    drawn = tiles.super_resolve(model, y, tile_size=None)

    def extended(mode):
        return tiles.super_resolve(model, np.pad(y, border, mode=mode), tile_size=None)[centre]
    assert np.abs(extended("symmetric") - drawn).max() < 1e-5
    assert np.abs(extended("edge") - drawn).max() > 1e-2


@pytest.mark.parametrize("scale, shrink, padding", [(2, 31, 8), (4, 55, 7)])
def test_tiles_of_a_net_whose_output_is_odd_are_seamless(tmp_path, scale, shrink, padding):
    """The long-schedule x2 and x4 nets: a 9x9 deconvolution at stride 2 (pad 7) or 4 (pad 6)
    makes the output of the 35 or 33 LR pixels of a training window 2 * 35 - 31 = 39 or
    4 * 33 - 55 = 77 pixels, odd. 8 or 7 mirrored pixels on each side (the cut before the
    footprint, shrink // 2, over the factor, rounded up) give 2 * 47 - 31 = 2 * 31 + 1
    (4 * 45 - 55 = 4 * 31 + 1): nothing cut before the image's footprint, the extra pixel
    after it; tiles give the whole-image result at every seam all the same."""
    net_file = ROOT / "configs" / f"fsrcnn_x{scale}_long_net.yaml"
    model = torch_engine.load_for_inference(save_initial_model(
        tmp_path / "odd.model", net_file, edit=stronger_deconvolution))
    geometry = model.geometry
    assert (model.scale, geometry.shrink, geometry.padding) == (scale, shrink, padding)
    assert (geometry.crop_start, geometry.crop_end) == (0, 1)
    y = matlab.rgb2y(cv2.imread(str(BUTTERFLY)), channel_order="bgr")[:90, :71] / 255.0
    whole = tiles.super_resolve(model, y, tile_size=None)
    assert whole.shape == (90 * scale, 71 * scale) and whole.std() > 0.05
    for tile_size in (16, 29):
        assert np.abs(tiles.super_resolve(model, y, tile_size=tile_size) - whole).max() < 1e-5


def test_srcnn_style_net_is_fed_a_bicubic_input_and_tiles_too(tmp_path):
    # SRCNN 9-1-5 without padding: 12 pixels less output than input, its scale from --scale
    # where the file does not record its training data's
    path = save_initial_model(tmp_path / "srcnn.model", ROOT / "configs" / "srcnn_net.yaml",
                              edit=lambda blobs: blobs["conv3"][0].__imul__(1e4))
    with pytest.raises(UserError, match="does not say its scale: give --scale"):
        torch_engine.load_for_inference(path)
    recorded = save_initial_model(tmp_path / "srcnn_x4.model",
                                  ROOT / "configs" / "srcnn_net.yaml", scale=4)
    assert torch_engine.load_for_inference(recorded).scale == 4
    assert torch_engine.load_for_inference(recorded, scale=2).scale == 2   # SRCNN runs at any scale
    srcnn = torch_engine.load_for_inference(path, scale=3)
    assert (srcnn.scale, srcnn.geometry.shrink, srcnn.geometry.padding) == (3, 12, 6)
    plane = smooth_image(40, 30, 1) / 255.0
    whole = tiles.super_resolve(srcnn, plane, tile_size=None)
    assert whole.shape == (120, 90) and whole.std() > 0
    assert np.abs(tiles.super_resolve(srcnn, plane, tile_size=50) - whole).max() < 1e-5


def test_deploy_geometry_of_fsrcnn(model):
    assert (model.scale, model.input_name, model.output_name) == (3, "data", "deconv")
    assert model.geometry.padding == model.geometry.crop_start == model.geometry.crop_end == 0
    # half the receptive field's width (conv1 4 + conv3..6 4 x 2 + deconv 8/3 + 1 pixels,
    # rounded up: 16), plus two
    assert model.geometry.context == 10


# --------------------------------------------------------------------------- colour pipeline

def test_colour_goes_y_through_the_net_and_chroma_bicubic(model):
    # taller than a band of colour.CHUNK_ROWS and than a tile: the bands meet seamlessly
    image = picture.from_array(smooth_image(3 * colour.CHUNK_ROWS + 5, 24, 3), "synthetic")
    result = colour.super_resolve_picture(model, image, tile_size=40, dtype=np.float64)
    assert result.pixels.dtype == np.float64
    ycbcr = matlab.rgb2ycbcr(result.pixels, channel_order="bgr")
    source = matlab.rgb2ycbcr(image.pixels, channel_order="bgr")
    expected_y = tiles.super_resolve(model, source[:, :, 0] / 255.0) * 255.0
    np.testing.assert_allclose(ycbcr[:, :, 0], expected_y, atol=1e-3)
    np.testing.assert_allclose(ycbcr[:, :, 1:], matlab.imresize(source[:, :, 1:], 3), atol=1e-6)


@pytest.mark.parametrize("eight_bit", [False, True])
@pytest.mark.parametrize("source", ["butterfly", "rgba", "gray", "16-bit", "tiny"])
def test_float32_colour_is_the_float64_result_within_one_level(model, source, eight_bit):
    """predict's default float32 planes write what the float64 pipeline writes, give or take
    one level where a value lies within float32 rounding of a rounding boundary; so do the
    8-bit colour pixels converted and rounded in one go (`eight_bit`)."""
    arrays = {"butterfly": lambda: cv2.imread(str(BUTTERFLY)),
              "rgba": lambda: smooth_image(33, 27, 4, seed=3),
              "gray": lambda: smooth_image(31, 29, 1, seed=4),
              "16-bit": lambda: smooth_image(25, 30, 3, np.uint16, seed=5),
              "tiny": lambda: smooth_image(2, 1, 3, seed=6)}
    image = picture.from_array(arrays[source](), source)
    fast = colour.super_resolve_picture(model, image, eight_bit=eight_bit)
    exact = colour.super_resolve_picture(model, image, dtype=np.float64)
    in_one_go = eight_bit and image.is_colour and image.bit_depth == 8
    assert fast.pixels.dtype == (np.uint8 if in_one_go else np.float32)
    assert exact.pixels.dtype == np.float64
    written_fast, written_exact = picture.to_array(fast), picture.to_array(exact)
    assert written_fast.shape == written_exact.shape
    assert written_fast.dtype == written_exact.dtype
    difference = np.abs(written_fast.astype(np.int64) - written_exact.astype(np.int64))
    assert difference.max() <= 1
    assert (difference == 0).mean() > 0.99


def within_one_level(ours, expected):
    """Equal but for float32 rounding at rounding boundaries: at most one level, rarely."""
    assert ours.shape == expected.shape and ours.dtype == expected.dtype
    difference = np.abs(ours.astype(np.int64) - expected.astype(np.int64))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_predict_writes_the_network_result_and_bicubic_only_when_asked(tmp_path, model_file,
                                                                        model, capfd):
    result = run_main(capfd, "predict", BUTTERFLY, "--model", model_file, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"model: {model_file}" in result.stdout
    network = written(tmp_path / f"butterfly_GT_x3_{NET_LABEL}.png")
    # the streamed PNG holds exactly the pipeline's result
    expected = picture.to_array(colour.super_resolve_picture(model, picture.read(BUTTERFLY),
                                                             eight_bit=True))
    np.testing.assert_array_equal(network, expected)
    assert files_in(tmp_path) == [f"butterfly_GT_x3_{NET_LABEL}.png"]
    result = run_main(capfd, "predict", BUTTERFLY, "--model", model_file, "--out", tmp_path,
                      "--bicubic")
    assert result.returncode == 0, result.stderr
    bicubic = written(tmp_path / "butterfly_GT_x3_bicubic.png")
    within_one_level(bicubic, matlab.to_uint8(
        matlab.imresize(cv2.imread(str(BUTTERFLY)).astype(float), 3)))
    assert files_in(tmp_path) == sorted([f"butterfly_GT_x3_{NET_LABEL}.png",
                                         "butterfly_GT_x3_bicubic.png"])


def test_jpg_and_webp_outputs_at_a_quality(tmp_path, model_file, capfd):
    source = tmp_path / "rgba.png"
    cv2.imwrite(str(source), smooth_image(40, 30, 4, seed=7))
    png = tmp_path / "png"
    assert run_main(capfd, "predict", source, "--model", model_file, "--out", png).returncode == 0
    reference = written(png / f"rgba_x3_{NET_LABEL}.png")
    for format_name, quality, channels in (("jpg", 90, 3), ("webp", 95, 4)):
        out = tmp_path / format_name
        result = run_main(capfd, "predict", source, "--model", model_file, "--out", out,
                          "--format", format_name, "--quality", quality)
        assert result.returncode == 0, result.stderr
        path = out / f"rgba_x3_{NET_LABEL}.{format_name}"
        magic = {"jpg": b"\xff\xd8\xff", "webp": b"RIFF"}[format_name]
        assert path.read_bytes().startswith(magic)
        image = written(path)
        assert image.shape == (120, 90, channels)       # JPEG has no alpha: dropped
        error = image[:, :, :3].astype(float) - reference[:, :, :3]
        # PSNR against the PNG (the random net draws fine texture, which JPEG smooths)
        assert 10 * np.log10(255 ** 2 / np.mean(error ** 2)) > 25
    assert_one_line_error(run_main(capfd, "predict", source, "--model", model_file, "--out",
                                   tmp_path, "--format", "jpg", "--quality", "101"),
                          "--quality", "1 to 100")


def test_jobs_and_side_by_side_write_what_one_at_a_time_writes(tmp_path, model_file, capfd):
    """A folder one image at a time on one thread, in two processes, and side by side in one
    (torch's engine on two threads): the same files (images and --degrade's figures), reported
    in the inputs' order."""
    sources = tmp_path / "in"
    sources.mkdir()
    for seed in range(5):
        cv2.imwrite(str(sources / f"image{seed}.png"), smooth_image(30, 20 + seed, 3, seed=seed))
    ways = {"alone": ["--engine", "torch", "--threads", "1"],
            "jobs": ["--engine", "torch", "--jobs", "2"],
            "side_by_side": ["--engine", "torch", "--threads", "2"]}
    for name, flags in ways.items():
        result = run_main(capfd, "predict", sources, "--model", model_file, "--out",
                          tmp_path / name, *flags)
        assert result.returncode == 0, result.stderr
        reported = [line.split(" -> ")[0] for line in result.stdout.splitlines()
                    if " -> " in line]
        assert reported == [str(sources / f"image{seed}.png") for seed in range(5)]
        # --degrade's figures too: matplotlib draws in two threads at once
        result = run_main(capfd, "predict", sources, "--model", model_file, "--out",
                          tmp_path / name, "--degrade", *flags)
        assert result.returncode == 0, result.stderr
    for name in ways:
        assert files_in(tmp_path / name) == files_in(tmp_path / "alone")
        for file in files_in(tmp_path / "alone"):
            np.testing.assert_array_equal(written(tmp_path / name / file),
                                          written(tmp_path / "alone" / file))


def test_grayscale_rgba_16bit_and_cmyk_inputs(tmp_path, model):
    sources = tmp_path / "in"
    sources.mkdir()
    cv2.imwrite(str(sources / "gray.png"), smooth_image(12, 10, 1))
    rgba = smooth_image(12, 10, 4, seed=1)
    cv2.imwrite(str(sources / "rgba.png"), rgba)
    deep = smooth_image(12, 10, 3, np.uint16, seed=2)
    cv2.imwrite(str(sources / "deep.png"), deep)
    Image.new("CMYK", (10, 12), (10, 120, 200, 30)).save(sources / "cmyk.jpg")
    options = predict.Options(bicubic=True)
    jobs = predict.plan(predict.collect_inputs([sources]), model, tmp_path / "out",
                        options=options)
    results = dict((job.source.name, paths) for job, paths in predict.run(jobs, model, options))
    gray = written(results["gray.png"][0])
    assert gray.shape == (36, 30) and gray.dtype == np.uint8
    with_alpha = written(results["rgba.png"][0])
    assert with_alpha.shape == (36, 30, 4)
    np.testing.assert_array_equal(with_alpha[:, :, 3],
                                  matlab.to_uint8(matlab.imresize(rgba[:, :, 3].astype(float), 3)))
    sixteen = written(results["deep.png"][0])
    assert sixteen.shape == (36, 30, 3) and sixteen.dtype == np.uint16
    sixteen_bicubic = written(results["deep.png"][1])
    expected = np.clip(np.round(matlab.imresize(deep / 257.0, 3) * 257.0), 0, 65535)
    within_one_level(sixteen_bicubic, expected.astype(np.uint16))
    assert written(results["cmyk.jpg"][0]).shape == (36, 30, 3)


def test_tiny_images_are_super_resolved_with_the_nets_zero_padding(tmp_path, model):
    # Decision: smaller than the receptive field (17 LR pixels), even 1x1, is not an error
    for size in ((1, 1), (5, 4)):
        path = tmp_path / f"tiny_{size[0]}x{size[1]}.png"
        cv2.imwrite(str(path), smooth_image(*size, 3))
        network_path, _ = predict.predict_image(model, path, [tmp_path / f"n{size}.png",
                                                      tmp_path / f"b{size}.png"])
        assert written(network_path).shape == (size[0] * 3, size[1] * 3, 3)


# --------------------------------------------------------------------------- --degrade

def test_degrade_writes_the_figure_and_the_trained_net_beats_bicubic(tmp_path_factory, capfd):
    snapshot_path = trained_model(tmp_path_factory.mktemp("trained"))
    out = tmp_path_factory.mktemp("figure")
    result = run_main(capfd, "predict", BUTTERFLY, "--model", snapshot_path, "--degrade", "--out",
                      out)
    assert result.returncode == 0, result.stderr
    figure_path = out / f"butterfly_GT_x3_{NET_LABEL}_figure.png"
    figure = written(figure_path)
    assert figure.shape[1] > 3 * 256 and figure.shape[0] > 256
    line = result.stdout.strip().splitlines()[-1]
    assert "bicubic PSNR" in line and "FSRCNN-56_12_4 PSNR" in line and str(figure_path) in line
    scores = degraded.predict_degraded(torch_engine.load_for_inference(snapshot_path),
                                      BUTTERFLY, out / "again.png")
    assert scores.scores["FSRCNN-56_12_4"][0] > scores.scores["bicubic"][0]


def test_tutorial_degradation_is_blur_then_cv2_resize():
    image = picture.from_array(smooth_image(31, 20, 3), "synthetic")
    truth, low = degraded.degrade(image, 3, "tutorial")
    assert truth.size == (30, 18) and low.size == (10, 6)
    blurred = cv2.GaussianBlur(truth.pixels, (5, 5), 0)
    np.testing.assert_allclose(low.pixels, cv2.resize(blurred, (6, 10),
                                                      interpolation=cv2.INTER_CUBIC))
    _, paper = degraded.degrade(image, 3, "paper")
    np.testing.assert_allclose(paper.pixels, matlab.imresize(truth.pixels, 1 / 3))


# --------------------------------------------------------------------------- video

def write_video(path, frames=10, size=(48, 32), fps=12.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for index in range(frames):
        writer.write(smooth_image(size[1], size[0], 3, seed=index))
    writer.release()


def test_video_round_trip(tmp_path, model_file, capfd):
    clip = tmp_path / "clip.mp4"
    write_video(clip)
    result = run_main(capfd, "predict", clip, "--model", model_file, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    output = tmp_path / "out" / f"clip_x3_{NET_LABEL}.mp4"
    capture = cv2.VideoCapture(str(output))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    capture.release()
    frames = read_frames(output)
    assert len(frames) == 10 and frames[0].shape == (96, 144, 3)
    assert "10 frames at 12 fps" in result.stdout
    assert files_in(tmp_path / "out") == [output.name]


def read_frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_video_planes_are_predicts_result_without_the_rgb_round_trip(tmp_path, model):
    """A frame's Y plane goes through the net as predict's Y would, its chroma planes through
    MATLAB's bicubic at 4:2:0: each plane is the net's or imresize's result on the decoded
    planes, rounded, and the written frames' Y matches predict's result on each decoded input
    frame within the codec's loss (these saturated random colours lose most of their chroma to
    4:2:0 and the gamut: Y only)."""
    import av
    from runner.infer import video
    clip = tmp_path / "clip.mp4"
    write_video(clip, frames=6, size=(64, 48))
    out = tmp_path / "out.mp4"
    result = video.predict_video(model, clip, out, progress=False)
    assert (result.frames, result.fps) == (6, pytest.approx(12.0))
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("mpeg4", "yuv420p")
        assert (stream.codec_context.width, stream.codec_context.height) == (192, 144)
    for source, written_frame in zip(read_frames(clip), read_frames(out), strict=True):
        expected = colour.super_resolve_picture(model, picture.from_array(source, "frame"),
                                                eight_bit=True).pixels
        error = np.mean((matlab.rgb2y(written_frame, channel_order="bgr")
                         - matlab.rgb2y(expected, channel_order="bgr")) ** 2)
        assert 10 * np.log10(255 ** 2 / error) > 30
    container, stream = video.open_video(clip)
    with container:
        y, u, v = next(video.decoded_planes(container, stream, clip))
    packed = video.super_resolved_planes(model, (y, u, v))
    assert packed.shape == (144 * 3 // 2, 192) and packed.dtype == np.uint8
    big_y = tiles.super_resolve(model, y / np.float32(255), None) * 255
    np.testing.assert_allclose(packed[:144], big_y.clip(0, 255), atol=0.5 + 1e-3)
    big_u = matlab.imresize(u, 3)
    np.testing.assert_allclose(packed[144:144 + 36].reshape(72, 96), big_u.clip(0, 255),
                               atol=0.5 + 1e-3)


def write_ffv1_video(path, size, pixel_format, frames=3):
    """A lossless FFV1 video (Matroska) of `size` (width, height) in `pixel_format`, written by
    PyAV: what OpenCV's writer cannot make (4:4:4, gray, odd sides)."""
    import av
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = *size, pixel_format
        for index in range(frames):
            rgb = smooth_image(size[1], size[0], 3, seed=index)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pixel_format)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("pixel_format", ["yuv444p", "gray"])
def test_videos_of_other_pixel_formats_go_through_4_2_0(tmp_path, model, pixel_format):
    from runner.infer import video
    clip = tmp_path / "clip.mkv"
    write_ffv1_video(clip, (40, 30), pixel_format)
    result = video.predict_video(model, clip, tmp_path / "out.mp4", progress=False)
    assert result.frames == 3
    frames = read_frames(tmp_path / "out.mp4")
    assert len(frames) == 3 and frames[0].shape == (90, 120, 3)


def test_a_video_of_odd_sides_is_one_error_line(tmp_path, model_file, capfd):
    write_ffv1_video(tmp_path / "odd.mkv", (41, 30), "yuv420p")
    result = run_main(capfd, "predict", tmp_path / "odd.mkv", "--model", model_file, "--out",
                      tmp_path / "out")
    assert_one_line_error(result, "odd.mkv", "41x30 frames")
    assert files_in(tmp_path / "out") == []


@pytest.mark.parametrize("engine", ["torch", "opencv"])
def test_video_frames_side_by_side_match_one_at_a_time(tmp_path, model_file, engine):
    """A model on two threads takes two frames at once, each on one thread (OpenCV's with a
    cv2.dnn.Net of its own): the video is byte for byte the one written a frame at a time on
    one thread (so in order), and the model's threads are its own again afterwards."""
    from runner.infer import side_by_side, video
    clip = tmp_path / "clip.mp4"
    write_video(clip, frames=9)
    model = engines.load_for_inference(model_file, engine=engine)
    written = {}
    for threads in (1, 2):
        model.use_threads(threads)
        assert side_by_side.count(model) == threads
        written[threads] = tmp_path / f"threads_{threads}.mp4"
        assert video.predict_video(model, clip, written[threads], progress=False).frames == 9
        assert model.threads() == threads
    assert written[1].read_bytes() == written[2].read_bytes()


@pytest.mark.parametrize("engine", ["torch", "opencv"])
def test_tiles_side_by_side_are_the_tiles_one_at_a_time(model_file, engine):
    """A plane of many tiles on two threads: its tiles go through the net two at a time, and
    the result is the one of one thread, tile after tile."""
    from runner.infer import side_by_side
    model = engines.load_for_inference(model_file, engine=engine)
    plane = smooth_image(70, 90, 1).astype(np.float32) / 255.0
    results = {}
    for threads in (1, 2):
        model.use_threads(threads)
        assert side_by_side.count(model, 12) == threads
        results[threads] = tiles.super_resolve(model, plane, 24)
        assert model.threads() == threads
    assert np.array_equal(results[1], results[2])


# --------------------------------------------------------------------------- which model

def test_default_model_is_the_newest_snapshot_of_the_default_run(tmp_path, model_file, capfd,
                                                                  monkeypatch):
    run = tmp_path / "results" / "runs" / "fsrcnn_x3"
    run.mkdir(parents=True)
    for iteration in (5, 12):
        (run / f"fsrcnn_iter_{iteration}.model").write_bytes(model_file.read_bytes())
    image = tmp_path / "small.png"
    cv2.imwrite(str(image), smooth_image(8, 8, 3))
    monkeypatch.chdir(tmp_path)
    result = run_main(capfd, "predict", image.name)
    assert result.returncode == 0, result.stderr
    assert "results/runs/fsrcnn_x3/fsrcnn_iter_12.model (newest snapshot" in result.stdout
    assert (tmp_path / "results" / "predict" / f"small_x3_{NET_LABEL}.png").is_file()


def test_without_any_model_the_error_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="runner train --solver .*or give --model FILE"):
        predict.default_model(shipped=tmp_path / "none.model")


# --------------------------------------------------------------------------- bad input

@pytest.fixture
def bad_inputs(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty").mkdir()
    (folder / "empty" / "notes.txt").write_text("no images here")
    (folder / "text.png").write_text("not an image")
    good = smooth_image(20, 20, 3)
    ok, encoded = cv2.imencode(".png", good)
    (folder / "truncated.png").write_bytes(encoded.tobytes()[:len(encoded) // 2])
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(200))
    cv2.imwrite(str(folder / "small.png"), smooth_image(12, 12, 3))
    (folder / "a_file").write_text("a file where a folder should be")
    return folder


@pytest.mark.parametrize(("arguments", "named", "problem"), [
    (["missing.png"], "missing.png", "no such file"),
    (["empty"], "empty", "holds no images"),
    (["*.gif"], "*.gif", "matches no image"),
    (["text.png"], "text.png", "not a readable image"),
    (["truncated.png"], "truncated.png", "not a readable image"),
    (["broken.mp4"], "broken.mp4", "cannot be opened as a video"),
    (["small.png", "--degrade"], "small.png", "too small"),
    (["small.png", "--scale", "2"], ".model", "is a x3 model, but --scale 2"),
    (["small.png", "--out", "a_file"], "a_file", "not a folder"),
    (["small.png", "--model", "text.png"], "text.png", "not a valid model"),
])
def test_bad_input_is_one_error_line_and_leaves_no_output(bad_inputs, model_file, arguments,
                                                          named, problem, capfd, monkeypatch):
    defaults = {"--model": str(model_file), "--out": "out"}
    for flag, value in defaults.items():
        if flag not in arguments:
            arguments = [*arguments, flag, value]
    monkeypatch.chdir(bad_inputs)
    assert_one_line_error(run_main(capfd, "predict", *arguments), named, problem)
    assert files_in(bad_inputs / "out") == []
    assert not [path for path in bad_inputs.rglob(".*") if path.is_file()]  # no temporaries


def test_bad_input_in_a_real_process(bad_inputs, model_file):
    # what the libraries print on their own (libpng, ffmpeg) must not reach the terminal either
    result = run_cli("predict", "truncated.png", "broken.mp4", "--model", model_file, "--out",
                     "out", cwd=bad_inputs)
    assert_one_line_error(result, "truncated.png", "not a readable image")
    assert files_in(bad_inputs / "out") == []


def _file_identity(descriptor):
    status = os.fstat(descriptor)
    return status.st_dev, status.st_ino


def test_threads_decoding_side_by_side_give_stderr_back():
    """Two threads' silenced windows overlapping (A in, B in, A out, B out), as inputs and
    frames decoded side by side do: stderr is /dev/null while either is inside and the
    terminal's again once both have left, so a later error line is seen."""
    terminal = _file_identity(2)
    with open(os.devnull, "rb") as devnull:
        nowhere = _file_identity(devnull.fileno())
    b_inside, a_left, seen = threading.Event(), threading.Event(), []

    def a():
        with images.native_stderr_silenced():
            b_inside.wait()
        a_left.set()

    def b():
        with images.native_stderr_silenced():
            b_inside.set()
            a_left.wait()
            seen.append(_file_identity(2))

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [nowhere]                # A's leaving did not unsilence B
    assert _file_identity(2) == terminal


def test_an_output_may_not_overwrite_an_input(tmp_path, model):
    for name in ("photo.png", f"photo_x3_{NET_LABEL}.png"):
        cv2.imwrite(str(tmp_path / name), smooth_image(8, 8, 3))
    with pytest.raises(UserError, match="would overwrite an input"):
        predict.plan(predict.collect_inputs([tmp_path]), model, tmp_path)
