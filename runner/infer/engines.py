"""Which engine runs a model for `runner predict`: torch (runner/infer/torch_engine.py: every
layer, on the CPU or CUDA) or OpenCV (runner/infer/opencv_engine.py: the layers it runs as torch
does, on the CPU, in a process that never imports torch and so starts seconds sooner). `auto`
takes OpenCV where it can and the work is small enough to gain by it. The names stand here with
no import at the top, so that the command line lists them without loading anything."""
from dataclasses import dataclass

from runner.errors import UserError

ENGINES = ("auto", "torch", "opencv")
DEFAULT_ENGINE = "auto"
@dataclass(frozen=True)
class OpenCVLimits:
    """The most input pixels `auto` gives OpenCV's engine per process: one input on several
    threads, several inputs on several threads (either engine takes them side by side, one per
    thread: runner/infer/side_by_side.py), and any on one thread (`--threads 1`, or `--jobs` as
    many as the threads). Beyond them torch's faster net saves more than its import costs (1 to
    5 s of CPU in every process that computes)."""

    one_input: int
    side_by_side: int
    one_thread: int


# Where torch computes FSRCNN by our own kernel (runner/net/conv_chain.c: AVX-512 or AVX2, and
# a C compiler), measured whole-process on the 2-core Zen 4 machine (its AVX-512 build), idle,
# interleaved, medians of 3 (2026-12-05): at 2 threads, a 1080p photo (2.1 million pixels)
# 1.98 s by torch against 1.35 s by OpenCV, 3000x1700 (5.1 million) 2.93 against 2.69, a 4K
# photo (8.3 million) 3.72 against 4.29: even at about 6 million; side by side, Set14 (3.2
# million) 2.09 against 2.07, BSD100's first 50 files (7.7 million) 3.26 against 3.91: even at
# 3.2 million; one thread, the 1080p photo 2.39 against 2.01, the 4K one 5.39 against 6.73:
# even at about 3.4 million.
WITH_OUR_KERNEL = OpenCVLimits(one_input=6_000_000, side_by_side=3_200_000,
                               one_thread=3_400_000)
# Where torch computes with oneDNN's layers, measured the same way before that kernel: at 2
# threads OpenCV's net took about 0.09 s more than torch's per million input pixels (a 4K photo
# 6.1 s against torch's 6.9 s, BSD100's 100 files, 15.4 million pixels, 10.2 against 10.8 s);
# side by side torch won from about 11 million (BSD100 9.3 against 10.1 s, Set14 4.0 against
# 2.7 s); on one thread OpenCV's net took about 0.9 s more CPU per million pixels (a 1080p
# photo 6.0 to 6.3 s of CPU by torch against 6.0 to 6.1, BSD100's first 19 files, 2.9 million,
# 7.4 to 7.6 against 7.5 to 9.0).
WITH_ONEDNN = OpenCVLimits(one_input=4096 * 4096, side_by_side=11_000_000,
                           one_thread=2_000_000)


def opencv_limits():
    """The OpenCVLimits for this machine: WITH_OUR_KERNEL where torch would compute with
    conv_chain's kernel (as far as is known without importing torch), else WITH_ONEDNN."""
    from runner.net import compiled
    return WITH_OUR_KERNEL if compiled.runnable("conv_chain") else WITH_ONEDNN


def opencv_pixel_limit(threads, processes=1, several_inputs=False, limits=None):
    """The most input pixels in all that `auto` gives OpenCV's engine in `processes` processes,
    each computing on `threads` threads and given one input or (`several_inputs`) several,
    which it takes side by side when it has several threads (`limits`: opencv_limits())."""
    limits = limits or opencv_limits()
    if threads == 1:
        return limits.one_thread * processes
    return (limits.side_by_side if several_inputs else limits.one_input) * processes


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
