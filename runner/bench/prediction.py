"""Super-resolving with FSRCNN and FSRCNN-s: runner predict's path against OpenCV's dnn_superres
with the authors' models."""
from pathlib import Path
from statistics import median

import cv2
import numpy as np
import torch

from runner.bench.measure import (
    PLAIN,
    REPO_ROOT,
    TARGETS,
    interleaved,
    ratio_line,
    timed_rate,
    values_text,
    without_fast_paths,
)
from runner.config import loading, schema
from runner.files import snapshot
from runner.imaging import datasets, matlab, picture
from runner.infer import colour, deploy, torch_engine
from runner.net import builder, compiled, conv_chain

FSRCNN_NET = REPO_ROOT / "configs" / "fsrcnn_net.yaml"
FSRCNN_S_NET = REPO_ROOT / "configs" / "fsrcnn_s_net.yaml"
SHIPPED_FSRCNN = REPO_ROOT / "results" / "models" / "fsrcnn_x3.model"
SHIPPED_FSRCNN_S = REPO_ROOT / "results" / "models" / "fsrcnn_s_x3.model"
# OpenCV dnn_superres models: (file in $SR_DATA/reference_models, algorithm, scale)
OPENCV_FSRCNN = ("FSRCNN_x3.pb", "fsrcnn", 3)
OPENCV_FSRCNN_S = ("FSRCNN-small_x3.pb", "fsrcnn", 3)
SHIPPED_CONTENDER = "ours, the shipped model"


def seeded_model(net_file, path, seed=0):
    """A .model of a net file's deploy form with seeded filler weights (speed does not depend
    on the values)."""
    text = Path(net_file).read_text(encoding="utf-8")
    param = loading.parse_config(schema.NetParameter, text, str(net_file))
    module = builder.Net(deploy.deploy_net(param), "TEST",
                     generator=torch.Generator().manual_seed(seed))
    blobs = {layer: [blob.detach().numpy() for blob in layer_blobs]
             for layer, layer_blobs in module.blobs_by_layer().items()}
    snapshot.save_model(path, snapshot.ModelFile(blobs, text, str(net_file), 0))
    return Path(path)


def model_file(shipped, net_file, folder):
    """(.model path, what it is): the shipped model when there is one, else random."""
    if Path(shipped).is_file():
        return Path(shipped), str(Path(shipped).relative_to(REPO_ROOT))
    path = seeded_model(net_file, Path(folder) / f"{Path(net_file).stem}.model")
    return path, f"random weights ({Path(net_file).name})"


def opencv_model(file_name, algorithm, scale, root=None):
    """An OpenCV DnnSuperResImpl with a reference model, or None when the file is missing."""
    path = datasets.data_root(root) / "reference_models" / file_name
    if not path.is_file():
        return None
    model = cv2.dnn_superres.DnnSuperResImpl_create()
    model.readModel(str(path))
    model.setModel(algorithm, scale)
    return model


