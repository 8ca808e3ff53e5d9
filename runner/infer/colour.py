"""Predict's colour pipeline: the net super-resolves Y, everything else is upscaled bicubically.

Y is MATLAB rgb2ycbcr's (the Y the net was trained on) and stays in float until the file is
written; Cb, Cr and alpha go through MATLAB's bicubic imresize; the result is converted back with
MATLAB's ycbcr2rgb. A grayscale picture is its own Y.

The result comes in bands of `CHUNK_ROWS` input rows, top to bottom, as the net's tiles finish
(runner/infer/tiles.py): each band's chroma is upscaled from its own rows and a few around them
(`matlab.upscaled_rows`) and converted there, so no float plane of the whole output is ever held
and a writer can encode (runner/imaging/writers.py) while the net computes the next band.

The net computes in float32, and so does the rest by default: the same MATLAB formulas in float32
(runner/imaging/matlab.py's `dtype`) are several times faster than in float64 and change a written
8-bit value by at most one level (tested); `dtype=np.float64` gives the float64 result. What is
written from an 8-bit colour picture goes further (`eight_bit`): Y, Cb and Cr stay separate
planes and each output channel is weighted and rounded straight into 8 bits, with no float
image of the result (a 1080p video frame's colour work 18 -> 11 ms on one thread; within one
level of the float64 result, tested).
"""
import cv2
import numpy as np

from runner.imaging import matlab, picture
from runner.infer import tile_sizes, tiles

# Input rows converted at a time: a band of the output small enough to stay in cache (96 output
# rows of a 5760-pixel-wide result: 6.6 MB of float32 BGR).
CHUNK_ROWS = 32


def y_plane(image):
    """The float Y plane (0..255) of a Picture: MATLAB rgb2ycbcr's Y, or the grayscale itself."""
    if image.is_colour:
        return matlab.rgb2y(image.pixels, channel_order="bgr")
    return image.pixels


def super_resolve_y(model, y, tile_size, dtype=np.float64):
    """A float Y plane in 0..255 super-resolved by the net (which works in 0..1), in `dtype`."""
    return np.multiply(tiles.super_resolve(model, y / 255.0,
                                           tile_sizes.tile_size_for(model, y.shape, tile_size)),
                       255.0, dtype=dtype)


def _net_input(image, dtype):
    """The net's input for a Picture: its Y plane (computed in `dtype`) in 0..1, float32."""
    y = (matlab.rgb2y(image.pixels, channel_order="bgr", dtype=dtype) if image.is_colour
         else image.pixels)
    return np.divide(y, 255.0, dtype=np.float32)


def _chunks(top, bottom):
    """(first, last) input rows of each chunk of CHUNK_ROWS between top and bottom."""
    return [(first, min(first + CHUNK_ROWS, bottom)) for first in range(top, bottom, CHUNK_ROWS)]


def bands(model, image, tile_size=tile_sizes.DEFAULT_TILE_SIZE, dtype=np.float32,
          eight_bit=False):
    """(first output row, Picture) of the network's result for a Picture, top to bottom in bands
    of CHUNK_ROWS input rows: Y by the net, chroma and alpha bicubic; planes in `dtype`, or with
    `eight_bit` an 8-bit colour picture's pixels as the uint8 values written (converted and
    rounded in one go, `matlab.ycbcr2rgb_uint8`: what writers and the video encoder take).
    Besides the picture, only its Y plane is held whole (the net's input, float32 in 0..1):
    each band's chroma is converted from its own rows."""
    scale = model.scale

    def chroma(channel):
        # one plane at a time, each converted alone: the polyphase upscaling runs several times
        # faster on a plane than on two interleaved channels
        def plane(rows):
            return matlab.rgb2ycbcr_plane(rows, channel, channel_order="bgr", dtype=dtype)
        return plane

    net_input = _net_input(image, dtype)
    for first_row, y_band in tiles.bands(model, net_input,
                                         tile_sizes.tile_size_for(model, net_input.shape, tile_size)):
        top = first_row // scale
        for first, last in _chunks(top, top + len(y_band) // scale):
            rows = np.multiply(y_band[(first - top) * scale:(last - top) * scale], 255.0,
                               dtype=dtype)
            if image.is_colour:
                cb, cr = (matlab.upscaled_rows(image.pixels, scale, first, last, dtype,
                                               chroma(channel)) for channel in (1, 2))
                if eight_bit and image.bit_depth == 8:
                    rows = matlab.ycbcr2rgb_uint8(rows, cb, cr, channel_order="bgr")
                else:
                    # cv2.merge: the three planes into one (H, W, 3) array, faster than np.dstack
                    rows = matlab.ycbcr2rgb(cv2.merge([rows, cb, cr]), channel_order="bgr",
                                            dtype=dtype)
            alpha = (None if image.alpha is None
                     else matlab.upscaled_rows(image.alpha, scale, first, last, dtype))
            yield first * scale, picture.Picture(rows, alpha, image.bit_depth)


def bicubic_bands(image, scale, dtype=np.float32):
    """(first output row, Picture) of the bicubic baseline of a Picture (every plane by MATLAB's
    imresize), top to bottom in bands of CHUNK_ROWS input rows; planes in `dtype`."""
    for first, last in _chunks(0, image.size[0]):
        yield first * scale, image.map_planes(
            lambda plane: matlab.upscaled_rows(plane, scale, first, last, dtype))


def assembled(picture_bands):
    """One Picture from the bands of one."""
    parts = [part for _, part in picture_bands]
    alpha = None if parts[0].alpha is None else np.concatenate([part.alpha for part in parts])
    return picture.Picture(np.concatenate([part.pixels for part in parts]), alpha,
                           parts[0].bit_depth)


def super_resolve_picture(model, image, tile_size=tile_sizes.DEFAULT_TILE_SIZE, dtype=np.float32,
                          eight_bit=False):
    """The network's result for a Picture, whole: Y by the net, chroma and alpha bicubic; its
    planes in `dtype` (8-bit colour pixels as written with `eight_bit`, as `bands`)."""
    return assembled(bands(model, image, tile_size, dtype, eight_bit))


def bicubic_picture(image, scale, dtype=np.float64):
    """The bicubic baseline of a Picture, whole: every plane by MATLAB's imresize."""
    return image.map_planes(lambda plane: matlab.imresize(plane, scale, dtype=dtype))
