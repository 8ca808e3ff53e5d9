"""`runner predict`: super-resolve image files (and videos, `runner/infer/video.py`) with a trained
model.

Colour: the net super-resolves the Y channel (MATLAB rgb2ycbcr, kept in float until the file is
written); Cb and Cr are upscaled by MATLAB's bicubic imresize and the result converted back to RGB.
A grayscale image is its own Y and stays grayscale; an alpha channel is upscaled bicubically and
kept; a 16-bit file is computed in float and written back in 16 bits. Each input gives
`<stem>_x<scale>_<net>.<format>` (png, jpg or webp) and, with `bicubic`, the comparison
`<stem>_x<scale>_bicubic.<format>`.

`--degrade` takes the image as ground truth instead: modcrop, degrade (`paper`: MATLAB bicubic
1/scale; `tutorial`: Gaussian blur then cv2.resize), super-resolve, score bicubic and network on Y
against the ground truth and draw the comparison (`runner/score/degraded.py`).

An image smaller than the net's receptive field is super-resolved like any other: the net pads it
with zeros exactly as it padded its 7x7 training subimages (a 1x1 image gives a scale x scale one).

Inputs must have a supported suffix, and each, as its turn comes, at most `--max-pixels` pixels
(DEFAULT_MAX_PIXELS; a video's frames likewise), read from its header, so that a file which
would decode to gigabytes is refused without decoding it.

Speed: an image goes through the net band by band and each band is converted and encoded in a
thread of its own while the net computes the next (runner/infer/colour.py,
runner/imaging/writers.py; an image of at most 512x512 pixels goes through whole, where tiles
cost more than they save: runner/infer/tile_sizes.py); a larger one's tiles go through the net
side by side, one per thread (a 1080p photo 1.84 against 1.95 s, a 4K one 5.8 against 6.6 s).
Several inputs go side by side, one per thread, where the engine allows it
(runner/infer/side_by_side.py), else one at a time with the next image read and decoded in
another thread meanwhile; with `jobs` > 1, that many processes share the inputs and the
threads. With torch, a HeadStart may take the first images in a forked child by OpenCV's engine
while torch is imported. This module imports the floors that compute only when it
runs, so that `runner predict --help` starts at once.
"""
import glob
import os
import pickle
import re
import signal
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError
from runner.files import outputs
from runner.infer import tile_sizes

REPO_ROOT = Path(__file__).resolve().parents[1]
# The default run: its newest snapshot is the model `runner predict` uses without --model.
DEFAULT_SOLVER = REPO_ROOT / "configs" / "fsrcnn_solver.yaml"
# The trained model the repository ships, used when no run has a snapshot yet.
SHIPPED_MODEL = REPO_ROOT / "results" / "models" / "fsrcnn_x3.model"
DEFAULT_OUTPUT_FOLDER = Path("results") / "predict"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
# Input pixels (per image or video frame) predict takes without --max-pixels: 8192 x 8192.
# Results are computed and written band by band, so memory follows the output: a 4K colour
# photo peaked at 0.6 GB at x3 (make bench), one this large would take about 3 GB.
DEFAULT_MAX_PIXELS = 8192 * 8192


def default_model(solver_path=DEFAULT_SOLVER, shipped=SHIPPED_MODEL):
    """(model path, why it was chosen): the newest snapshot of the default run, else the shipped
    model; a UserError saying how to get one when there is neither."""
    from runner.config import loading, schema
    from runner.files import snapshot
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


