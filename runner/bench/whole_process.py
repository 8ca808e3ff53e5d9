"""What a user waits for: whole `runner predict` processes (start, read, super-resolve, write)
against the plain OpenCV scripts people write with `cv2.dnn_superres` and the authors' models,
each pair on the same input in the same run, interleaved; the same Y plane through onnxruntime
running our model exported to ONNX; the peak memory of a 4K picture; how fast the command line
starts.

Every process is timed from its start to its exit (`os.wait4`), and its peak memory is the
child's own high-water mark (VmHWM, read while it runs). The inputs are made here, at the sizes
`Inputs` gives (make bench's by default): photos as mosaics of General-100 images at their own
resolution (1920x1080 and 3840x2160), a 640x360 clip panning across the first photo, and
BSD100's 100 images as a folder. A video's frame rate is its throughput once started: frames of
a long clip less those of a short one, over the difference of their times (each process's start
cancels out).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import cv2
import numpy as np
import torch

from runner import export
from runner.bench.measure import REPO_ROOT, interleaved, ratio_line, timed_rate, values_text
from runner.cli import COMMANDS
from runner.imaging import datasets, matlab
from runner.infer import tile_sizes, tiles, torch_engine

SHIPPED = REPO_ROOT / "results" / "models"
TARGETS = {"photo": 2.0, "folder": 3.0, "video": 2.0, "real_time_fps": 24.0, "onnx": 1.2,
           "start_seconds": 0.5}
VIDEO_FPS = 24.0
# Y-plane passes per repetition of the processes: a pass takes a fifth of a second, and one
# slow pass among three (494 ms against 172 and 238) once decided the row's median
PLANE_ROUNDS = 5
# the OpenCV model beside each of ours: (ours in results/models, the authors' in reference_models)
MODELS = {"FSRCNN": ("fsrcnn_x3.model", "FSRCNN_x3.pb"),
          "FSRCNN-s": ("fsrcnn_s_x3.model", "FSRCNN-small_x3.pb")}
# memory target for a picture: its 8-bit output's bytes times this, plus MEMORY_ALLOWANCE
MEMORY_PER_OUTPUT_BYTE = 1.5
MEMORY_ALLOWANCE = 300 * 2 ** 20

# What people write with OpenCV: read, DnnSuperResImpl.upsample, write; argv: model, input,
# output, threads.
OPENCV_SCRIPTS = {
    "photo": """import sys, cv2
cv2.setNumThreads(int(sys.argv[4]))
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(sys.argv[1])
sr.setModel("fsrcnn", 3)
cv2.imwrite(sys.argv[3], sr.upsample(cv2.imread(sys.argv[2])))
""",
    "folder": """import os, sys, cv2
cv2.setNumThreads(int(sys.argv[4]))
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(sys.argv[1])
sr.setModel("fsrcnn", 3)
for name in sorted(os.listdir(sys.argv[2])):
    image = cv2.imread(os.path.join(sys.argv[2], name))
    cv2.imwrite(os.path.join(sys.argv[3], os.path.splitext(name)[0] + ".png"), sr.upsample(image))
""",
    "video": """import sys, cv2
