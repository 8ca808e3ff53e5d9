"""The image formats `runner predict` writes and their default quality (runner/imaging/writers.py
writes them): a module that imports nothing, so that the command line offers them without
loading OpenCV."""

FORMATS = ("png", "jpg", "webp")
# OpenCV's quality scales: JPEG 0..100 (95 is its own default), WebP 1..100 (its default is
# lossless, several times slower and larger than 90)
DEFAULT_QUALITY = {"jpg": 95, "webp": 90}
