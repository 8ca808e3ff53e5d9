"""Run an InferenceModel (runner/infer/deploy.py) over a whole plane, in overlapping tiles, one
band of tiles at a time.

Memory follows the tile, not the image: each tile is cut with `context` extra pixels on every
side (at least the net's receptive field), run on its own, and only its centre is kept. A kept
output pixel then sees exactly the input it sees in a whole-image pass (tiles at the image's
border get the same edge handling as the whole image), so tiled and whole results agree to float
rounding (tested: below 1e-5). The result comes band by band (a row of tiles), so that what
follows the net (colour, encoding: runner/infer/colour.py) never needs the whole float plane.
"""
import numpy as np

# Tile side in input pixels: a 512x512 FSRCNN(56,12,4) tile peaks at about 150 MB of activations
# (two 56-channel blobs of 67 MB alive at a time).
DEFAULT_TILE_SIZE = 512


def _window(start, stop, length, size):
    """(first, last) input pixels of the tile that keeps start..stop of `length`: `context` =
    (size - (stop - start)) / 2 more on each side where the image has them, else shifted
    inwards to `size` all the same (or the whole length). Equal tiles reuse the same memory
    and the same oneDNN plans; the image's edge is never passed, so an edge tile computes
    exactly what the whole image does there."""
    first = min(max(start - (size - (stop - start)) // 2, 0), max(length - size, 0))
    return first, min(first + size, length)


def bands(model, plane, tile_size=DEFAULT_TILE_SIZE):
    """(first output row, float32 band) of a 2-D plane in the net's units (0..1) super-resolved,
    top to bottom: each band is a row of tiles, `tile_size` network-input rows, every column.
    `tile_size` None runs the whole plane at once. An SRCNN-style net first gets the plane
    bicubically upscaled (`model.network_input`)."""
    plane = model.network_input(plane)
    height, width = plane.shape
    tile_size = tile_size or max(height, width)
    factor, context = model.geometry.factor, model.geometry.context
    # bands of whole input pixels: an SRCNN-style net's input rows come `scale` per pixel
    per_pixel = model.scale // factor
    band_rows = max(tile_size // per_pixel, 1) * per_pixel
    for top in range(0, height, band_rows):
        bottom = min(top + band_rows, height)
        outer_top, outer_bottom = _window(top, top + band_rows, height, band_rows + 2 * context)
        rows = plane[outer_top:outer_bottom]
        band = np.empty(((bottom - top) * factor, width * factor), np.float32)
        for left in range(0, width, tile_size):
            right = min(left + tile_size, width)
            outer_left, outer_right = _window(left, left + tile_size, width,
                                              tile_size + 2 * context)
            tile = model.run(rows[:, outer_left:outer_right])
            row, column = (top - outer_top) * factor, (left - outer_left) * factor
            band[:, left * factor:right * factor] = \
                tile[row:row + band.shape[0], column:column + (right - left) * factor]
        yield top * factor, band


def super_resolve(model, plane, tile_size=DEFAULT_TILE_SIZE):
    """A 2-D plane in the net's units (0..1) super-resolved: (H * scale, W * scale) float32."""
    return np.concatenate([band for _, band in bands(model, plane, tile_size)])
