"""MATLAB-compatible image functions: the evaluation protocol of the SR papers was written in MATLAB.

Everything works on numpy arrays in 0..255 units and computes in float64. Colour images are (H, W, 3);
their channel order is always stated by the caller (`channel_order="bgr"` for what `cv2.imread`
returns), never guessed.

The colour conversions and `imresize` also compute in float32 (`dtype=np.float32`), for
`runner predict`'s colour planes: the same formulas with OpenCV's SIMD kernels (`cv2.transform`; an
integer upscaling as one small filter per output phase, `cv2.filter2D`), several times faster and
equal to the float64 result to float32 rounding. Prep and evaluation keep float64, the default.
"""

import functools
import math

import cv2
import numpy as np

# MATLAB rgb2ycbcr: ITU-R BT.601 studio range, rows give Y, Cb, Cr from R, G, B in 0..1.
_YCBCR_FROM_RGB = np.array([
    [65.481, 128.553, 24.966],
    [-37.797, -74.203, 112.000],
    [112.000, -93.786, -18.214],
])
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
# MATLAB ycbcr2rgb's matrix (on 0..255 values), once: predict converts every band with it
_RGB_FROM_YCBCR = 255.0 * np.linalg.inv(_YCBCR_FROM_RGB)
_CHANNEL_ORDERS = ("rgb", "bgr")
_DTYPES = (np.float64, np.float32)

# MATLAB's bicubic kernel (Keys, a = -0.5) is non-zero on [-2, 2].
_CUBIC_KERNEL_WIDTH = 4.0
# Upscaling, an output pixel reads input pixels within 2 of its position, which lies within half
# a pixel of an input pixel's centre: 3 input pixels beyond a band of rows cover every tap.
_UPSCALE_REACH = 3


def _checked_dtype(dtype):
    if np.dtype(dtype) not in _DTYPES:
        raise ValueError(f"dtype must be float64 or float32, got {np.dtype(dtype)}")
    return np.dtype(dtype).type


def _colour(image, dtype=np.float64):
    """An (H, W, 3) image as `dtype`; anything else is refused rather than misread."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) colour image, got shape {image.shape}")
    return image.astype(dtype)


def _affine_float32(image, matrix, offset):
    """matrix @ pixel + offset for every pixel of an (H, W, 3) image, in float32 (cv2.transform)."""
    affine = np.hstack([matrix, np.asarray(offset)[:, None]]).astype(np.float32)
    return cv2.transform(np.ascontiguousarray(_colour(image, np.float32)), affine)


def _reorder_rgb(channels, channel_order):
    """The last axis reordered between R, G, B and `channel_order`; reversing is its own inverse."""
    if channel_order not in _CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {_CHANNEL_ORDERS}, got {channel_order!r}")
    return channels[..., ::-1] if channel_order == "bgr" else channels


def rgb2ycbcr(image, *, channel_order, dtype=np.float64):
    """MATLAB rgb2ycbcr on 0..255 values: (H, W, 3) in Y, Cb, Cr order, not rounded; in `dtype`."""
    if _checked_dtype(dtype) is np.float32:
        # the matrix's columns reordered to the image's channels
        return _affine_float32(image, _reorder_rgb(_YCBCR_FROM_RGB / 255.0, channel_order),
                               _YCBCR_OFFSET)
    rgb = _reorder_rgb(_colour(image), channel_order)
    return rgb @ (_YCBCR_FROM_RGB / 255.0).T + _YCBCR_OFFSET


def rgb2ycbcr_plane(image, channel, *, channel_order, dtype=np.float64):
    """One channel of `rgb2ycbcr` alone (0 Y, 1 Cb, 2 Cr), computed alone: (H, W), not rounded;
    in `dtype`."""
    if _checked_dtype(dtype) is np.float32:
        row = _reorder_rgb(_YCBCR_FROM_RGB[channel:channel + 1] / 255.0, channel_order)
        return _affine_float32(image, row, _YCBCR_OFFSET[channel:channel + 1])
    rgb = _reorder_rgb(_colour(image), channel_order)
    return rgb @ (_YCBCR_FROM_RGB[channel] / 255.0) + _YCBCR_OFFSET[channel]


def rgb2y(image, *, channel_order, dtype=np.float64):
    """The Y channel of `rgb2ycbcr` alone: (H, W), not rounded; in `dtype`."""
    return rgb2ycbcr_plane(image, 0, channel_order=channel_order, dtype=dtype)


def ycbcr2rgb(ycbcr, *, channel_order, dtype=np.float64):
    """MATLAB ycbcr2rgb on 0..255 values: (H, W, 3) in `channel_order`, not rounded or clipped; in
    `dtype`."""
    if _checked_dtype(dtype) is np.float32:
        # the matrix's rows reordered to the result's channels; rgb = M @ ycbcr - M @ offset
        matrix = _reorder_rgb(_RGB_FROM_YCBCR.T, channel_order).T
        return _affine_float32(ycbcr, matrix, -matrix @ _YCBCR_OFFSET)
    rgb = (_colour(ycbcr) - _YCBCR_OFFSET) @ _RGB_FROM_YCBCR.T
    return _reorder_rgb(rgb, channel_order)


def ycbcr2rgb_uint8(y, cb, cr, *, channel_order):
    """to_uint8(ycbcr2rgb(...)) of Y, Cb and Cr given as 2-D planes in 0..255: (H, W, 3) uint8 in
    `channel_order`, each channel weighted and rounded straight into 8 bits (cv2.addWeighted,
    two passes), with no float image of the result. OpenCV rounds a value exactly halfway
    between two levels to even, where to_uint8 rounds it up: the same result within float
    rounding."""
    matrix = _reorder_rgb(_RGB_FROM_YCBCR.T, channel_order).T
    channels = []
    for (y_weight, cb_weight, cr_weight), constant in zip(matrix, -matrix @ _YCBCR_OFFSET):
        chroma = cv2.addWeighted(cb, cb_weight, cr, cr_weight, constant)
        channels.append(cv2.addWeighted(y, y_weight, chroma, 1.0, 0.0, dtype=cv2.CV_8U))
    return cv2.merge(channels)


def to_uint8(image):
    """MATLAB's conversion of computed values to uint8: round half away from zero, then saturate."""
    # Saturating makes it floor(x + 0.5) clipped to 0..255 (a negative x ends at 0 either way),
    # and once x + 0.5 is clipped, the conversion's truncation is that floor.
    shifted = np.add(image, 0.5, dtype=np.result_type(image, np.float32))
    return np.clip(shifted, 0, 255, out=shifted).astype(np.uint8)


