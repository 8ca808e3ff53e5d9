"""`runner predict`: super-resolve image files (and videos, `runner/infer/video.py`) with a trained
model.

Colour: the net super-resolves the Y channel (MATLAB rgb2ycbcr, kept in float until the file is
written); Cb and Cr are upscaled by MATLAB's bicubic imresize and the result converted back to RGB.
A grayscale image is its own Y and stays grayscale; an alpha channel is upscaled bicubically and
kept; a 16-bit file is computed in float and written back in 16 bits. Each input gives
`<stem>_x<scale>_<net>.png` and, for comparison, `<stem>_x<scale>_bicubic.png`.

`--degrade` takes the image as ground truth instead: modcrop, degrade (`paper`: MATLAB bicubic
1/scale; `tutorial`: Gaussian blur then cv2.resize), super-resolve, score bicubic and network on Y
against the ground truth and draw the comparison (`runner/score/degraded.py`).

An image smaller than the net's receptive field is super-resolved like any other: the net pads it
with zeros exactly as it padded its 7x7 training subimages (a 1x1 image gives a scale x scale one).

Inputs must have a supported suffix, and each, as its turn comes, at most `--max-pixels` pixels
(DEFAULT_MAX_PIXELS; a video's frames likewise), read from its header, so that a file which
would decode to gigabytes is refused without decoding it.
"""
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from runner.config import loading, schema
from runner.errors import UserError
from runner.files import outputs, snapshot
from runner.imaging import picture
from runner.imaging.datasets import IMAGE_SUFFIXES
from runner.infer import colour, tiles, video
from runner.score import degraded, evaluate

REPO_ROOT = Path(__file__).resolve().parents[1]
# The default run: its newest snapshot is the model `runner predict` uses without --model.
DEFAULT_SOLVER = REPO_ROOT / "configs" / "fsrcnn_solver.yaml"
# The trained model the repository ships, used when no run has a snapshot yet.
SHIPPED_MODEL = REPO_ROOT / "results" / "models" / "fsrcnn_x3.model"
DEFAULT_OUTPUT_FOLDER = Path("results") / "predict"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
# Input pixels (per image or video frame) predict takes without --max-pixels: 2048 x 2048. A
# colour image this large peaks at about 5.3 GB of memory at x3 (measured), and more at x4.
DEFAULT_MAX_PIXELS = 2048 * 2048


def default_model(solver_path=DEFAULT_SOLVER, shipped=SHIPPED_MODEL):
    """(model path, why it was chosen): the newest snapshot of the default run, else the shipped
    model; a UserError saying how to get one when there is neither."""
    solver = loading.load(schema.SolverParameter, solver_path)
    newest = snapshot.newest_snapshot(solver.snapshot_prefix)
    if newest is not None:
        return newest, f"newest snapshot of {solver.snapshot_prefix}"
    if Path(shipped).is_file():
        return Path(shipped), "the shipped model"
    raise UserError("runner predict", f"no model: no snapshot {solver.snapshot_prefix}_iter_*"
                    f".model and no {_shown(shipped)}; train one (`runner train --solver "
                    f"{_shown(solver_path)}`) or give --model FILE")


