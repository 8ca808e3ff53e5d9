"""What size of tile a plane goes through the net in (runner/infer/tiles.py runs the tiles).
Plain numbers and one rule, with no imports, so that the command line can show the defaults
without loading numpy."""

# Tile side in input pixels. Memory follows it: a 276x276 FSRCNN(56,12,4) window (256 and the
# overlap) holds about 35 MB of activations at a time, a 532x532 one about 130 MB, and a 4K
# picture's peak fell from 844 to 618 MB going from 512 to 256; the speed hardly does (a 1080p
# Y plane on one thread: 1.85 s of CPU in tiles of 512, 2.0 s in tiles of 256).
DEFAULT_TILE_SIZE = 256
# A plane of at most this many input pixels runs whole whatever the tile size (`tile_size_for`):
# tiles bound the memory of large images, and on small ones they cost more than their overlap
# (a 481x321 BSD100 image in 4 tiles of 256 took 40% more CPU than whole, for 22% more pixels).
# A whole pass this large holds about as much as one 512x512 tile, 130 MB of FSRCNN activations.
WHOLE_PLANE_PIXELS = 512 * 512


def tile_size_for(model, shape, tile_size=DEFAULT_TILE_SIZE):
    """The tile size predict runs a plane of `shape` (H, W) in: None (whole) when the net's
    input for it (upscaled first for an SRCNN-style net) has at most WHOLE_PLANE_PIXELS, else
    `tile_size`."""
    upscaled = model.scale // model.geometry.factor
    return None if shape[0] * shape[1] * upscaled ** 2 <= WHOLE_PLANE_PIXELS else tile_size
