"""`runner predict clip.mp4`: a video super-resolved frame by frame, same fps and frame count.

OpenCV reads the frames (BGR) and writes an MPEG-4 (`mp4v`) video; each frame goes through
predict's colour pipeline. The work overlaps: frames go through the net side by side where the
engine allows it (runner/infer/side_by_side.py: FSRCNN-s at x3 on 640x360 frames, 2 cores, 22 to
24 against 17 frames/s with a frame's ops split over the threads; FSRCNN 12 to 13 against 10 to
11; the same bytes out), while the next frame is decoded and the previous one quantized and
encoded in a thread of its own (OpenCV's codecs let other threads run meanwhile). The video is
written under a temporary name and renamed when the last frame is in, so a failure never leaves
a truncated video behind.
"""
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from runner.errors import UserError
from runner.files import outputs
from runner.imaging import picture
from runner.imaging.images import native_stderr_silenced
from runner.infer import colour, side_by_side, tile_sizes

FOURCC = "mp4v"
# Some containers do not record a frame rate (OpenCV reports 0): write those at this one.
FALLBACK_FPS = 25.0


@dataclass(frozen=True)
class VideoResult:
    path: Path
    frames: int
    fps: float


def _read(capture):
    """The next frame, or None at the end; the decoder's own messages stay off the terminal."""
    with native_stderr_silenced():
        ok, frame = capture.read()
    return frame if ok else None


def open_video(path):
    """A cv2.VideoCapture of `path`, or a UserError when OpenCV cannot open it as a video."""
    with native_stderr_silenced():
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise UserError(path, "cannot be opened as a video (unknown format or damaged)")
    return capture


def frame_size(path):
    """(height, width) of a video's frames, as its container declares them."""
    capture = open_video(path)
    try:
        return (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    finally:
        capture.release()


def predict_video(model, path, out_path, tile_size=tile_sizes.DEFAULT_TILE_SIZE, progress=True):
    """Write `out_path`: every frame of `path` super-resolved, at the input's frame rate."""
    capture = open_video(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps > 0 else FALLBACK_FPS
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        frame = _read(capture)
        if frame is None:
            raise UserError(path, "holds no frame OpenCV can decode")
        height, width = frame.shape[:2]
        size = (width * model.scale, height * model.scale)
        with outputs.atomic_paths(out_path) as (temporary,):
            writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*FOURCC), fps, size)
            if not writer.isOpened():
                raise UserError(out_path, f"OpenCV cannot write a {FOURCC} video here")
            try:
                # disable=None: a progress bar on a terminal only, never in logs or pipes
                with tqdm(total=total, desc=Path(path).name, unit="frame",
                          disable=None if progress else True, leave=False) as bar:
                    frames = _pipeline(model, path, capture, frame, writer, tile_size, bar)
            finally:
                writer.release()
    finally:
        capture.release()
    return VideoResult(Path(out_path), frames, fps)


def _frames(capture, first):
    """`first`, then each frame `capture` decodes after it."""
    frame = first
    while frame is not None:
        yield frame
        frame = _read(capture)


def _super_resolved(frame, model, path, tile_size):
    """One frame super-resolved, as the 8-bit BGR array the writer takes."""
    parts = colour.bands(model, picture.from_array(frame, path), tile_size, eight_bit=True)
    return np.concatenate([picture.to_array(part) for _, part in parts])


def _pipeline(model, path, capture, frame, writer, tile_size, bar):
    """Super-resolve `frame` and every frame after it into `writer`, in order, frames side by
    side (runner/infer/side_by_side.py), each result encoded in a thread of its own while the
    next ones compute; returns the number of frames."""
    frames, encoding = 0, None
    with side_by_side.one_thread_each(model) as at_once, ThreadPoolExecutor(1) as encoder:
        compute = functools.partial(_super_resolved, model=model, path=path,
                                    tile_size=tile_size)
        for result in side_by_side.in_order(compute, _frames(capture, frame), at_once):
            if encoding is not None:
                encoding.result()
            encoding = encoder.submit(writer.write, result)
            frames += 1
            bar.update()
        if encoding is not None:
            encoding.result()
    return frames
