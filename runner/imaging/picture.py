"""Image files as `runner predict` takes and gives them: colour or grayscale, alpha, 8 or 16 bits.

Unlike prep (which wants the 8-bit Y of training images), predict keeps everything a user's file
has: pixels are float32 in 0..255 units whatever the bit depth (16-bit values / 257, as MATLAB's
im2uint8 scales; float32 holds every 8-bit value exactly and a 16-bit one to 1e-7 of it), an
alpha channel rides along, and the file written back has the input's bit depth.
OpenCV decodes: colour is BGR, a CMYK JPEG arrives converted to BGR, a palette PNG expanded.
An image's size is read from its header first (Pillow reads headers without decoding), so that
predict can refuse one beyond its pixel limit before a single pixel is allocated.
"""
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image

from runner.errors import UserError
from runner.imaging import matlab
from runner.imaging.images import UINT16_PER_UINT8, imdecode, read_bytes

UNREADABLE = "not a readable image (unknown format, damaged or truncated)"


@dataclass(frozen=True)
class Picture:
    """An image's planes in float (or already as written), and the bit depth to write it back
    in."""

    pixels: np.ndarray          # 0..255, (H, W) gray or (H, W, 3) BGR; float32 (or float64),
                                # or uint8 already as written (runner/infer/colour.py's eight_bit)
    alpha: np.ndarray = None    # the same dtype, 0..255, (H, W); None when the file has none
    bit_depth: int = 8          # 8 or 16: what the file held and what is written back

    @property
    def is_colour(self):
        return self.pixels.ndim == 3

    @property
    def size(self):
        """(height, width)."""
        return self.pixels.shape[:2]

    def map_planes(self, function):
        """The picture with `function` applied to its pixels and to its alpha."""
        return replace(self, pixels=function(self.pixels),
                       alpha=None if self.alpha is None else function(self.alpha))


def declared_size(path):
    """(height, width) that an image file's header declares, read without decoding pixels."""
    try:
        stream = open(path, "rb")
    except OSError as error:
        raise UserError(path, f"cannot read ({error.strerror})") from None
    # the caller checks its own pixel limit: Pillow's bomb check would hide the size
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with stream, Image.open(stream) as image:
            width, height = image.size
    except (OSError, ValueError, EOFError):     # Pillow's UnidentifiedImageError is an OSError
        raise UserError(path, UNREADABLE) from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return height, width


def decode(data, where):
    """A Picture from image file bytes; anything unreadable is a UserError naming `where`."""
    image = imdecode(data, where)
    if image is None or image.size == 0:
        raise UserError(where, UNREADABLE)
    return from_array(image, where)


def from_array(image, where):
    """A Picture from what OpenCV decodes: uint8/uint16, 1, 3 or 4 (BGRA) channels."""
    if image.dtype == np.uint8:
        bit_depth, pixels = 8, image.astype(np.float32)
    elif image.dtype == np.uint16:
        bit_depth, pixels = 16, np.divide(image, UINT16_PER_UINT8, dtype=np.float32)
    else:
        raise UserError(where, f"unsupported pixel type {image.dtype} (use 8- or 16-bit images)")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return Picture(pixels.reshape(image.shape[:2]), None, bit_depth)
    if channels == 3:
        return Picture(pixels, None, bit_depth)
    if channels == 4:
        return Picture(pixels[:, :, :3], pixels[:, :, 3], bit_depth)
    raise UserError(where, f"unsupported image with {channels} channels")


def read(path):
    """A Picture of an image file; a UserError naming the file when it cannot be read."""
    return decode(read_bytes(path), path)


def to_array(picture):
    """The picture as OpenCV writes it: values rounded and clipped to its bit depth."""
    def quantize(plane):
        if plane.dtype == np.uint8:
            return plane
        if picture.bit_depth == 8:
            return matlab.to_uint8(plane)
        return np.clip(np.round(plane * UINT16_PER_UINT8), 0, 65535).astype(np.uint16)

    pixels = quantize(picture.pixels)
    if picture.alpha is None:
        return pixels
    colour = pixels if picture.is_colour else np.repeat(pixels[:, :, None], 3, axis=2)
    return np.dstack([colour, quantize(picture.alpha)])


def encode_png(picture, where):
    """PNG file bytes of a picture, in its own bit depth."""
    ok, encoded = cv2.imencode(".png", to_array(picture))
    if not ok:
        raise UserError(where, "could not encode the PNG")
    return encoded.tobytes()


def display_rgb(picture):
    """8-bit RGB for showing (figures): grayscale repeated, alpha dropped."""
    pixels = matlab.to_uint8(picture.pixels)
    if not picture.is_colour:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    return pixels[:, :, ::-1]