def y_channel(image, *, channel_order):
    """The uint8 Y channel of an 8-bit image as the papers' scripts take it: grayscale is its own Y."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit image, got {image.dtype}")
    if image.ndim == 2:
        return image
    return to_uint8(rgb2y(image, channel_order=channel_order))


def modcrop(image, scale):
    """Crop the bottom and right edges so height and width are multiples of `scale`."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def _cubic(x):
    """Keys' cubic convolution kernel with a = -0.5, as in MATLAB imresize."""
    absx = np.abs(x)
    near = (1.5 * absx**3 - 2.5 * absx**2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx**3 + 2.5 * absx**2 - 4.0 * absx + 2.0) * ((1 < absx) & (absx <= 2))
    return near + far


def _kernel_taps(out_length, scale):
    """MATLAB's bicubic weights of the first `out_length` output pixels, before mirroring: (weights,
    positions), both (out_length, taps), positions 0-based and possibly outside the image. Taps
    whose weight is zero for every output pixel are dropped, as MATLAB does (they cost a pass each).
    """
    if scale < 1:
        kernel_width = _CUBIC_KERNEL_WIDTH / scale

        def kernel(x):
            return scale * _cubic(scale * x)
    else:
        kernel_width = _CUBIC_KERNEL_WIDTH
        kernel = _cubic
    # MATLAB's 1-based output coordinates mapped to 1-based input coordinates.
    output_positions = np.arange(1, out_length + 1, dtype=np.float64)
    input_positions = output_positions / scale + 0.5 * (1 - 1 / scale)
    leftmost = np.floor(input_positions - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    tap_positions = leftmost[:, None] + np.arange(taps)
    weights = kernel(input_positions[:, None] - tap_positions)
    weights /= weights.sum(axis=1, keepdims=True)
    used_taps = np.any(weights != 0, axis=0)
    return weights[:, used_taps], tap_positions[:, used_taps].astype(np.int64) - 1


def _read_only(array):
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=32)
def _contributions(in_length, out_length, scale):
    """MATLAB imresize's `contributions` along one dimension, bicubic (cached: a video's frames
    share them).

    Returns (weights, source_indices), both (out_length, taps), read-only: output pixel i is the sum
    over taps of weights[i, tap] * input[source_indices[i, tap]]. When shrinking, the kernel is
    stretched by 1/scale (antialiasing); each output pixel's weights are normalised to sum to 1;
    taps beyond the border read the mirrored image (symmetric padding, the edge pixel repeated).
    """
    weights, positions = _kernel_taps(out_length, scale)
    mirrored = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    return _read_only(weights), _read_only(mirrored[positions % (2 * in_length)])


