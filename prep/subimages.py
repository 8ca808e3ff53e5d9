"""Aligned (input, label) subimage pairs cut from one Y image, by the recipes of a PrepConfig.

- `degradation: paper` (default): the Y image is modcropped to a multiple of `scale` (the HR image)
  and downscaled whole by MATLAB's bicubic `imresize`, rounded to uint8 as MATLAB does for uint8
  images (the LR image). HR subimages start every `stride` HR pixels, each start snapped down to a
  multiple of `scale` so that the HR subimage is exactly the footprint of the LR window that starts
  at start / scale. With hr_size = lr_size * scale + 1 (for a net whose output is one pixel more:
  a 9x9 deconvolution at an even stride) it has one pixel more at its bottom and right, where
  inference puts such a net's extra pixel (runner/net/structure.py, `offset_in_footprint`), and
  a window whose extra pixel would leave the image is skipped.
  With `input: bicubic` (SRCNN) the LR image is upscaled back to the HR size by the same
  `imresize` (rounded again) and the input subimage is cut at the HR subimage's own position.
- `degradation: tutorial` (the Intel tutorial): no modcrop and no whole-image resize; every HR
  subimage is shrunk on its own by `cv2.resize(..., INTER_CUBIC)` to lr_size.
`lr_context` widens every input window by that many pixels of the image itself on each side
(the authors' 11x11 inputs for 7x7 footprints); HR subimages whose widened window would leave
the image are skipped, or with `border_context: mirror` cut from the LR image mirrored past its
border (as inference extends an image for an unpadded net: runner/infer/deploy.py), from the
image's first pixel to a last window flush with its bottom and right edges. Then `lr_padding`
zero pixels are added around every input and `label_border` pixels are cut off every side of
every label. Everything is numpy on whole arrays: windows are views of the image
picked by fancy indexing; no Python loop runs per pixel or per subimage.
"""
import cv2
import numpy as np

from runner.errors import UserError
from runner.imaging import matlab

# cv2.resize takes at most 512 channels (CV_CN_MAX): the tutorial's subimages are resized as
# channels of one image, 512 at a time.
CV_MAX_CHANNELS = 512


def check_config(config, source):
    """Cross-key rules of a PrepConfig that the schema cannot state key by key."""
    if not config.train_sets:
        raise UserError(source, "train_sets must name at least one dataset")
    both = sorted(set(config.validation_sets) & set(config.test_sets))
    if both:
        raise UserError(source, f"{both[0]} is both a validation and a test set: choices made "
                        "on the validation split would be made on the test set")
    if config.validation_images and not config.validation_sets:
        raise UserError(source, "validation_images holds out images of validation_sets, which "
                        "names none")
    footprint = config.lr_size * config.scale
    if config.input == "lr" and config.hr_size not in (footprint, footprint + 1):
        raise UserError(source, f"hr_size must be lr_size * scale = {config.lr_size} * "
                        f"{config.scale} = {footprint}, or {footprint + 1} for a net whose "
                        f"output is one pixel more (a 9x9 deconvolution at an even stride), "
                        f"got {config.hr_size}")
    if config.hr_size == footprint + 1 and config.degradation == "tutorial":
        raise UserError(source, f"degradation: tutorial shrinks each HR subimage to lr_size, "
                        f"so hr_size must be lr_size * scale = {footprint}, got "
                        f"{config.hr_size}")
    if config.input == "bicubic" and config.lr_size != config.hr_size:
        raise UserError(source, f"input: bicubic cuts the input at HR size: lr_size must equal "
                        f"hr_size ({config.hr_size}), got {config.lr_size}")
    if config.input == "bicubic" and config.degradation == "tutorial":
        raise UserError(source, "degradation: tutorial makes LR inputs only (input: lr)")
    if config.lr_context and config.degradation == "tutorial":
        raise UserError(source, "degradation: tutorial shrinks each subimage on its own, so it "
                        "has no image around it for lr_context")
    if config.border_context == "mirror" and config.degradation == "tutorial":
        raise UserError(source, "degradation: tutorial shrinks each subimage on its own, so it "
                        "has no image border to mirror (border_context: mirror)")
    if 2 * config.label_border >= config.hr_size:
        raise UserError(source, f"label_border {config.label_border} leaves nothing of a "
                        f"{config.hr_size}x{config.hr_size} label")
    for factor in config.augment_scales:
        if not 0 < factor <= 1:
            raise UserError(source, f"augment_scales: {factor} is not a downscale in (0, 1]")


def input_size(config):
    """Side of an input subimage as written: lr_size plus context and zero padding on both
    sides."""
    return config.lr_size + 2 * (config.lr_context + config.lr_padding)


