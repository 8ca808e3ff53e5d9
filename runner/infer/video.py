"""`runner predict clip.mp4`: a video super-resolved frame by frame, same frame rate and count.

PyAV (FFmpeg) decodes the frames as the YUV 4:2:0 planes video holds and encodes the result from
the same planes, with no RGB in between: the net super-resolves the Y plane (BT.601 studio range,
MATLAB rgb2ycbcr's Y, the one the net was trained on) and the half-resolution chroma planes are
upscaled by MATLAB's bicubic imresize at their own resolution, which is all of the chroma that
4:2:0 keeps. Going through BGR as predict does for pictures (OpenCV's decoder converting to BGR,
Y, Cb and Cr converted from it and back, chroma upscaled at full resolution, and the encoder
converting back to 4:2:0) took FSRCNN-s on 240 frames of 640x360 at 25.3 frames/s against 30.0
this way (two threads), and its result was further from predict's float result on the decoded
frames (39.0 against 42.5 dB PSNR, after encoding).

The video is MPEG-4 Part 2 (`mpeg4`, OpenCV's `mp4v`) at the settings OpenCV's writer uses for it
(a bit rate of frames/s x width x height, the quantizer at least 3): files of the size OpenCV
writes. The work overlaps: frames go through the net side by side where the engine allows it
(runner/infer/side_by_side.py), while the next frame is decoded and the previous one encoded in a
thread of its own. The video is written under a temporary name and renamed when the last frame
is in, so a failure never leaves a truncated video behind.
"""
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from runner.errors import UserError
from runner.files import outputs
from runner.imaging import matlab
from runner.infer import colour, side_by_side, tile_sizes

CODEC = "mpeg4"
PIXEL_FORMAT = "yuv420p"
# Some containers do not record a frame rate: write those at this one.
FALLBACK_FPS = Fraction(25)
# OpenCV's mp4v settings: bits per second per pixel of a second's frames, the least quantizer
BITS_PER_PIXEL_AND_FRAME = 1
LEAST_QUANTIZER = 3


@dataclass(frozen=True)
class VideoResult:
    path: Path
    frames: int
    fps: float


def open_video(path):
    """The PyAV container of a video file and its first video stream; a UserError when FFmpeg
    cannot open it as a video."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError:
        raise UserError(path, "cannot be opened as a video (unknown format or damaged)") from None
    if not container.streams.video:
        container.close()
        raise UserError(path, "holds no video stream")
    stream = container.streams.video[0]
    stream.thread_count = 1         # the decoder runs beside the net's threads
    return container, stream


def frame_size(path):
    """(height, width) of a video's frames, as its stream declares them."""
    container, stream = open_video(path)
    try:
        return stream.codec_context.height, stream.codec_context.width
    finally:
        container.close()


def decoded_planes(container, stream, path):
    """Each frame of the stream as (Y, U, V) uint8 planes, U and V at half the size."""
    try:
        for frame in container.decode(stream):
            if frame.width % 2 or frame.height % 2:
                raise UserError(path, f"has {frame.width}x{frame.height} frames: super-resolved "
                                "4:2:0 video needs even sides")
            packed = frame.to_ndarray(format=PIXEL_FORMAT)
            height, width = frame.height, frame.width
            chroma = packed[height:].reshape(2, height // 2, width // 2)
            yield packed[:height], chroma[0], chroma[1]
    except av.error.FFmpegError as error:
        raise UserError(path, f"is damaged: {error.strerror or error}") from None


def super_resolved_planes(model, planes, tile_size=tile_sizes.DEFAULT_TILE_SIZE):
    """One frame's (Y, U, V) uint8 planes super-resolved: Y by the net, U and V by MATLAB's
    bicubic imresize; the result packed as the encoder takes 4:2:0 (Y's rows, then U's and V's
    values)."""
    y, *chroma = planes
    big_y = matlab.to_uint8(colour.super_resolve_y(model, y, tile_size, dtype=np.float32))
    big_chroma = [matlab.to_uint8(matlab.imresize(plane, model.scale, dtype=np.float32))
                  for plane in chroma]
    return np.concatenate([big_y.ravel()] + [plane.ravel() for plane in big_chroma]).reshape(
        -1, big_y.shape[1])


def _writer(path, fps, width, height):
    """(container, stream) of an MPEG-4 video written to `path` at OpenCV's mp4v settings."""
    container = av.open(str(path), mode="w", format="mp4")
    stream = container.add_stream(CODEC, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, PIXEL_FORMAT
    stream.bit_rate = int(BITS_PER_PIXEL_AND_FRAME * float(fps) * width * height)
    stream.thread_count = 1         # encoding runs beside the net's threads
    stream.options = {"qmin": str(LEAST_QUANTIZER)}
    return container, stream


def predict_video(model, path, out_path, tile_size=tile_sizes.DEFAULT_TILE_SIZE, progress=True):
    """Write `out_path`: every frame of `path` super-resolved, at the input's frame rate."""
    container, stream = open_video(path)
    try:
        fps = stream.average_rate or stream.guessed_rate or FALLBACK_FPS
        total = stream.frames or None
        frames = decoded_planes(container, stream, path)
        first = next(frames, None)
        if first is None:
            raise UserError(path, "holds no frame FFmpeg can decode")
        height, width = first[0].shape
        with outputs.atomic_paths(out_path) as (temporary,):
            try:
                writer = _writer(temporary, fps, width * model.scale, height * model.scale)
            except av.error.FFmpegError as error:
                raise UserError(out_path, f"cannot be written as an MPEG-4 video: "
                                f"{error.strerror or error}") from None
            try:
                # disable=None: a progress bar on a terminal only, never in logs or pipes
                with tqdm(total=total, desc=Path(path).name, unit="frame",
                          disable=None if progress else True, leave=False) as bar:
                    count = _pipeline(model, first, frames, writer, tile_size, bar)
            finally:
                writer[0].close()
    finally:
        container.close()
    return VideoResult(Path(out_path), count, float(fps))


def _encode(container, stream, packed, index):
    frame = None
    if packed is not None:
        frame = av.VideoFrame.from_ndarray(packed, format=PIXEL_FORMAT)
        frame.pts = index
    for packet in stream.encode(frame):
        container.mux(packet)


def _pipeline(model, first, frames, writer, tile_size, bar):
    """Super-resolve `first` and every frame after it into `writer` ((container, stream)), in
    order, frames side by side (runner/infer/side_by_side.py), each result encoded in a thread
    of its own while the next ones compute; returns the number of frames."""
    count, encoding = 0, None
    with side_by_side.one_thread_each(model) as at_once, ThreadPoolExecutor(1) as encoder:
        def compute(planes):
            return super_resolved_planes(model, planes, tile_size)
        for packed in side_by_side.in_order(compute, itertools.chain([first], frames), at_once):
            if encoding is not None:
                encoding.result()
            encoding = encoder.submit(_encode, *writer, packed, count)
            count += 1
            bar.update()
        if encoding is not None:
            encoding.result()
        _encode(*writer, None, count)       # the encoder's last packets
    return count
