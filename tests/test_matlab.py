"""The MATLAB-compatible image functions and the metrics, checked against values derived independently."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from runner.imaging.matlab import (
    imresize,
    modcrop,
    rgb2y,
    rgb2ycbcr,
    rgb2ycbcr_plane,
    to_uint8,
    y_channel,
    ycbcr2rgb,
    ycbcr2rgb_uint8,
)
from runner.score.metrics import psnr, shave, ssim

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SR_DATA", REPO_ROOT / ".." / "shared" / "data"))

# Bicubic baselines published with SRCNN / FSRCNN (mean Y PSNR in dB over each set).
PUBLISHED_BICUBIC_PSNR = {
    ("Set5", 2): 33.66,
    ("Set5", 3): 30.39,
    ("Set5", 4): 28.42,
    ("Set14", 2): 30.23,
    ("Set14", 3): 27.54,
    ("Set14", 4): 26.00,
}
# Bicubic SSIMs published with VDSR (Kim et al. 2016) for Set5. Their Set14 rows come with PSNRs of
# 30.24 / 27.55, i.e. another copy of Set14 than the one above, so they are not checked here.
PUBLISHED_BICUBIC_SSIM = {("Set5", 2): 0.9299, ("Set5", 3): 0.8682, ("Set5", 4): 0.8104}


@pytest.fixture
def random_image():
    return np.random.default_rng(0).integers(0, 256, size=(48, 40), dtype=np.uint8)


def test_imresize_keeps_a_constant_image_constant():
    constant = np.full((30, 42, 3), 77.0)
    for scale in (1 / 4, 1 / 3, 1 / 2, 2, 3):
        np.testing.assert_allclose(imresize(constant, scale), 77.0, atol=1e-9)


def test_imresize_shapes():
    image = np.zeros((30, 42))
    assert imresize(image, 1 / 2).shape == (15, 21)
    assert imresize(imresize(image, 1 / 2), 2).shape == (30, 42)
    assert imresize(np.zeros((30, 42, 3)), 1 / 3).shape == (10, 14, 3)
    assert imresize(image, output_shape=(17, 50)).shape == (17, 50)
    # MATLAB's output size is ceil(scale * size).
    assert imresize(np.zeros((31, 43)), 1 / 2).shape == (16, 22)


def test_imresize_needs_exactly_one_of_scale_and_output_shape():
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), 2, output_shape=(8, 8))


# Golden values worked out by hand from Keys' cubic with a = -0.5:
#   k(0.25) = 111/128, k(0.75) = 29/128, k(1.25) = -9/128, k(1.75) = -3/128.
# Upscaling x2, the outputs sit a quarter pixel off the input grid, so an impulse of 128 spreads into
# these weights. Shrinking x2 stretches the kernel to 0.5 k(x / 2); an output sits half-way between two
# inputs at distances 0.5, 1.5, 2.5, 3.5, so an impulse of 256 spreads into 111, 29, -9, -3.
def test_imresize_upscale_x2_matches_hand_computed_kernel_weights():
    row = np.array([[0, 0, 128, 0, 0, 0]], dtype=np.float64)
    expected = [0, -3, -9, 29, 111, 111, 29, -9, -3, 0, 0, 0]
    upscaled = imresize(row, 2)
    assert upscaled.shape == (2, 12)
    np.testing.assert_allclose(upscaled, [expected, expected], atol=1e-9)


def test_imresize_downscale_x2_antialiases_with_hand_computed_weights():
    row = np.array([[0, 0, 0, 0, 256, 0, 0, 0]], dtype=np.float64)
    np.testing.assert_allclose(imresize(row, 1 / 2), [[-3, 29, 111, -9]], atol=1e-9)


def test_imresize_mirrors_the_border():
    # Symmetric padding: left of the edge, the taps read pixels 0, 1, ... again. Upscaling x2, output 0
    # reads inputs (1, 0, 0, 1) with weights (-3, 29, 111, -9) / 128, output 1 reads (0, 0, 1, 2)
    # with (-9, 111, 29, -3) / 128; only input 0 is 128.
    row = np.array([[128, 0, 0, 0]], dtype=np.float64)
    np.testing.assert_allclose(imresize(row, 2)[0, :2], [29 + 111, -9 + 111], atol=1e-9)


def test_float32_imresize_has_the_same_hand_computed_weights_and_mirroring():
    row = np.array([[0, 0, 128, 0, 0, 0]], dtype=np.float32)
    upscaled = imresize(row, 2, dtype=np.float32)
    assert upscaled.dtype == np.float32 and upscaled.shape == (2, 12)
    expected = [0, -3, -9, 29, 111, 111, 29, -9, -3, 0, 0, 0]
    np.testing.assert_allclose(upscaled, [expected, expected], atol=1e-4)
    edge = imresize(np.array([[128, 0, 0, 0]]), 2, dtype=np.float32)
    np.testing.assert_allclose(edge[0, :2], [29 + 111, -9 + 111], atol=1e-4)
    np.testing.assert_allclose(imresize(np.array([[0, 0, 0, 0, 256, 0, 0, 0]]), 1 / 2,
                                        dtype=np.float32), [[-3, 29, 111, -9]], atol=1e-4)


@pytest.mark.parametrize("scale", [2, 3, 4, 1 / 3, 1.5])
@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (1, 3), (5, 7), (23, 18), (9, 6, 1), (7, 8, 2),
                                   (6, 5, 3), (5, 6, 4), (6, 4, 5)])
def test_float32_imresize_is_the_float64_result_to_float_rounding(scale, shape):
    # integer upscalings run as polyphase filters (up to 4 channels), the rest as in float64
    image = np.random.default_rng(sum(shape)).random(shape) * 255
    exact = imresize(image, scale)
    fast = imresize(image.astype(np.float32), scale, dtype=np.float32)
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    np.testing.assert_allclose(fast, exact, atol=1e-3)
    # both axes by integer factors, and one by an integer, the other not
    for resized in ((2 * shape[0], 3 * shape[1]), (3 * shape[0], shape[1] + 2)):
        np.testing.assert_allclose(imresize(image, output_shape=resized, dtype=np.float32),
                                   imresize(image, output_shape=resized), atol=1e-3)


@pytest.mark.parametrize("channel_order", ["rgb", "bgr"])
def test_float32_colour_conversions_are_the_float64_ones(channel_order):
    white_and_black = np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    ycbcr = rgb2ycbcr(white_and_black, channel_order=channel_order, dtype=np.float32)
    assert ycbcr.dtype == np.float32
    np.testing.assert_allclose(ycbcr[0], [[235, 128, 128], [16, 128, 128]], atol=1e-4)
    image = np.random.default_rng(2).random((9, 7, 3)) * 255
    exact = rgb2ycbcr(image, channel_order=channel_order)
    np.testing.assert_allclose(rgb2ycbcr(image, channel_order=channel_order, dtype=np.float32),
                               exact, atol=1e-3)
    back = ycbcr2rgb(exact, channel_order=channel_order, dtype=np.float32)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, ycbcr2rgb(exact, channel_order=channel_order), atol=1e-3)
    np.testing.assert_allclose(back, image, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_each_plane_of_rgb2ycbcr_alone_is_its_channel(dtype):
    image = np.random.default_rng(4).random((7, 9, 3)) * 255
    whole = rgb2ycbcr(image, channel_order="bgr", dtype=dtype)
    for channel in range(3):
        plane = rgb2ycbcr_plane(image, channel, channel_order="bgr", dtype=dtype)
        assert plane.shape == (7, 9) and plane.dtype == dtype
        np.testing.assert_allclose(plane, whole[:, :, channel], rtol=1e-6)


@pytest.mark.parametrize("channel_order", ["rgb", "bgr"])
def test_ycbcr2rgb_uint8_writes_what_to_uint8_of_ycbcr2rgb_writes(channel_order):
    # every 8-bit colour's Y, Cb and Cr, off the integers, and values past both ends of the range
    colours = np.stack(np.meshgrid(*[np.arange(0, 256, 5)] * 3), axis=-1).reshape(-1, 1, 3)
    ycbcr = rgb2ycbcr(colours, channel_order=channel_order) + np.random.default_rng(3).normal(
        0, 20, colours.shape)
    planes = [np.ascontiguousarray(ycbcr[:, :, channel], np.float32) for channel in range(3)]
    written = ycbcr2rgb_uint8(*planes, channel_order=channel_order)
    expected = to_uint8(ycbcr2rgb(ycbcr.astype(np.float32), channel_order=channel_order))
    assert written.dtype == np.uint8 and written.shape == expected.shape
    difference = np.abs(written.astype(int) - expected.astype(int))
    # within float32 rounding of a rounding boundary only: one level, rarely
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999
    assert 0 in written and 255 in written        # saturated, not wrapped


def test_only_float64_and_float32_are_computed():
    for call in (lambda: imresize(np.zeros((4, 4)), 2, dtype=np.float16),
                 lambda: rgb2ycbcr(np.zeros((2, 2, 3)), channel_order="rgb", dtype=np.int32)):
        with pytest.raises(ValueError, match="float64 or float32"):
            call()


def test_modcrop_crops_bottom_and_right_to_a_multiple_of_scale():
    image = np.arange(7 * 8).reshape(7, 8)
    cropped = modcrop(image, 3)
    assert cropped.shape == (6, 6)
    np.testing.assert_array_equal(cropped, image[:6, :6])


@pytest.mark.parametrize("channel_order", ["rgb", "bgr"])
def test_rgb2ycbcr_of_white_and_black_is_studio_range(channel_order):
    white_and_black = np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    ycbcr = rgb2ycbcr(white_and_black, channel_order=channel_order)
    np.testing.assert_allclose(ycbcr[0, 0], [235, 128, 128], atol=1e-9)
    np.testing.assert_allclose(ycbcr[0, 1], [16, 128, 128], atol=1e-9)


def test_channel_order_swaps_red_and_blue():
    red_in_rgb = np.array([[[255, 0, 0]]], dtype=np.uint8)
    red_in_bgr = red_in_rgb[..., ::-1]
    # Y of pure red: 16 + 65.481.
    assert rgb2y(red_in_rgb, channel_order="rgb")[0, 0] == pytest.approx(81.481)
    assert rgb2y(red_in_bgr, channel_order="bgr")[0, 0] == pytest.approx(81.481)
    assert rgb2y(red_in_bgr, channel_order="rgb")[0, 0] == pytest.approx(16 + 24.966)
    with pytest.raises(ValueError):
        rgb2y(red_in_rgb, channel_order="RGB")


@pytest.mark.parametrize("channel_order", ["rgb", "bgr"])
def test_ycbcr2rgb_inverts_rgb2ycbcr_within_rounding(channel_order):
    image = np.random.default_rng(1).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    ycbcr_uint8 = to_uint8(rgb2ycbcr(image, channel_order=channel_order))
    restored = to_uint8(ycbcr2rgb(ycbcr_uint8, channel_order=channel_order))
    # Rounding YCbCr to integers loses up to half a step in each channel, which the inverse matrix
    # amplifies to at most about 2 levels of R, G or B.
    assert np.abs(restored.astype(int) - image.astype(int)).max() <= 2


def test_y_channel_of_grayscale_is_the_image_itself(random_image):
    np.testing.assert_array_equal(y_channel(random_image, channel_order="bgr"), random_image)


def test_to_uint8_rounds_half_away_from_zero_and_saturates():
    values = np.array([0.5, 1.5, 2.5, 254.5, 255.6, -0.4, -3.0])
    np.testing.assert_array_equal(to_uint8(values), [1, 2, 3, 255, 255, 0, 0])
    np.testing.assert_array_equal(to_uint8(values.astype(np.float32)), [1, 2, 3, 255, 255, 0, 0])
    np.testing.assert_array_equal(to_uint8(np.array([-1, 7, 300])), [0, 7, 255])


def test_shave_removes_the_border():
    image = np.arange(36).reshape(6, 6)
    np.testing.assert_array_equal(shave(image, 2), image[2:4, 2:4])
    assert shave(image, 0).shape == (6, 6)


def test_psnr_of_identical_images_is_infinite(random_image):
    assert psnr(random_image, random_image, shave_border=0) == float("inf")


def test_psnr_of_an_off_by_one_image():
    reference = np.full((10, 10), 100, dtype=np.uint8)
    test = reference + 1
    test[0, 0] = 0  # Shaved away.
    # MSE = 1, so PSNR = 20 log10(255).
    assert psnr(reference, test, shave_border=1) == pytest.approx(48.1308036, abs=1e-6)


def test_ssim_of_identical_images_is_one(random_image):
    assert ssim(random_image, random_image, shave_border=2) == pytest.approx(1.0, abs=1e-12)


def test_ssim_decreases_with_noise(random_image):
    rng = np.random.default_rng(2)
    smooth = to_uint8(imresize(imresize(random_image, 1 / 4), 4))
    scores = [
        ssim(smooth, to_uint8(smooth + rng.normal(0, sigma, smooth.shape)), shave_border=0)
        for sigma in (2, 8, 32)
    ]
    assert 1 > scores[0] > scores[1] > scores[2]


def test_ssim_matches_a_direct_2d_window_computation():
    # 13 x 14 images leave 3 x 4 'valid' positions of the 11 x 11 window; evaluate the formula of
    # Wang et al. at each position with the full 2-D Gaussian.
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 256, size=(13, 14)).astype(np.float64)
    test = np.clip(reference + rng.normal(0, 20, reference.shape), 0, 255)
    offsets = np.arange(11) - 5
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for top in range(3):
        for left in range(4):
            x = reference[top : top + 11, left : left + 11]
            y = test[top : top + 11, left : left + 11]
            mu_x, mu_y = (window * x).sum(), (window * y).sum()
            var_x = (window * (x - mu_x) ** 2).sum()
            var_y = (window * (y - mu_y) ** 2).sum()
            cov = (window * (x - mu_x) * (y - mu_y)).sum()
            values.append(
                ((2 * mu_x * mu_y + c1) * (2 * cov + c2))
                / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
            )
    assert ssim(reference, test, shave_border=0) == pytest.approx(np.mean(values), abs=1e-12)


def bicubic_baseline(image, scale):
    """(HR Y, bicubic Y) of the papers' bicubic baseline for one image read by cv2 (BGR or grayscale).

    As in the SRCNN/FSRCNN MATLAB scripts: Y rounded to uint8 and modcropped; the LR image is
    imresize of that Y kept in floating point (their `single(im_gnd)/255`), not rounded to uint8;
    only the upscaled result is rounded (`uint8(im_b * 255)`). Variants checked against the published
    table: rounding the LR image to uint8 too gives Set5 x2 33.6522 (published 33.66; the other five
    still round right); not rounding Y gives 33.6736, not rounding the bicubic result 33.6767.
    """
    high_res = modcrop(y_channel(image, channel_order="bgr"), scale)
    bicubic = to_uint8(imresize(imresize(high_res, 1 / scale), scale))
    return high_res, bicubic


def read_set(set_name):
    set_dir = DATA_DIR / set_name
    paths = sorted(set_dir.glob("*.bmp"))
    if not paths:
        pytest.skip(f"no {set_name} images in {set_dir} (set SR_DATA to the datasets folder)")
    return [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in paths]


@pytest.mark.parametrize(("set_name", "scale"), list(PUBLISHED_BICUBIC_PSNR))
def test_bicubic_psnr_reproduces_the_published_baseline(set_name, scale):
    baselines = [bicubic_baseline(image, scale) for image in read_set(set_name)]
    mean_psnr = np.mean([psnr(hr, bicubic, shave_border=scale) for hr, bicubic in baselines])
    assert round(float(mean_psnr), 2) == PUBLISHED_BICUBIC_PSNR[(set_name, scale)]


@pytest.mark.parametrize(("set_name", "scale"), list(PUBLISHED_BICUBIC_SSIM))
def test_bicubic_ssim_reproduces_the_published_baseline(set_name, scale):
    baselines = [bicubic_baseline(image, scale) for image in read_set(set_name)]
    mean_ssim = np.mean([ssim(hr, bicubic, shave_border=scale) for hr, bicubic in baselines])
    assert round(float(mean_ssim), 4) == PUBLISHED_BICUBIC_SSIM[(set_name, scale)]