def label_size(config):
    """Side of a label subimage as written: hr_size less label_border on both sides."""
    return config.hr_size - 2 * config.label_border


def offsets(length, size, stride, align=1, to_the_edge=False):
    """Start offsets of `size`-long windows every `stride` pixels of a `length`-long axis, each
    snapped down to a multiple of `align` (duplicates dropped), and with `to_the_edge` the last
    one that fits as well. Empty when size > length."""
    starts = np.arange(0, length - size + 1, stride)
    if to_the_edge and len(starts):
        starts = np.append(starts, length - size)
    return np.unique(starts - starts % align)


def crop_windows(image, rows, cols, size):
    """The size x size windows of a 2-D image at every (row, col) of the grid rows x cols,
    row-major: (len(rows) * len(cols), size, size)."""
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))
    return windows[np.ix_(rows, cols)].reshape(-1, size, size)


def downscale(image, scale):
    """MATLAB `imresize(image, 1/scale, 'bicubic')` of a uint8 image, as uint8."""
    return matlab.to_uint8(matlab.imresize(image, 1 / scale))


def resize_each(images, size):
    """`cv2.resize(image, (size, size), interpolation=INTER_CUBIC)` of each of (N, h, w) uint8
    images, computed on 512 of them at a time stacked as channels."""
    resized = []
    for start in range(0, len(images), CV_MAX_CHANNELS):
        stack = np.ascontiguousarray(images[start:start + CV_MAX_CHANNELS].transpose(1, 2, 0))
        small = cv2.resize(stack, (size, size), interpolation=cv2.INTER_CUBIC)
        resized.append(small.reshape(size, size, -1).transpose(2, 0, 1))
    return np.concatenate(resized) if resized else np.empty((0, size, size), np.uint8)


def make_pairs(y, config, stride):
    """Input and label subimages of one uint8 Y image: (N, input_size, input_size) and
    (N, label_size, label_size) uint8, N = 0 when the image is smaller than one HR subimage."""
    if config.degradation == "tutorial":
        inputs, labels = _tutorial_pairs(y, config, stride)
    else:
        inputs, labels = _paper_pairs(y, config, stride)
    pad, border = config.lr_padding, config.label_border
    inputs = np.pad(inputs, ((0, 0), (pad, pad), (pad, pad)))
    return inputs, labels[:, border:config.hr_size - border, border:config.hr_size - border]


def _paper_pairs(y, config, stride):
    hr = matlab.modcrop(y, config.scale)
    if min(hr.shape) < config.hr_size:
        return _no_pairs(config)
    lr = downscale(hr, config.scale)
    if config.input == "bicubic":
        source, step = matlab.to_uint8(matlab.imresize(lr, output_shape=hr.shape)), 1
    else:
        source, step = lr, config.scale
    context, mirrored = config.lr_context, config.border_context == "mirror"
    rows, cols = [offsets(length, config.hr_size, stride, align=step, to_the_edge=mirrored) // step
                  for length in hr.shape]
    if mirrored:
        # LR row r of the image is row r + context of the mirrored one, where r's widened
        # window therefore starts
        windowed, shift = np.pad(source, context, mode="symmetric"), 0
    else:
        rows, cols = [within_context(starts, source_length, config.lr_size, context)
                      for starts, source_length in zip((rows, cols), source.shape)]
        windowed, shift = source, context
    if not len(rows) or not len(cols):
        return _no_pairs(config)
    return (crop_windows(windowed, rows - shift, cols - shift, config.lr_size + 2 * context),
            crop_windows(hr, rows * step, cols * step, config.hr_size))


def within_context(starts, length, size, context):
    """The window starts whose `size` window, widened by `context` on each side, stays inside a
    `length`-long axis."""
    return starts[(starts >= context) & (starts + size + context <= length)]


def _tutorial_pairs(y, config, stride):
    rows, cols = (offsets(length, config.hr_size, stride) for length in y.shape)
    if not len(rows) or not len(cols):
        return _no_pairs(config)
    labels = crop_windows(y, rows, cols, config.hr_size)
    return resize_each(labels, config.lr_size), labels


def _no_pairs(config):
    side = config.lr_size + 2 * config.lr_context
    return (np.empty((0, side, side), np.uint8),
            np.empty((0, config.hr_size, config.hr_size), np.uint8))


def augmented_copies(y, scales=(), rotations=()):
    """The image, its MATLAB-imresized copies by each factor in `scales`, and each of these
    rotated counter-clockwise by each angle in `rotations` (multiples of 90 degrees)."""
    sized = [y, *(matlab.to_uint8(matlab.imresize(y, factor)) for factor in scales)]
    return [np.ascontiguousarray(np.rot90(image, angle // 90))
            for image in sized for angle in (0, *rotations)]
