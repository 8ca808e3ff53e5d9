"""Predict's colour pipeline: the net super-resolves Y, everything else is upscaled bicubically.

Y is MATLAB rgb2ycbcr's (the Y the net was trained on) and stays in float until the file is
written; Cb, Cr and alpha go through MATLAB's bicubic imresize; the result is converted back with
MATLAB's ycbcr2rgb. A grayscale picture is its own Y.

The net computes in float32, and so does the rest by default: the same MATLAB formulas in float32
(runner/imaging/matlab.py's `dtype`) are several times faster than in float64 and change a written 8-bit
value by at most one level (tested); `dtype=np.float64` gives the float64 result.
"""
import cv2
import numpy as np

from runner.imaging import matlab, picture
from runner.infer import tiles


def y_plane(image):
    """The float Y plane (0..255) of a Picture: MATLAB rgb2ycbcr's Y, or the grayscale itself."""
    if image.is_colour:
        return matlab.rgb2y(image.pixels, channel_order="bgr")
    return image.pixels


def super_resolve_y(model, y, tile_size, dtype=np.float64):
    """A float Y plane in 0..255 super-resolved by the net (which works in 0..1), in `dtype`."""
    return np.multiply(tiles.super_resolve(model, y / 255.0, tile_size), 255.0, dtype=dtype)


def super_resolve_picture(model, image, tile_size=tiles.DEFAULT_TILE_SIZE, dtype=np.float32):
    """The network's result for a Picture: Y by the net, chroma and alpha bicubic; its planes in
    `dtype`."""
    def bicubic_plane(plane):
        return matlab.imresize(plane, model.scale, dtype=dtype)

    if image.is_colour:
        ycbcr = matlab.rgb2ycbcr(image.pixels, channel_order="bgr", dtype=dtype)
        y = super_resolve_y(model, ycbcr[:, :, 0], tile_size, dtype)
        # cv2.merge: Y and the two chroma planes into one (H, W, 3) array, faster than np.dstack
        pixels = matlab.ycbcr2rgb(cv2.merge([y, bicubic_plane(ycbcr[:, :, 1:])]),
                                  channel_order="bgr", dtype=dtype)
    else:
        pixels = super_resolve_y(model, image.pixels, tile_size, dtype)
    alpha = None if image.alpha is None else bicubic_plane(image.alpha)
    return picture.Picture(pixels, alpha, image.bit_depth)


def bicubic_picture(image, scale):
    """The bicubic baseline of a Picture: every plane by MATLAB's imresize."""
    return image.map_planes(lambda plane: matlab.imresize(plane, scale))
