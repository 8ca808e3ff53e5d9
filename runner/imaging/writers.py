"""Result image files written from bands of rows (runner/infer/colour.py gives them), in a
background thread, so that quantizing and encoding one band overlaps computing the next.

PNG streams (runner/imaging/png.py): the whole result is never held. JPEG and WebP go through
OpenCV's encoders, which take a whole image: their rows are gathered in 8 bits first. JPEG has
no alpha channel (dropped) and neither keeps 16 bits (written in 8). The file appears under its
name only once complete (runner/files/outputs.py).
"""
import collections
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import cv2
import numpy as np

from runner.errors import UserError
from runner.files import outputs
from runner.imaging import picture
from runner.imaging.formats import DEFAULT_QUALITY
from runner.imaging.png import PngStream

_QUALITY_FLAGS = {"jpg": cv2.IMWRITE_JPEG_QUALITY, "webp": cv2.IMWRITE_WEBP_QUALITY}
# Bands handed to the encoder and not yet written, at most: memory stays a few bands.
IN_FLIGHT = 2


def channels_of(part):
    """Channels of a Picture as written: gray 1, colour 3, either with alpha 4 (a gray image
    with alpha is written as BGRA, as OpenCV writes it)."""
    if part.alpha is not None:
        return 4
    return 3 if part.is_colour else 1


class _Png:
    def __init__(self, file, height, first):
        self.stream = PngStream(file, height, first.pixels.shape[1], channels_of(first),
                                first.bit_depth)

    def add(self, part):
        self.stream.add(picture.to_array(part))

    def finish(self):
        self.stream.finish()


class _Whole:
    """JPEG or WebP: rows gathered into one 8-bit image, encoded by OpenCV at the end."""

    def __init__(self, file, height, first, format_name, quality, where):
        self.file, self.format_name, self.where, self.row = file, format_name, where, 0
        self.keep_alpha = format_name != "jpg"
        channels = channels_of(first if self.keep_alpha else replace(first, alpha=None))
        width = first.pixels.shape[1]
        self.image = np.empty((height, width) if channels == 1 else (height, width, channels),
                              np.uint8)
        self.params = [_QUALITY_FLAGS[format_name], quality]

    def add(self, part):
        part = replace(part, bit_depth=8, alpha=part.alpha if self.keep_alpha else None)
        rows = picture.to_array(part)
        self.image[self.row:self.row + len(rows)] = rows
        self.row += len(rows)

    def finish(self):
        ok, encoded = cv2.imencode(f".{self.format_name}", self.image, self.params)
        if not ok:
            raise UserError(self.where, f"could not encode the {self.format_name.upper()}")
        self.file.write(encoded)


def write_bands(path, height, bands, format_name="png", quality=None):
    """Write the (first row, Picture) bands of one image of `height` rows to `path` as
    `format_name` (runner/imaging/formats.py; `quality` for jpg and webp, default theirs);
    returns the path."""
    quality = DEFAULT_QUALITY.get(format_name) if quality is None else quality
    with outputs.atomic_paths(path) as (temporary,), ThreadPoolExecutor(1) as encoder:
        try:
            with open(temporary, "wb") as file:
                sink, pending = None, collections.deque()
                for _, part in bands:
                    if sink is None:
                        sink = (_Png(file, height, part) if format_name == "png" else
                                _Whole(file, height, part, format_name, quality, path))
                    pending.append(encoder.submit(sink.add, part))
                    while len(pending) > IN_FLIGHT:
                        pending.popleft().result()
                for done in pending:
                    done.result()
                sink.finish()
        except OSError as error:
            raise UserError(path, f"cannot write ({error.strerror})") from None
    return path
