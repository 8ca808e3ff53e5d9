"""Image files to 8-bit arrays, and their Y channel as prep takes it.

Images are decoded from their bytes (so the bytes hashed for the HDF5 provenance are the bytes
decoded) with OpenCV, which gives BGR channel order; `runner/imaging/matlab.py` is told so explicitly.
"""
import contextlib
import os
import threading

import cv2
import numpy as np

from runner.config import loading, memory
from runner.errors import UserError
from runner.imaging import matlab

Y_CONVERSIONS = ("matlab", "opencv")
# MATLAB's im2uint8 on uint16 data: 65535 / 255 = 257.
UINT16_PER_UINT8 = 257.0


class _NativeStderr:
    """File descriptor 2 sent to /dev/null while any thread is inside `silenced()`, and given
    back when the last one leaves. Threads decode side by side (predict's inputs, a video's
    frames): each saving and restoring descriptor 2 on its own once left it pointing at
    /dev/null for the rest of the process whenever their windows overlapped, and every later
    error line went nowhere."""

    def __init__(self):
        self.lock, self.inside, self.saved = threading.Lock(), 0, None

    @contextlib.contextmanager
    def silenced(self):
        with self.lock:
            if self.inside == 0:
                self.saved = os.dup(2)
                with open(os.devnull, "wb") as devnull:
                    os.dup2(devnull.fileno(), 2)
            self.inside += 1
        try:
            yield
        finally:
            with self.lock:
                self.inside -= 1
                if self.inside == 0:
                    os.dup2(self.saved, 2)
                    os.close(self.saved)


_native_stderr = _NativeStderr()


def native_stderr_silenced():
    """Hide what OpenCV and libpng print on their own (`libpng error: ...`) for a bad file:
    the user gets our one error line instead. Any number of threads may be inside at once."""
    return _native_stderr.silenced()


def imdecode(data, where):
    """cv2.imdecode of file bytes as they are (None when OpenCV cannot decode them); what
    OpenCV refuses (an image over its pixel limit) is a UserError naming `where`."""
    if not data:    # cv2.imdecode asserts on an empty buffer
        return None
    try:
        with native_stderr_silenced():
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        detail = error.err if hasattr(error, "err") else str(error).strip().splitlines()[-1]
        raise UserError(where, f"OpenCV cannot decode it: {detail}") from None


def decode_image(data, where):
    """Decode image file bytes into uint8 (H, W) grayscale or (H, W, 3) BGR; alpha is dropped.

    16-bit images are scaled to 8 bits as MATLAB's im2uint8 does. `where` names the file in errors.
    """
    image = imdecode(data, where)
    if image is None or image.size == 0:
        raise UserError(where, "not a readable image")
    if image.dtype == np.uint16:
        image = matlab.to_uint8(image / UINT16_PER_UINT8)
    elif image.dtype != np.uint8:
        raise UserError(where, f"unsupported pixel type {image.dtype} (use 8- or 16-bit images)")
    if image.ndim == 3 and image.shape[2] < 3:
        return image[:, :, 0]
    if image.ndim == 3:
        return image[:, :, :3]
    return image


def read_bytes(path):
    """An image file's bytes; an unreadable file (or not a regular one) is a UserError naming
    it."""
    return loading.read_bytes(path, "image file", memory.available_bytes())


def read_image(path):
    """An image file as decode_image returns it."""
    return decode_image(read_bytes(path), path)


def y_channel(image, y_conversion):
    """The uint8 Y channel of a decode_image result; a grayscale image is its own Y.

    matlab: rgb2ycbcr's rounded BT.601 studio-range Y (the papers' protocol);
    opencv: cv2's full-range YCrCb, channel 0 (what OpenCV-based pipelines use).
    """
    if y_conversion not in Y_CONVERSIONS:
        raise ValueError(f"y_conversion must be one of {Y_CONVERSIONS}, got {y_conversion!r}")
    if image.ndim == 2:
        return image
    if y_conversion == "matlab":
        return matlab.y_channel(image, channel_order="bgr")
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YCrCb)[:, :, 0]