cv2.setNumThreads(int(sys.argv[4]))
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(sys.argv[1])
sr.setModel("fsrcnn", 3)
capture = cv2.VideoCapture(sys.argv[2])
fps = capture.get(cv2.CAP_PROP_FPS)
writer = None
while True:
    ok, frame = capture.read()
    if not ok:
        break
    result = sr.upsample(frame)
    if writer is None:
        size = (result.shape[1], result.shape[0])
        writer = cv2.VideoWriter(sys.argv[3], cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    writer.write(result)
writer.release()
"""}


@dataclass(frozen=True)
class Inputs:
    """What the whole-process rows run on; the defaults are make bench's, the tests' are tiny."""

    photos: tuple = (("1080p", (1920, 1080)), ("4K", (3840, 2160)))  # (name, (width, height))
    video_size: tuple = (640, 360)      # (width, height) of the clips
    video_frames: tuple = (24, 72)      # frames of the short and the long clip
    plane_size: tuple = (960, 540)      # (width, height) of the Y plane onnxruntime runs
    folder_images: int = None           # BSD100's first N images as the folder (None: all)


@dataclass
class WholeProcess:
    """What whole_process measured: {row: {contender: [value of each repetition]}}."""

    threads: int
    inputs: Inputs
    photos: dict = None         # size name -> {contender: [seconds]}
    peak_bytes: dict = None     # size name -> {contender: [bytes]}
    output_bytes: dict = None   # size name -> its 8-bit output's bytes
    folder: dict = None         # {contender: [images/s]}
    folder_count: int = 0
    videos: dict = None         # model name -> {contender: [frames/s]}
    onnx: dict = None           # {contender: [planes/s]}
    onnx_size: tuple = None
    starts: dict = None         # command line -> [seconds]


# how often a running child's peak memory is read
POLL_SECONDS = 0.02


def _peak_bytes(pid):
    """The peak resident memory of a running process so far (VmHWM), 0 once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return int(line.split()[1]) * 1024 if line else 0


def run_process(argv):
    """(seconds, peak resident bytes) of a child process run to its end; its error output in
    a RuntimeError if it fails. The peak is the child's VmHWM, read while it runs: wait4's
    ru_maxrss would also count this process's memory, which a child inherits until its exec."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        peak = 0
        while True:
            peak = max(peak, _peak_bytes(process.pid))
            pid, status, _ = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(map(str, argv))} failed:\n{errors.read().decode()}")
    return seconds, peak


def ours(source, model, out, threads, *more):
    return [sys.executable, "-m", "runner", "predict", str(source), "--model",
            str(SHIPPED / MODELS[model][0]), "--out", str(out), "--threads", str(threads), *more]


def opencv(script, source, model, out, threads, data_root=None):
    weights = datasets.data_root(data_root) / "reference_models" / MODELS[model][1]
    return [sys.executable, "-c", OPENCV_SCRIPTS[script], str(weights), str(source), str(out),
            str(threads)]


def mosaic(width, height, data_root=None):
    """A height x width BGR photo: General-100's images side by side at their own resolution,
    row after row (cut at the right and bottom edges)."""
    files = datasets.image_files(datasets.dataset_folder("General100", data_root))
    photo = np.zeros((height, width, 3), np.uint8)
    top, index = 0, 0
    while top < height:
        left, row_height = 0, 0
        while left < width:
            image = cv2.imread(str(files[index % len(files)]))
            index += 1
            part = image[:height - top, :width - left]
            photo[top:top + part.shape[0], left:left + part.shape[1]] = part
            left, row_height = left + part.shape[1], max(row_height, part.shape[0])
        top += row_height
    return photo


def write_clip(path, photo, frames, size):
    """A clip of `frames` frames of `size` (width, height) panning across `photo`, mp4v at
    VIDEO_FPS."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, size)
    for index in range(frames):
        left = index * (photo.shape[1] - width) // max(frames - 1, 1)
        top = index * (photo.shape[0] - height) // max(frames - 1, 1)
        writer.write(photo[top:top + height, left:left + width])
    writer.release()
    return path


def _seconds(argv, peaks=None):
    def measure():
        seconds, peak = run_process(argv)
        if peaks is not None:
            peaks.append(peak)
        return seconds
    return measure


def measure_photos(result, folder, repeats, data_root, log):
    result.photos, result.peak_bytes, result.output_bytes = {}, {}, {}
    for name, (width, height) in result.inputs.photos:
        photo = folder / f"photo_{name}.png"
        cv2.imwrite(str(photo), mosaic(width, height, data_root))
        peaks = {"ours": [], "OpenCV": []}
        contenders = {"ours": _seconds(ours(photo, "FSRCNN", folder / "ours", result.threads),
                                       peaks["ours"]),
                      "OpenCV": _seconds(opencv("photo", photo, "FSRCNN",
                                                folder / f"opencv_{name}.png", result.threads,
                                                data_root), peaks["OpenCV"])}
        result.photos[name] = interleaved(contenders, repeats)
        result.peak_bytes[name] = peaks
        result.output_bytes[name] = 9 * width * height * 3
        log(f"photo {name} x3: " + ", ".join(f"{who} {median(values):.2f} s"
                                            for who, values in result.photos[name].items()))


def folder_of_images(folder, count, data_root):
    """BSD100's folder, or a folder of copies of its first `count` images (None: all of it)."""
    source = datasets.dataset_folder("BSD100", data_root)
    if count is None:
        return source
    (folder / "images").mkdir()
    for path in datasets.image_files(source)[:count]:
        shutil.copy(path, folder / "images")
    return folder / "images"


def measure_folder(result, folder, repeats, data_root, log):
    source = folder_of_images(folder, result.inputs.folder_images, data_root)
    result.folder_count = len(datasets.image_files(source))
    (folder / "opencv_folder").mkdir()

    def rate(argv):
        return lambda: result.folder_count / run_process(argv)[0]
    contenders = {"ours": rate(ours(source, "FSRCNN", folder / "ours", result.threads))}
    if result.threads >= 2:     # two processes of one thread each: as many threads in all
        contenders["ours --jobs 2"] = rate(ours(source, "FSRCNN", folder / "ours",
                                                result.threads, "--jobs", "2"))
    contenders["OpenCV"] = rate(opencv("folder", source, "FSRCNN", folder / "opencv_folder",
                                       result.threads, data_root))
    result.folder = interleaved(contenders, repeats)
    log("BSD100 x3: " + ", ".join(f"{who} {median(values):.2f} images/s"
                                 for who, values in result.folder.items()))


def measure_videos(result, folder, repeats, data_root, log):
    frames = result.inputs.video_frames
    photo = mosaic(*result.inputs.photos[0][1], data_root)
    clips = [write_clip(folder / f"clip_{count}.mp4", photo, count, result.inputs.video_size)
             for count in frames]
    result.videos = {}
    for model in MODELS:
        def throughput(make_argv):
            def measure():
                short, long = (run_process(make_argv(clip, index))[0]
                               for index, clip in enumerate(clips))
                return (frames[1] - frames[0]) / (long - short)
            return measure
        contenders = {
            "ours": throughput(lambda clip, index: ours(clip, model, folder / "ours",
                                                        result.threads)),
            "OpenCV": throughput(lambda clip, index: opencv(
                "video", clip, model, folder / f"opencv_{index}.mp4", result.threads,
                data_root))}
        result.videos[model] = interleaved(contenders, repeats)
        log(f"video {model}: " + ", ".join(f"{who} {median(values):.1f} frames/s"
                                          for who, values in result.videos[model].items()))


def onnx_model(model_path, folder):
    """The ONNX bytes of the deploy net as `runner export --format onnx` writes them (plain
    layers, a ConvTranspose for the deconvolution: the model as an ONNX user gets it)."""
    return Path(export.export(model_path, folder, "onnx")[0]).read_bytes()


ONNX_TILED = f"ours, tiles of {tile_sizes.DEFAULT_TILE_SIZE}"


def measure_onnx(result, folder, repeats, data_root, log):
    import onnxruntime
    model_path = SHIPPED / MODELS["FSRCNN"][0]
    model = torch_engine.load_for_inference(model_path)
    y = matlab.rgb2y(mosaic(*result.inputs.plane_size, data_root), channel_order="bgr",
                     dtype=np.float32) / 255
    result.onnx_size = y.shape
    data = onnx_model(model_path, folder)
    settings = onnxruntime.SessionOptions()
    settings.intra_op_num_threads, settings.inter_op_num_threads = result.threads, 1
    session = onnxruntime.InferenceSession(data, settings, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    # fed as ours is: the plane mirrored around it, the output cropped (geometry)
    padded = model.geometry.padded(y)[None, None]
    theirs = model.geometry.cropped(session.run(None, {feed: padded})[0][0, 0])
    difference = np.abs(theirs - tiles.super_resolve(model, y, None)).max()
    if difference > 1e-4:
        raise RuntimeError(f"onnxruntime's output differs from ours by {difference}")
    # the row: the same work on both sides, the whole plane in one pass; predict's tiles of 256
    # (which bound a large image's memory) beside it
    contenders = {"ours": lambda: timed_rate(lambda: tiles.super_resolve(model, y, None), 1),
                  ONNX_TILED: lambda: timed_rate(lambda: tiles.super_resolve(model, y), 1),
                  "onnxruntime": lambda: timed_rate(
                      lambda: session.run(None, {feed: padded}), 1)}
    for contender in contenders.values():
        contender()                                         # warm-up
    result.onnx = interleaved(contenders, repeats * PLANE_ROUNDS)
    log("Y plane: " + ", ".join(f"{who} {1e3 / median(values):.0f} ms"
                                for who, values in result.onnx.items()))


def measure_starts(result, repeats, log):
    lines = [["--help"]] + [[name, "--help"] for name in COMMANDS]
    result.starts = {" ".join(line): [run_process([sys.executable, "-m", "runner", *line])[0]
                                      for _ in range(repeats)] for line in lines}
    slowest = max(result.starts, key=lambda line: median(result.starts[line]))
    log(f"slowest start: runner {slowest} {median(result.starts[slowest]):.2f} s")


def measure_whole_process(threads, repeats, inputs=Inputs(), data_root=None, log=print):
    result = WholeProcess(threads, inputs)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="whole_") as name:
        folder = Path(name)
        measure_starts(result, repeats, log)
        measure_onnx(result, folder, repeats, data_root, log)
        measure_photos(result, folder, repeats, data_root, log)
        measure_videos(result, folder, repeats, data_root, log)
        measure_folder(result, folder, repeats, data_root, log)
    return result


def _compare(what, values, unit, digits, target, ours="ours", per_second=True):
    """(table line, target line) of `ours` against OpenCV: the ratio of their speeds (of rates
    per second, or of seconds taken)."""
    mine, theirs = median(values[ours]), median(values["OpenCV"])
    ratio = mine / theirs if per_second else theirs / mine
    shown = what if ours == "ours" else f"{what}, `{ours}`"
    return (f"| {shown} | {mine:,.{digits}f} {unit} | {theirs:,.{digits}f} {unit} | "
            f"**{ratio:.2f}x** | {target:g}x |",
            ratio_line(f"{what}, `{ours}` / OpenCV", ratio, target))


def whole_process_section(result):
    threads = result.threads
    lines = ["## Whole processes: `runner predict` against OpenCV scripts", "",
             f"Each process from its start to its exit, ours with `--threads {threads}`, "
             f"OpenCV's with `cv2.setNumThreads({threads})`; interleaved, medians "
             "(every repetition below). Ours is the shipped model of the same architecture as "
             "the authors' model OpenCV runs.", "",
             "| input | ours | OpenCV | ours / OpenCV | target |", "|---|---:|---:|---:|---:|"]
    compared = []
    photo_sizes = dict(result.inputs.photos)
    for name, times in result.photos.items():
        width, height = photo_sizes[name]
        compared.append(_compare(f"photo {width}x{height} -> {3 * width}x{3 * height} "
                                 "(FSRCNN x3)", times, "s", 2, TARGETS["photo"],
                                 per_second=False))
    for who in [who for who in result.folder if who != "OpenCV"]:
        compared.append(_compare(f"BSD100 folder, {result.folder_count} images x3",
                                 result.folder, "images/s", 2, TARGETS["folder"], who))
    width, height = result.inputs.video_size
    for model, rates in result.videos.items():
        compared.append(_compare(f"video {width}x{height} -> {3 * width}x{3 * height} "
                                 f"({model} x3), decode + super-resolve + encode", rates,
                                 "frames/s", 1, TARGETS["video"]))
    lines += [line for line, _ in compared]
    targets = [target for _, target in compared]
    notes = [f"  - photo {name}, {who}: {values_text(values, 2)} s"
             for name, times in result.photos.items() for who, values in times.items()]
    notes += [f"  - BSD100, {who}: {values_text(values, 2)} images/s"
              for who, values in result.folder.items()]
    notes += [f"  - video {model}, {who}: {values_text(values, 1)} frames/s"
              for model, rates in result.videos.items() for who, values in rates.items()]
    fps = median(result.videos["FSRCNN-s"]["ours"])
    met = "met" if fps >= TARGETS["real_time_fps"] else "**not met**"
    targets.append(f"- FSRCNN-s video in real time: **{fps:.1f} frames/s** (target at least "
                   f"{TARGETS['real_time_fps']:g}, the paper's real-time rate: {met})")
    onnx = result.onnx
    ratio = median(onnx["ours"]) / median(onnx["onnxruntime"])
    height, width = result.onnx_size
    lines.append(f"| {width}x{height} Y plane (FSRCNN x3), in one process | "
                 f"{1e3 / median(onnx['ours']):,.0f} ms | onnxruntime "
                 f"{1e3 / median(onnx['onnxruntime']):,.0f} ms | **{ratio:.2f}x** | "
                 f"{TARGETS['onnx']:g}x |")
    targets.append(ratio_line("Y plane, ours / onnxruntime", ratio, TARGETS["onnx"]))
    notes += [f"  - Y plane, {who}: {values_text([1e3 / value for value in values], 0)} ms"
              for who, values in onnx.items()]
    name = result.inputs.photos[-1][0]         # the last, largest photo (4K in make bench)
    peak, limit = (median(result.peak_bytes[name]["ours"]),
                   MEMORY_PER_OUTPUT_BYTE * result.output_bytes[name] + MEMORY_ALLOWANCE)
    met = "met" if peak <= limit else "**not met**"
    targets.append(f"- peak memory, {name} photo: ours **{peak / 2 ** 20:,.0f} MiB** (target at "
                   f"most {result.output_bytes[name] / 2 ** 20:,.0f} MiB of 8-bit output x "
                   f"{MEMORY_PER_OUTPUT_BYTE:g} + {MEMORY_ALLOWANCE // 2 ** 20} MiB = "
                   f"{limit / 2 ** 20:,.0f} MiB: {met}); OpenCV's script "
                   f"{median(result.peak_bytes[name]['OpenCV']) / 2 ** 20:,.0f} MiB")
    notes += [f"  - peak memory, photo {size}, {who}: "
              f"{values_text([value / 2 ** 20 for value in values], 0)} MiB"
              for size, peaks in result.peak_bytes.items() for who, values in peaks.items()]
    slowest = max(result.starts, key=lambda line: median(result.starts[line]))
    start = median(result.starts[slowest])
    met = "met" if start < TARGETS["start_seconds"] else "**not met**"
    targets.append(f"- start: the slowest of `runner --help` and `runner <command> --help` for "
                   f"every command is `runner {slowest}`, **{start:.2f} s** (target under "
                   f"{TARGETS['start_seconds']:g} s: {met})")
    notes += [f"  - `runner {line}`: {values_text(values, 2)} s"
              for line, values in result.starts.items()]
    lines += ["", *targets, "",
              "- A video's frames/s is its throughput once started: the frames of a long clip "
              "less those of a short one, over the difference of the two processes' times. "
              "Ours decodes and encodes the YUV 4:2:0 planes with PyAV (MPEG-4 at OpenCV's "
              "mp4v settings: files of the same size); OpenCV's script goes through BGR frames "
              "with cv2.VideoCapture and an mp4v cv2.VideoWriter.",
              f"- The ONNX model: `runner export --format onnx`; onnxruntime "
              f"{_onnxruntime_version()} "
              f"with {threads} intra-op threads (ours: torch at {threads} threads), fed the "
              "plane as ours is (mirrored around it, output cropped) and checked equal to ours "
              "within 1e-4; both run the whole plane in one pass (ours in predict's tiles "
              "too: the `ours, tiles` line below).",
              "- Each repetition:", *notes, ""]
    return lines


def _onnxruntime_version():
    import onnxruntime
    return onnxruntime.__version__
