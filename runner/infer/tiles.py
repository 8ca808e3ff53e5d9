"""Run an InferenceModel (runner/infer/deploy.py) over a whole plane, in overlapping tiles.

Memory follows the tile, not the image: each tile is cut with `context` extra pixels on every
side (at least the net's receptive field), run on its own, and only its centre is kept. A kept
output pixel then sees exactly the input it sees in a whole-image pass (tiles at the image's
border get the same edge handling as the whole image), so tiled and whole results agree to float
rounding (tested: below 1e-5).
"""
import numpy as np
import torch

from runner.imaging import matlab

# Tile side in input pixels: a 512x512 FSRCNN(56,12,4) tile peaks at about 200 MB of activations.
DEFAULT_TILE_SIZE = 512


@torch.no_grad()
def run_whole(model, plane):
    """The net on one float32 plane, its output as factor x the plane's size (float32)."""
    geometry = model.geometry
    if geometry.padding:
        plane = np.pad(plane, geometry.padding, mode="edge")
    tensor = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None]
    output = model.net({model.input_name: tensor.to(model.device)})[model.output_name][0, 0]
    crop = geometry.crop
    if crop:
        output = output[crop:output.shape[0] - crop, crop:output.shape[1] - crop]
    return output.cpu().numpy()


def _starts(length, tile_size):
    return range(0, length, tile_size)


def super_resolve(model, plane, tile_size=DEFAULT_TILE_SIZE):
    """A 2-D plane in the net's units (0..1) super-resolved: (H * scale, W * scale) float32.

    An SRCNN-style net first gets the plane bicubically upscaled (MATLAB imresize), as it was
    trained. `tile_size` None runs the whole plane at once.
    """
    if model.upsamples_first:
        plane = matlab.imresize(plane, model.scale)
    plane = np.asarray(plane, dtype=np.float32)
    height, width = plane.shape
    if tile_size is None or (height <= tile_size and width <= tile_size):
        return run_whole(model, plane)
    factor, context = model.geometry.factor, model.geometry.context
    result = np.empty((height * factor, width * factor), np.float32)
    for top in _starts(height, tile_size):
        bottom = min(top + tile_size, height)
        for left in _starts(width, tile_size):
            right = min(left + tile_size, width)
            outer_top, outer_left = max(top - context, 0), max(left - context, 0)
            tile = run_whole(model, plane[outer_top:min(bottom + context, height),
                                          outer_left:min(right + context, width)])
            row, column = (top - outer_top) * factor, (left - outer_left) * factor
            result[top * factor:bottom * factor, left * factor:right * factor] = \
                tile[row:row + (bottom - top) * factor, column:column + (right - left) * factor]
    return result