def sample_image(size, root=None):
    """A size x size 8-bit Y image: Set5 butterfly's (256x256) when there, else synthetic."""
    path = datasets.data_root(root) / "Set5" / "butterfly_GT.bmp"
    image = cv2.imread(str(path)) if path.is_file() else None
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (size // 4, size // 4, 3), np.uint8)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    return matlab.y_channel(image, channel_order="bgr")


def sample_frame(height, width, root=None):
    """A height x width 8-bit BGR frame: Set5 baby's when there, else synthetic."""
    path = datasets.data_root(root) / "Set5" / "baby_GT.bmp"
    image = cv2.imread(str(path)) if path.is_file() else None
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (height // 4, width // 4, 3), np.uint8)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def our_prediction(model, image):
    """runner predict's path on one 8-bit image (without the file I/O): the result as it is
    written, 8-bit. Y through the net, chroma by MATLAB bicubic."""
    result = colour.super_resolve_picture(model, picture.from_array(image, "image"),
                                          eight_bit=True)
    return picture.to_array(result)


def our_contender(path, image, count, device="cpu"):
    """Images per second of our_prediction with the model in `path`, run on `device`."""
    model = torch_engine.load_for_inference(path, device)
    return lambda: timed_rate(lambda: [our_prediction(model, image) for _ in range(count)],
                              count)


def opencv_contender(reference, image, count):
    return lambda: timed_rate(lambda: [reference.upsample(image) for _ in range(count)], count)


def measure_prediction(results, folder, data_root, log):
    sizes = results.sizes
    # the target's comparison computes what OpenCV's model computes: the zero-padded layout
    fsrcnn = seeded_model(FSRCNN_NET, Path(folder) / f"{FSRCNN_NET.stem}.model")
    fsrcnn_name = f"random weights ({FSRCNN_NET.name}, zero-padded as OpenCV's model)"
    fsrcnn_s, fsrcnn_s_name = model_file(SHIPPED_FSRCNN_S, FSRCNN_S_NET, folder)
    frame = sample_frame(*sizes.frame_size, data_root)
    side, (height, width) = sizes.image_size, sizes.frame_size
    tasks = [(f"FSRCNN x3, {side}x{side} -> {3 * side}x{3 * side} Y image", fsrcnn_name,
              fsrcnn, OPENCV_FSRCNN, sample_image(side, data_root), "images/s"),
             (f"FSRCNN-s x3, {width}x{height} -> {3 * width}x{3 * height} colour video "
              "frames", fsrcnn_s_name, fsrcnn_s, OPENCV_FSRCNN_S, frame, "frames/s"),
             ("FSRCNN-s x3, the Y plane of those frames", fsrcnn_s_name, fsrcnn_s,
              OPENCV_FSRCNN_S, matlab.y_channel(frame, channel_order="bgr"), "frames/s")]
    results.predictions = []
    for index, (task, description, path, opencv_file, image, unit) in enumerate(tasks):
        count = sizes.predictions
        contenders = {"ours": our_contender(path, image, count)}
        if index == 0:
            contenders[f"ours, {PLAIN}"] = without_fast_paths(
                lambda: our_contender(path, image, count))
            if SHIPPED_FSRCNN.is_file():
                contenders[SHIPPED_CONTENDER] = our_contender(SHIPPED_FSRCNN, image, count)
        opencv = opencv_model(*opencv_file, root=data_root)
        if opencv is not None:
            contenders["OpenCV dnn_superres"] = opencv_contender(opencv, image, count)
        for contender in contenders.values():
            contender()                            # warm-up
        rates = interleaved(contenders, sizes.repeats)
        results.predictions.append((task, description, rates, unit))
        log(f"{task}: " + ", ".join(f"{name} {median(values):,.1f} {unit}"
                                   for name, values in rates.items()))


def prediction_section(results):
    lines = ["## Super-resolving", "",
             "| task | weights | ours | OpenCV dnn_superres | ours / OpenCV |",
             "|---|---|---:|---:|---:|"]
    notes = []
    for task, description, rates, unit in results.predictions:
        ours = median(rates["ours"])
        theirs = rates.get("OpenCV dnn_superres")
        ratio = f"**{ours / median(theirs):.2f}x**" if theirs else "n/a"
        shown = (f"{median(theirs):,.1f} {unit} ({1e3 / median(theirs):.1f} ms)" if theirs
                 else "model file missing")
        lines.append(f"| {task} | {description} | {ours:,.1f} {unit} ({1e3 / ours:.1f} ms) | "
                     f"{shown} | {ratio} |")
        notes += [f"  - {task}, {name}: {values_text(values, 1)} {unit}"
                  for name, values in rates.items()]
    task, _, rates, unit = results.predictions[0]
    lines.append("")
    if "OpenCV dnn_superres" in rates:
        lines.append(ratio_line(f"{task}, ours / OpenCV", median(rates["ours"]) /
                                 median(rates["OpenCV dnn_superres"]),
                                 TARGETS["prediction_ratio"]))
    if SHIPPED_CONTENDER in rates and "OpenCV dnn_superres" in rates:
        shipped, theirs = median(rates[SHIPPED_CONTENDER]), median(rates["OpenCV dnn_superres"])
        lines.append(f"- The same image through the shipped "
                     f"{SHIPPED_FSRCNN.relative_to(REPO_ROOT)}, whose layers are unpadded (the "
                     "image is mirrored around it, so they compute a border more): "
                     f"{shipped:,.1f} {unit} ({1e3 / shipped:.1f} ms), "
                     f"**{shipped / theirs:.2f}x** OpenCV.")
    plain = median(rates[f"ours, {PLAIN}"])
    lines += [f"- The same with the fast paths off (F.conv_transpose2d, F.conv2d's own choice of "
              f"kernel, NCHW memory): "
              f"{plain:,.1f} {unit} ({1e3 / plain:.1f} ms); the fast paths make it "
              f"**{median(rates['ours']) / plain:.1f}x** faster.", ""]
    if len(results.predictions) > 2:
        colour_ms, y_ms = (1e3 / median(rates["ours"]) for _, _, rates, _
                           in results.predictions[1:3])
        lines += [f"- Colour frames: of our {colour_ms:.1f} ms per frame, {y_ms:.1f} ms is the "
                  "Y plane's path (the row below it); the rest is the colour handling, MATLAB's "
                  "rgb2ycbcr, bicubic imresize of Cb and Cr and ycbcr2rgb in float32 "
                  "(runner/imaging/matlab.py: cv2.transform, the x3 bicubic as 3 polyphase "
                  "cv2.filter2D per axis), where OpenCV converts with cv2.cvtColor and resizes chroma with "
                  "cv2.resize."]
    lines += ["- ours: runner predict's path without the file I/O: an 8-bit image in, MATLAB "
              "rgb2ycbcr Y through the net (runner/infer/tiles.py), chroma by MATLAB bicubic "
              "imresize, the 8-bit result out. OpenCV: `upsample` of DnnSuperResImpl with the "
              "authors' TensorFlow models ($SR_DATA/reference_models), which also converts "
              "colour and upscales chroma (cv2.resize) itself.",
              "- Both compute the real 9x9 deconvolution in fp32; ours as the equivalent "
              f"sub-pixel convolution, {_how_ours_computes()}. Both run in this process, under "
              "its glibc settings and huge pages (runner/net/fast_paths.py), which speed OpenCV "
              "up as much as ours.",
              "- Each repetition:", *notes, ""]
    return lines


def _how_ours_computes():
    """How this run's FSRCNN was computed: by our own kernel, or by oneDNN and why."""
    if conv_chain.library() is not None:
        return ("the whole net in one pass of our own kernel (runner/net/conv_chain.c, built "
                f"with {' '.join(compiled.build_flags('conv_chain'))})")
    return ("every convolution by oneDNN in channels-last memory (runner/net/fast_paths.py; our "
            f"own kernel not here: {compiled.unavailable.get('conv_chain')})")