def _shown(path):
    """A path as the user would type it: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def is_video(path):
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _is_input_file(path):
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES


def _folder_inputs(path):
    try:
        return sorted(child for child in path.iterdir() if _is_input_file(child))
    except OSError as error:
        raise UserError(path, f"cannot list the folder ({error.strerror})") from None


def collect_inputs(arguments):
    """Files named by arguments: files, folders (their images and videos) or glob patterns."""
    found = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = _folder_inputs(path)
            if not files:
                raise UserError(path, "holds no images or videos "
                                f"({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
            found += files
        elif path.is_file():
            if not _is_input_file(path):
                raise UserError(path, f"predict reads {', '.join(IMAGE_SUFFIXES)} images and "
                                f"{', '.join(VIDEO_SUFFIXES)} videos, not "
                                f"{path.suffix or 'a file without a suffix'}")
            found.append(path)
        elif path.exists():
            raise UserError(path, "is not a regular file or a folder")
        elif glob.has_magic(argument):
            files = sorted(Path(name) for name in glob.glob(argument) if _is_input_file(Path(name)))
            if not files:
                raise UserError(argument, "matches no image or video file")
            found += files
        else:
            raise UserError(path, "no such file or folder")
    return list(dict.fromkeys(found))


def file_label(name):
    """A net name as it goes into file names."""
    return re.sub(r"[^a-z0-9.-]+", "_", name.lower()).strip("_") or "net"


@dataclass(frozen=True)
class Job:
    """One input and the files it gives."""

    source: Path
    kind: str           # image | degrade | video
    outputs: tuple      # image: (network, bicubic); degrade: (figure,); video: (video,)


def check_size(path, max_pixels=DEFAULT_MAX_PIXELS):
    """A UserError unless the image (or the video's frames) at `path` has at most
    `max_pixels` pixels, read from its header."""
    height, width = (video.frame_size(path) if is_video(path)
                     else picture.declared_size(path))
    if height * width > max_pixels:
        raise UserError(path, f"is {width}x{height} ({height * width:,} pixels), more than "
                        f"--max-pixels {max_pixels:,}: raise it to super-resolve the file "
                        f"(a colour image of {DEFAULT_MAX_PIXELS:,} pixels takes about 5 GB)")


def plan(paths, model, out_dir, degrade=False):
    """The Job of each input, with `out_dir` created; a UserError before any work if the folder
    cannot be written, an output would overwrite an input or two inputs would write the same
    file."""
    outputs.writable_folder(out_dir)
    label = file_label(model.name)

    def named(path, what, suffix=".png"):
        return Path(out_dir) / f"{path.stem}_x{model.scale}_{what}{suffix}"

    jobs = []
    for path in paths:
        if is_video(path):
            if degrade:
                raise UserError(path, "--degrade takes images, not videos")
            jobs.append(Job(path, "video", (named(path, label, ".mp4"),)))
        elif degrade:
            jobs.append(Job(path, "degrade", (named(path, f"{label}_figure"),)))
        else:
            jobs.append(Job(path, "image", (named(path, label), named(path, evaluate.BICUBIC))))
    inputs = {path.resolve() for path in paths}
    writers = {}
    for job in jobs:
        for output in job.outputs:
            if output.resolve() in inputs:
                raise UserError(job.source, f"its output {output} would overwrite an input; "
                                "choose another --out")
            if output in writers:
                raise UserError(job.source, f"{writers[output]} would write the same "
                                f"{output}; give them different names or folders")
            writers[output] = job.source
    return jobs


# --------------------------------------------------------------------------- one image

def predict_image(model, path, network_path, bicubic_path, tile_size=tiles.DEFAULT_TILE_SIZE):
    """Write the network's and the bicubic result of one image file; returns their paths."""
    image = picture.read(path)
    network = colour.super_resolve_picture(model, image, tile_size)
    bicubic = colour.bicubic_picture(image, model.scale)
    return outputs.write_files({network_path: picture.encode_png(network, network_path),
                                bicubic_path: picture.encode_png(bicubic, bicubic_path)})


# --------------------------------------------------------------------------- many inputs

def run(jobs, model, tile_size=tiles.DEFAULT_TILE_SIZE, degradation="paper", progress=True,
        max_pixels=DEFAULT_MAX_PIXELS):
    """Run every Job in order; yields (job, result) as each completes. A failing input (one of
    more than `max_pixels` too) stops the run with its UserError; the outputs of the inputs
    before it are complete and kept."""
    # disable=None: a progress bar on a terminal only, never in logs or pipes
    for job in tqdm(jobs, unit="file", leave=False,
                    disable=None if progress and len(jobs) > 1 else True):
        check_size(job.source, max_pixels)
        if job.kind == "video":
            yield job, video.predict_video(model, job.source, job.outputs[0], tile_size,
                                           progress)
        elif job.kind == "degrade":
            yield job, degraded.predict_degraded(model, job.source, job.outputs[0],
                                                 degradation, tile_size)
        else:
            yield job, predict_image(model, job.source, *job.outputs, tile_size)
