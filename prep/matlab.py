"""MATLAB-compatible image functions: the evaluation protocol of the SR papers was written in MATLAB.

Everything works on numpy arrays in 0..255 units and computes in float64. Colour images are (H, W, 3);
their channel order is always stated by the caller (`channel_order="bgr"` for what `cv2.imread`
returns), never guessed.
"""

import math

import numpy as np

# MATLAB rgb2ycbcr: ITU-R BT.601 studio range, rows give Y, Cb, Cr from R, G, B in 0..1.
_YCBCR_FROM_RGB = np.array([
    [65.481, 128.553, 24.966],
    [-37.797, -74.203, 112.000],
    [112.000, -93.786, -18.214],
])
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
_CHANNEL_ORDERS = ("rgb", "bgr")

# MATLAB's bicubic kernel (Keys, a = -0.5) is non-zero on [-2, 2].
_CUBIC_KERNEL_WIDTH = 4.0


def _colour_float64(image):
    """An (H, W, 3) image as float64; anything else is refused rather than misread."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) colour image, got shape {image.shape}")
    return image.astype(np.float64)


def _reorder_rgb(channels, channel_order):
    """The last axis reordered between R, G, B and `channel_order`; reversing is its own inverse."""
    if channel_order not in _CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {_CHANNEL_ORDERS}, got {channel_order!r}")
    return channels[..., ::-1] if channel_order == "bgr" else channels


def rgb2ycbcr(image, *, channel_order):
    """MATLAB rgb2ycbcr on 0..255 values: float64 (H, W, 3) in Y, Cb, Cr order, not rounded."""
    rgb = _reorder_rgb(_colour_float64(image), channel_order)
    return rgb @ (_YCBCR_FROM_RGB / 255.0).T + _YCBCR_OFFSET


def rgb2y(image, *, channel_order):
    """The Y channel of `rgb2ycbcr` alone: float64 (H, W), not rounded."""
    rgb = _reorder_rgb(_colour_float64(image), channel_order)
    return rgb @ (_YCBCR_FROM_RGB[0] / 255.0) + _YCBCR_OFFSET[0]


def ycbcr2rgb(ycbcr, *, channel_order):
    """MATLAB ycbcr2rgb on 0..255 values: float64 (H, W, 3) in `channel_order`, not rounded or clipped."""
    rgb_from_ycbcr = 255.0 * np.linalg.inv(_YCBCR_FROM_RGB)
    rgb = (_colour_float64(ycbcr) - _YCBCR_OFFSET) @ rgb_from_ycbcr.T
    return _reorder_rgb(rgb, channel_order)


def to_uint8(image):
    """MATLAB's conversion of computed values to uint8: round half away from zero, then saturate."""
    rounded = np.sign(image) * np.floor(np.abs(image) + 0.5)
    return np.clip(rounded, 0, 255).astype(np.uint8)


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


def _contributions(in_length, out_length, scale):
    """MATLAB imresize's `contributions` along one dimension, bicubic.

    Returns (weights, source_indices), both (out_length, taps): output pixel i is the sum over taps of
    weights[i, tap] * input[source_indices[i, tap]]. When shrinking, the kernel is stretched by
    1/scale (antialiasing); each output pixel's weights are normalised to sum to 1; taps beyond the
    border read the mirrored image (symmetric padding, the edge pixel repeated).
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
    mirrored = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    source_indices = mirrored[(tap_positions.astype(np.int64) - 1) % (2 * in_length)]
    # Like MATLAB, drop taps where the kernel is zero for every output pixel: they cost a pass each.
    used_taps = np.any(weights != 0, axis=0)
    return weights[:, used_taps], source_indices[:, used_taps]


def _resize_along(image, weights, source_indices, axis):
    """Resize a 2-D or 3-D float64 array along `axis` (0: rows, 1: columns) with `_contributions`."""
    # Gathering whole contiguous rows is much faster than gathering strided columns.
    lines = np.ascontiguousarray(np.moveaxis(image, axis, 0))
    broadcast_shape = (-1,) + (1,) * (lines.ndim - 1)
    resized = weights[:, 0].reshape(broadcast_shape) * lines[source_indices[:, 0]]
    for tap in range(1, weights.shape[1]):
        resized += weights[:, tap].reshape(broadcast_shape) * lines[source_indices[:, tap]]
    return np.moveaxis(resized, 0, axis)


def imresize(image, scale=None, output_shape=None):
    """MATLAB imresize(image, scale) or imresize(image, [rows cols]), method 'bicubic', in float64.

    Give exactly one of `scale` (a number) and `output_shape` (rows, cols); a 2-D or (H, W, C) image.
    The result is float64 whatever the input dtype: the papers' scripts resize floating-point images
    and round only what they score, which `to_uint8` does.
    """
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
    resized = image.astype(np.float64)
    # MATLAB's order: the dimension that shrinks most first, rows first on a tie.
    for axis in sorted((0, 1), key=lambda axis: scales[axis]):
        weights, source_indices = _contributions(in_shape[axis], out_shape[axis], scales[axis])
        resized = _resize_along(resized, weights, source_indices, axis)
    return resized