def collect_inputs(arguments):
    """Files named by arguments: files, folders (their images and videos) or glob patterns."""
    from runner.imaging.datasets import IMAGE_SUFFIXES
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES

    def is_input_file(path):
        return path.is_file() and path.suffix.lower() in suffixes

    def folder_inputs(path):
        try:
            return sorted(child for child in path.iterdir() if is_input_file(child))
        except OSError as error:
            raise UserError(path, f"cannot list the folder ({error.strerror})") from None

    found = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files = folder_inputs(path)
            if not files:
                raise UserError(path, f"holds no images or videos ({', '.join(suffixes)})")
            found += files
        elif path.is_file():
            if not is_input_file(path):
                raise UserError(path, f"predict reads {', '.join(IMAGE_SUFFIXES)} images and "
                                f"{', '.join(VIDEO_SUFFIXES)} videos, not "
                                f"{path.suffix or 'a file without a suffix'}")
            found.append(path)
        elif path.exists():
            raise UserError(path, "is not a regular file or a folder")
        elif glob.has_magic(argument):
            files = sorted(Path(name) for name in glob.glob(argument) if is_input_file(Path(name)))
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
class Options:
    """How the inputs are computed and written."""

    tile_size: int = tile_sizes.DEFAULT_TILE_SIZE   # None: whole images
    format: str = "png"                        # of image outputs: runner/imaging/formats.py
    quality: int = None                        # jpg and webp (None: formats.DEFAULT_QUALITY)
    bicubic: bool = False                      # also write the bicubic comparison
    degradation: str = "paper"                 # with --degrade
    jobs: int = 1                              # processes sharing the inputs
    threads: int = None                        # in all (None: as the process is set, and
                                               # every core this process may use for jobs)
    max_pixels: int = DEFAULT_MAX_PIXELS       # of an input image or video frame

    def threads_per_job(self):
        return max((self.threads or len(os.sched_getaffinity(0))) // self.jobs, 1)


@dataclass(frozen=True)
class Job:
    """One input and the files it gives."""

    source: Path
    kind: str           # image | degrade | video
    outputs: tuple      # image: (network,) or (network, bicubic); degrade: (figure,); video: (video,)


def check_size(path, max_pixels=DEFAULT_MAX_PIXELS):
    """A UserError unless the image (or the video's frames) at `path` has at most
    `max_pixels` pixels, read from its header."""
    if is_video(path):
        from runner.infer import video
        height, width = video.frame_size(path)
    else:
        from runner.imaging import picture
        height, width = picture.declared_size(path)
    if height * width > max_pixels:
        raise UserError(path, f"is {width}x{height} ({height * width:,} pixels), more than "
                        f"--max-pixels {max_pixels:,}: raise it to super-resolve the file "
                        "on a machine with the memory for it")


def declared_pixels(paths):
    """The input pixels of each path in turn, read from its header; None for a video or a
    header that cannot be read (its error comes when its turn comes)."""
    from runner.imaging import picture
    for path in paths:
        if is_video(path):
            yield None
            continue
        try:
            height, width = picture.declared_size(path)
        except UserError:
            yield None
            continue
        yield height * width


def input_pixels(paths, limit):
    """The input pixels of `paths` in all, read from the headers until the count passes
    `limit`; None where it is not known so (`declared_pixels`)."""
    total = 0
    for pixels in declared_pixels(paths):
        if pixels is None:
            return None
        total += pixels
        if total > limit:
            break
    return total


def plan(paths, model, out_dir, degrade=False, options=Options()):
    """The Job of each input, with `out_dir` created; a UserError before any work if the folder
    cannot be written, an output would overwrite an input or two inputs would write the same
    file."""
    from runner.score.protocol import BICUBIC
    outputs.writable_folder(out_dir)
    label = file_label(model.name)

    def named(path, what, suffix=f".{options.format}"):
        return Path(out_dir) / f"{path.stem}_x{model.scale}_{what}{suffix}"

    jobs = []
    for path in paths:
        if is_video(path):
            if degrade:
                raise UserError(path, "--degrade takes images, not videos")
            jobs.append(Job(path, "video", (named(path, label, ".mp4"),)))
        elif degrade:
            jobs.append(Job(path, "degrade", (named(path, f"{label}_figure", ".png"),)))
        else:
            jobs.append(Job(path, "image", (named(path, label),)
                            + ((named(path, BICUBIC),) if options.bicubic else ())))
    inputs = {path.resolve() for path in paths}
    writers_of = {}
    for job in jobs:
        for output in job.outputs:
            if output.resolve() in inputs:
                raise UserError(job.source, f"its output {output} would overwrite an input; "
                                "choose another --out")
            if output in writers_of:
                raise UserError(job.source, f"{writers_of[output]} would write the same "
                                f"{output}; give them different names or folders")
            writers_of[output] = job.source
    return jobs


# --------------------------------------------------------------------------- one image

def predict_picture(model, image, paths, options=Options()):
    """Write the network's result of a Picture to paths[0] (and, given paths[1], the bicubic
    one); returns the paths."""
    from runner.imaging import writers
    from runner.infer import colour
    height = image.size[0] * model.scale
    results = [colour.bands(model, image, options.tile_size, eight_bit=True),
               colour.bicubic_bands(image, model.scale)]
    return [writers.write_bands(path, height, bands, options.format, options.quality)
            for path, bands in zip(paths, results)]


def predict_image(model, path, paths, options=Options()):
    """predict_picture of an image file."""
    from runner.imaging import picture
    return predict_picture(model, picture.read(path), paths, options)


# --------------------------------------------------------------------------- many inputs

def _run_one(model, job, options, image=None, progress=False):
    """The result of one Job; `image`: its Picture, already read. Each kind's module is imported
    when a job of its kind runs (PyAV, for videos, takes 60 ms to import)."""
    if job.kind == "video":
        from runner.infer import video
        return video.predict_video(model, job.source, job.outputs[0], options.tile_size,
                                   progress)
    if job.kind == "degrade":
        from runner.score import degraded
        return degraded.predict_degraded(model, job.source, job.outputs[0],
                                         options.degradation, options.tile_size)
    return predict_picture(model, image, job.outputs, options)


def _checked_picture(job, options):
    """The job's Picture for an image (None otherwise), read once its header shows at most
    `options.max_pixels` pixels (a video's frames and a --degrade image are checked too)."""
    from runner.imaging import picture
    check_size(job.source, options.max_pixels)
    return picture.read(job.source) if job.kind == "image" else None


def _read_ahead(jobs, options):
    """For each job in turn: (job, a function returning its Picture for an image, else None),
    the next image read and decoded in a thread while the current one is computed."""
    with ThreadPoolExecutor(1) as reader:
        upcoming = reader.submit(_checked_picture, jobs[0], options) if jobs else None
        for index, job in enumerate(jobs):
            current = upcoming
            if index + 1 < len(jobs):
                upcoming = reader.submit(_checked_picture, jobs[index + 1], options)
            yield job, current.result


def _in_this_process(jobs, model, options, progress):
    """Each job, in order: several side by side where the engine allows it (each one reads its
    own input meanwhile), else one at a time with the next image read ahead."""
    from runner.infer import side_by_side
    if options.threads:         # else the process's own settings (OMP_NUM_THREADS) stand
        model.use_threads(options.threads)
    with side_by_side.one_thread_each(model, len(jobs)) as at_once:
        if at_once > 1:
            def run_one(job):
                return _run_one(model, job, options, _checked_picture(job, options))
            yield from zip(jobs, side_by_side.in_order(run_one, jobs, at_once))
            return
        for job, picture_of in _read_ahead(jobs, options):
            yield job, _run_one(model, job, options, picture_of(), progress)


_worker_model = None


def _load_worker(model_path, device, scale, engine, threads):
    global _worker_model
    from runner.config import memory
    from runner.infer import engines
    memory.keep_freed_memory()
    _worker_model = engines.load_for_inference(model_path, device, scale, engine)
    _worker_model.use_threads(threads)


def _run_in_worker(job, options):
    return _run_one(_worker_model, job, options, _checked_picture(job, options))


def _in_processes(jobs, model, options):
    """Each job in a pool of `options.jobs` processes (spawned: torch's threads do not survive a
    fork), each with the model loaded once by the engine that loaded `model`; results in the
    jobs' order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    pool = ProcessPoolExecutor(options.jobs, multiprocessing.get_context("spawn"),
                               initializer=_load_worker,
                               initargs=(model.path, str(model.device), model.scale,
                                         model.engine, options.threads_per_job()))
    try:
        futures = [pool.submit(_run_in_worker, job, options) for job in jobs]
        for job, future in zip(jobs, futures):
            yield job, future.result()
    finally:
        pool.shutdown(cancel_futures=True)


# --------------------------------------------------------------------------- head start

# Input pixels that OpenCV's engine takes in a child process while this one imports torch: what
# it computes at one thread, on the core the import leaves idle, in about the import's time
# (1.5 to 1.8 s here; nine BSD100 images). BSD100's folder, 6 interleaved pairs: 7.29 against
# 8.04 s (0.93x, every pair 0.82x to 0.98x).
HEAD_START_PIXELS = 1_400_000


def head_start_count(paths, options=Options(), limit=None):
    """How many of the first inputs a HeadStart takes: images of at most `limit` input pixels
    in all (None: HEAD_START_PIXELS; read from their headers), leaving some for this process;
    0 where there is no core to spare (one thread, or `jobs`), or no fork (not Linux)."""
    limit = HEAD_START_PIXELS if limit is None else limit
    if options.jobs > 1 or options.threads_per_job() < 2 or not sys.platform.startswith("linux"):
        return 0
    total = 0
    for count, pixels in enumerate(declared_pixels(paths[:-1])):
        if pixels is None or total + pixels > limit:
            return count
        total += pixels
    return len(paths) - 1


class HeadStart:
    """The first inputs super-resolved by OpenCV's engine (runner/infer/opencv_engine.py, within
    1e-5 of torch's) in a forked child at one thread, while this process imports torch for the
    rest. The child writes their files as this process would, and says on a pipe whether it
    could start (b"+": OpenCV's engine runs this model; b"-": this process computes them) and
    which input failed first, if one did."""

    def __init__(self, model_path, scale, paths, out_dir, options=Options()):
        self.paths, self._taken = list(paths), None
        self._pipe, writer = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._pipe)
            _head_start_child(model_path, scale, self.paths, out_dir, options, writer)
        os.close(writer)

    def taken(self):
        """How many of the first inputs the child computes: all it was given, or 0."""
        if self._taken is None:
            self._taken = len(self.paths) if os.read(self._pipe, 1) == b"+" else 0
        return self._taken

    def results(self, jobs):
        """(job, outputs) of the child's jobs (the first `taken()` of `jobs`) once it has
        ended; the UserError of its first failing input after the results before it."""
        taken = self.taken()            # its first byte read
        message = b"".join(iter(lambda: os.read(self._pipe, 1 << 16), b""))
        status = self._wait()
        failed, error = pickle.loads(message) if message else (taken, None)
        if error is None and status != 0:
            error = RuntimeError(f"the head start's process ended with status {status}")
        for job in jobs[:failed]:
            yield job, list(job.outputs)
        if error is not None:
            raise error

    def close(self):
        """Stop the child where it still runs (this process failed or was interrupted): it
        stops as on Ctrl-C, its unfinished file removed."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGINT)
            self._wait()

    def _wait(self):
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        os.close(self._pipe)
        return os.waitstatus_to_exitcode(status)


def _head_start_child(model_path, scale, paths, out_dir, options, pipe):
    """The child's work: never returns."""
    code = 0
    try:
        from runner.infer import engines
        try:
            model = engines.opencv_model(model_path, scale)
            jobs = None if model is None else plan(paths, model, out_dir, options=options)
        except UserError:
            jobs = None         # this process's own loading and planning say what is wrong
        os.write(pipe, b"-" if jobs is None else b"+")
        if jobs is not None:
            model.use_threads(1)
            for index, job in enumerate(jobs):
                try:
                    _run_one(model, job, options, _checked_picture(job, options))
                except UserError as error:
                    os.write(pipe, pickle.dumps((index, error)))
                    code = 2
                    break
    except KeyboardInterrupt:
        code = 130
    except BaseException:       # a bug: its traceback, and this process says it failed
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _after_head_start(head_start, their_jobs, own):
    """The head start's results, then this process's `own` (its first computed meanwhile); an
    error of this process's first input after the head start's results and error."""
    own, first, error = iter(own), [], None
    try:
        first.append(next(own))
    except StopIteration:
        pass
    except UserError as own_error:
        error = own_error
    yield from head_start.results(their_jobs)
    if error is not None:
        raise error
    yield from first
    yield from own


def run(jobs, model, options=Options(), progress=True, head_start=None):
    """Run every Job; yields (job, result) in order as each completes. A failing input stops the
    run with its UserError; the outputs of the inputs before it are complete and kept. The
    first `head_start.taken()` jobs are the HeadStart's."""
    from tqdm import tqdm
    ahead = head_start.taken() if head_start is not None else 0
    own = jobs[ahead:]
    results = (_in_processes(own, model, options) if options.jobs > 1 and len(own) > 1
               else _in_this_process(own, model, options, progress))
    if ahead:
        results = _after_head_start(head_start, jobs[:ahead], results)
    # disable=None: a progress bar on a terminal only, never in logs or pipes
    yield from tqdm(results, total=len(jobs), unit="file", leave=False,
                    disable=None if progress and len(jobs) > 1 else True)
