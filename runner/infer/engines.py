"""Which engine runs a model for `runner predict`: torch (runner/infer/torch_engine.py: every
layer, on the CPU or CUDA) or OpenCV (runner/infer/opencv_engine.py: the layers it runs as torch
does, on the CPU, in a process that never imports torch and so starts seconds sooner). `auto`
takes OpenCV where it can and the work is small enough to gain by it. The names stand here with
no import at the top, so that the command line lists them without loading anything."""
from runner.errors import UserError

ENGINES = ("auto", "torch", "opencv")
DEFAULT_ENGINE = "auto"
# What `auto` weighs, measured whole-process at 2 threads on an idle machine, interleaved: with
# Winograd's 3x3 convolutions and freed memory kept (runner/config/memory.py) OpenCV's net takes
# about 0.09 s more than torch's per million input pixels, while `import torch` costs 1 to 5 s
# of CPU in every process that computes. A 4K photo took 6.1 s by OpenCV against 6.9 s by
# torch (490 against 640 MiB), BSD100's 100 files (15.4 million pixels) 10.2 against 10.8 s,
# and 8.4 against 10.2 s with `--jobs 2`. So OpenCV takes up to about that many pixels per
# process.
OPENCV_MAX_INPUT_PIXELS = 4096 * 4096
# Several inputs to a process that computes on several threads: either engine takes them side
# by side, one per thread (runner/infer/side_by_side.py; OpenCV's with a cv2.dnn.Net of its own
# for each). Measured the same way (medians of 3), torch then wins from about 11 million input
# pixels in all: BSD100's 15.4 million took 9.3 against OpenCV's 10.1 s, Set14's 3.2 million
# 4.0 against 2.7 s. (With OpenCV one input at a time: from 8.6 million, BSD100 10.2 against
# 11.7 s.)
OPENCV_MAX_SIDE_BY_SIDE_PIXELS = 11_000_000
# A process computing on one thread (`--threads 1`, or `--jobs` as many as the threads): OpenCV's
# net then takes about 0.9 s more CPU per million input pixels than torch's (its 1x1
# convolutions and the sub-pixel one run several times slower at one thread), so torch's import
# pays off from about 2 million. CPU seconds, FSRCNN x3, one thread, 2 runs each: BSD100's 100
# files (15.4 million pixels) 22.1 to 22.7 by torch against 32.5 to 37.6 by OpenCV, a 4K photo
# 15.9 to 16.3 against 23.4 to 24.6, BSD100's first 19 files (2.9 million) 7.4 to 7.6 against
# 7.5 to 9.0, a 1080p photo 6.0 to 6.3 against 6.0 to 6.1, BSD100's first 8 (1.2 million) 4.1
# to 4.4 against 3.6.
OPENCV_MAX_ONE_THREAD_PIXELS = 2_000_000


def opencv_pixel_limit(threads, processes=1, several_inputs=False):
    """The most input pixels in all that `auto` gives OpenCV's engine in `processes` processes,
    each computing on `threads` threads and given one input or (`several_inputs`) several,
    which it takes side by side when it has several threads."""
    if threads == 1:
        return OPENCV_MAX_ONE_THREAD_PIXELS * processes
    return (OPENCV_MAX_SIDE_BY_SIDE_PIXELS if several_inputs
            else OPENCV_MAX_INPUT_PIXELS) * processes


def engine_for(engine, input_pixels, limit):
    """The engine to load for work of `input_pixels` input pixels in all (None: unknown, or a
    video's frames, whose throughput torch's faster net wins): `auto` becomes torch beyond
    `limit` (opencv_pixel_limit's); any other choice stands."""
    if engine == "auto" and (input_pixels is None or input_pixels > limit):
        return "torch"
    return engine


def load_for_inference(model_path, device="cpu", scale=None, engine=DEFAULT_ENGINE):
    """The InferenceModel of a `.model` (or `.caffemodel`) file from `engine`: `auto` is OpenCV's
    on the CPU when it runs every layer of the deploy net and loads the file, torch's otherwise;
    `opencv` is a UserError naming the first layer it does not run, or on another device than
    the CPU."""
    if engine == "torch" or (engine == "auto" and device != "cpu"):
        from runner.infer import torch_engine
        return torch_engine.load_for_inference(model_path, device, scale)
    if device != "cpu":
        raise UserError("--engine opencv", f"computes on the CPU, not --device {device}: give "
                        "--engine torch or auto")
    if engine == "opencv":
        return opencv_model(model_path, scale, required=True)
    model = opencv_model(model_path, scale)
    if model is not None:
        return model
    from runner.infer import torch_engine
    return torch_engine.load_for_inference(model_path, device, scale)


def opencv_model(model_path, scale=None, required=False):
    """OpenCV's InferenceModel of a model file, without importing torch; None where this engine
    does not run every layer of its deploy net or cannot load the file (the torch engine then
    says what is wrong, blob by blob, in our words), or with `required` a UserError naming the
    first layer it does not run (or what it cannot load)."""
    from pathlib import Path

    from runner.files import caffe_model
    from runner.infer import deploy, opencv_engine
    path = Path(model_path)
    model = caffe_model.read_model(path)
    deploy_param = deploy.deploy_net(deploy.model_net(path, model), source=str(path))
    layer = opencv_engine.unsupported_layer(deploy_param)
    if layer is not None:
        if required:
            raise UserError(path, f"--engine opencv does not run its layer {layer.name!r} "
                            f"({layer.type}): give --engine torch or auto")
        return None
    try:
        return opencv_engine.load_for_inference(path, model, deploy_param, scale)
    except UserError:
        if required:
            raise
        return None
