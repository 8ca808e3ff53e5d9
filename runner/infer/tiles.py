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

from runner.infer import side_by_side
from runner.infer.tile_sizes import DEFAULT_TILE_SIZE


def _window(start, stop, length, size):
    """(first, last) input pixels of the tile that keeps start..stop of `length`: `context` =
    (size - (stop - start)) / 2 more on each side where the image has them, else shifted
    inwards to `size` all the same (or the whole length). Equal tiles reuse the same memory
    and the same oneDNN plans; the image's edge is never passed, so an edge tile computes
    exactly what the whole image does there."""
    first = min(max(start - (size - (stop - start)) // 2, 0), max(length - size, 0))
    return first, min(first + size, length)


def _even_step(length, tile_size, unit=1):
    """The tile side, a multiple of `unit`, that cuts `length` into as few tiles of at most
    `tile_size` (rounded up to `unit`) as can be, all about equal: 540 rows in two of 270, not
    in 512 and 28."""
    count = -(-length // max(tile_size, unit))
    return -(-length // (count * unit)) * unit


def bands(model, plane, tile_size=DEFAULT_TILE_SIZE):
    """(first output row, float32 band) of a 2-D plane in the net's units (0..1) super-resolved,
    top to bottom: each band is a row of tiles, `tile_size` network-input rows, every column.
    `tile_size` None runs the whole plane at once. An SRCNN-style net first gets the plane
    bicubically upscaled (`model.network_input`). Tiles go through the net side by side, one per
    thread of the model's, where its engine allows it (runner/infer/side_by_side.py)."""
    plane = model.network_input(plane)
    height, width = plane.shape
    tile_size = tile_size or max(height, width)
    factor, context = model.geometry.factor, model.geometry.context
    # bands of whole input pixels: an SRCNN-style net's input rows come `scale` per pixel
    band_rows = _even_step(height, tile_size, model.scale // factor)
    columns = _even_step(width, tile_size)
    band_tops, lefts = range(0, height, band_rows), range(0, width, columns)

    def window(top, left):
        """((first, last) rows, (first, last) columns) of the input the tile at top, left
        reads."""
        return (_window(top, top + band_rows, height, band_rows + 2 * context),
                _window(left, left + columns, width, columns + 2 * context))

    windows = [window(top, left) for top in band_tops for left in lefts]
    with side_by_side.one_thread_each(model, len(windows)) as at_once:
        inputs = (plane[rows[0]:rows[1], cols[0]:cols[1]] for rows, cols in windows)
        # one at a time: in this thread, whose OpenMP team is already up (a thread of its own
        # for each plane starts one: 256x256 planes one after another on 2 threads, 28.4
        # against 24.6 ms each)
        outputs = (side_by_side.in_order(model.run, inputs, at_once) if at_once > 1
                   else map(model.run, inputs))
        for top in band_tops:
            bottom = min(top + band_rows, height)
            if len(lefts) == 1:     # a band of one tile: its kept part as it is, not copied
                (outer_top, _), _ = window(top, 0)
                row = (top - outer_top) * factor
                yield top * factor, next(outputs)[row:row + (bottom - top) * factor]
                continue
            band = np.empty(((bottom - top) * factor, width * factor), np.float32)
            for left in lefts:
                right = min(left + columns, width)
                (outer_top, _), (outer_left, _) = window(top, left)
                tile = next(outputs)
                row, column = (top - outer_top) * factor, (left - outer_left) * factor
                band[:, left * factor:right * factor] = \
                    tile[row:row + band.shape[0], column:column + (right - left) * factor]
            yield top * factor, band


def super_resolve(model, plane, tile_size=DEFAULT_TILE_SIZE):
    """A 2-D plane in the net's units (0..1) super-resolved: (H * scale, W * scale) float32."""
    return np.concatenate([band for _, band in bands(model, plane, tile_size)])