@functools.lru_cache(maxsize=8)
def _phase_filters(factor):
    """An integer upscaling by `factor` as `factor` filters: output pixel factor * i + phase is
    sum(kernel[k] * input[i + k - anchor]), the same kernel for every i (the contributions repeat
    with period `factor`). (float32 kernel, anchor) of each phase, from MATLAB's weights of the
    first `factor` output pixels (i = 0), the kernel widened to hold the tap at offset 0."""
    filters = []
    for weights, offsets in zip(*_kernel_taps(factor, float(factor))):
        first, last = min(offsets[0], 0), max(offsets[-1], 0)
        kernel = np.zeros(last - first + 1, np.float32)
        kernel[offsets - first] = weights
        filters.append((kernel, -first))
    return filters


def _upscale_along(image, factor, axis):
    """`_resize_along` for an integer upscaling of a float32 2-D or (H, W, C <= 4) array: one
    cv2.filter2D per output phase (its BORDER_REFLECT mirrors as MATLAB does), interleaved."""
    phases = []
    for kernel, anchor in _phase_filters(factor):
        # a column kernel filters along the rows (axis 0); cv2 anchors are (x, y)
        oriented, point = ((kernel[:, None], (0, anchor)) if axis == 0
                           else (kernel[None], (anchor, 0)))
        phases.append(cv2.filter2D(image, -1, oriented, anchor=point,
                                   borderType=cv2.BORDER_REFLECT))
    shape = list(image.shape)
    shape[axis] *= factor
    if axis == 0:
        return np.stack(phases, axis=1).reshape(shape)
    # cv2.merge puts each phase's channels after the previous phase's: (H, W, factor, C)
    return cv2.merge(phases).reshape(shape)


def _resize_along(image, weights, source_indices, axis):
    """Resize a 2-D or 3-D float array along `axis` (0: rows, 1: columns) with `_contributions`, in
    the array's dtype."""
    # Gathering whole contiguous rows is much faster than gathering strided columns.
    lines = np.ascontiguousarray(np.moveaxis(image, axis, 0))
    weights = weights.astype(image.dtype, copy=False)
    broadcast_shape = (-1,) + (1,) * (lines.ndim - 1)
    resized = weights[:, 0].reshape(broadcast_shape) * lines[source_indices[:, 0]]
    for tap in range(1, weights.shape[1]):
        resized += weights[:, tap].reshape(broadcast_shape) * lines[source_indices[:, tap]]
    return np.moveaxis(resized, 0, axis)


def upscaled_rows(image, scale, top, bottom, dtype=np.float64, convert=None):
    """Rows top * scale to bottom * scale of `imresize(convert(image), scale)` for an integer
    `scale`, computed from input rows top..bottom and the few beyond them that the kernel reads
    (the image's own edges mirrored, as for the whole image): the same values, for a band of
    rows. `convert` (e.g. a colour conversion) is applied to those rows only."""
    start, stop = max(top - _UPSCALE_REACH, 0), min(bottom + _UPSCALE_REACH, image.shape[0])
    rows = image[start:stop]
    upscaled = imresize(rows if convert is None else convert(rows), scale, dtype=dtype)
    return upscaled[(top - start) * scale:(bottom - start) * scale]


def imresize(image, scale=None, output_shape=None, dtype=np.float64):
    """MATLAB imresize(image, scale) or imresize(image, [rows cols]), method 'bicubic', in float64
    (or float32).

    Give exactly one of `scale` (a number) and `output_shape` (rows, cols); a 2-D or (H, W, C) image.
    The result is float64 whatever the input dtype: the papers' scripts resize floating-point images
    and round only what they score, which `to_uint8` does. `dtype=np.float32` computes (and
    returns) float32 instead, an integer upscaling of up to 4 channels as polyphase filters
    (`_upscale_along`).
    """
    dtype = _checked_dtype(dtype)
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    in_shape = image.shape[:2]
    if scale is not None:
        # MATLAB resamples with the scale it was given, not with output/input.
        scales = (float(scale), float(scale))
        out_shape = tuple(math.ceil(scale * length) for length in in_shape)
    else:
        out_shape = tuple(output_shape)
        scales = tuple(out / length for out, length in zip(out_shape, in_shape))
    resized = image.astype(dtype)
    polyphase = dtype is np.float32 and resized.size > 0 and (
        resized.ndim == 2 or (resized.ndim == 3 and resized.shape[2] <= 4))
    # MATLAB's order: the dimension that shrinks most first, rows first on a tie.
    for axis in sorted((0, 1), key=lambda axis: scales[axis]):
        if polyphase and scales[axis] >= 1 and scales[axis].is_integer():
            resized = _upscale_along(resized, int(scales[axis]), axis)
            continue
        weights, source_indices = _contributions(in_shape[axis], out_shape[axis], scales[axis])
        resized = _resize_along(resized, weights, source_indices, axis)
    return resized
