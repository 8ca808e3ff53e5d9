"""`runner test`: PSNR and SSIM of bicubic and a model on benchmark sets, the papers' protocol.

The protocol of the SRCNN/FSRCNN MATLAB scripts, each choice a field of `Protocol`
(runner/score/protocol.py):
- ground truth: the image's Y channel (MATLAB `rgb2ycbcr`, rounded to uint8; a grayscale image is
  its own Y), modcropped to a multiple of the scale;
- LR image: MATLAB's bicubic `imresize(Y, 1/scale)`, kept in floating point as their
  `single(im_gnd) / 255` keeps it;
- every estimate (bicubic `imresize(LR, scale)`, or the network's output) rounded to uint8 as their
  `uint8(im_h * 255)` does, then scored after shaving `shave` pixels off each border: PSNR, and SSIM
  as Wang et al.'s ssim_index.m.
tests/test_evaluate.py reproduces the published bicubic table through these functions.
"""
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runner.config import loading, schema
from runner.errors import UserError
from runner.files import outputs
from runner.imaging import datasets, images, matlab
from runner.infer import colour, tile_sizes
from runner.score import metrics, published
from runner.score.protocol import BICUBIC, Protocol


def ground_truth(image, protocol):
    """The uint8 Y plane an image is scored against (image as `runner.imaging.images.read_image` gives it)."""
    return matlab.modcrop(images.y_channel(image, protocol.y_conversion), protocol.scale)


def degrade(ground_truth_y, scale):
    """The LR image of the protocol: MATLAB bicubic downscaling, float64, not rounded."""
    return matlab.imresize(ground_truth_y, 1 / scale)


def bicubic(low_res, scale):
    """The bicubic baseline: MATLAB bicubic upscaling, float64 in 0..255 units."""
    return matlab.imresize(low_res, scale)


def score(ground_truth_y, estimate, border):
    """(PSNR, SSIM) of a float estimate rounded to uint8, against the uint8 ground truth."""
    rounded = matlab.to_uint8(estimate)
    return (metrics.psnr(ground_truth_y, rounded, shave_border=border),
            metrics.ssim(ground_truth_y, rounded, shave_border=border))


def model_method(model, tile_size=tile_sizes.DEFAULT_TILE_SIZE):
    """An InferenceModel as a scoring method: (LR float plane in 0..255, scale) -> its HR
    estimate."""
    return lambda low_res, scale: colour.super_resolve_y(model, low_res, tile_size)


def scoring_methods(model=None, tile_size=tile_sizes.DEFAULT_TILE_SIZE):
    """The methods `runner test` scores: bicubic, and an InferenceModel when given."""
    chosen = {BICUBIC: bicubic}
    if model is not None:
        chosen[model.name] = model_method(model, tile_size)
    return chosen


def smallest_scorable_side(protocol):
    """The shortest image side that leaves SSIM's 11x11 window after modcrop and shaving."""
    return metrics.SSIM_WINDOW_SIZE + 2 * protocol.border + protocol.scale - 1


def evaluate_image(image, protocol, methods, where):
    """{method: (PSNR, SSIM)} for one image; `methods` maps a name to a function
    (LR float plane in 0..255, scale) -> HR float plane in 0..255."""
    if min(image.shape[:2]) < smallest_scorable_side(protocol):
        raise UserError(where, f"{image.shape[1]}x{image.shape[0]} is too small to score at "
                        f"x{protocol.scale} with {protocol.border} pixels shaved (needs at least "
                        f"{smallest_scorable_side(protocol)} pixels per side)")
    truth = ground_truth(image, protocol)
    low_res = degrade(truth, protocol.scale)
    results = {}
    for name, method in methods.items():
        estimate = method(low_res, protocol.scale)
        if estimate.shape != truth.shape:
            raise UserError(where, f"{name} gave a {estimate.shape[1]}x{estimate.shape[0]} "
                            f"image for a {truth.shape[1]}x{truth.shape[0]} ground truth")
        results[name] = score(truth, estimate, protocol.border)
    return results


@dataclass(frozen=True)
class Score:
    """One image's score by one method."""

    dataset: str
    image: str
    scale: int
    method: str
    psnr: float
    ssim: float


def validation_set_images(prep_config, data_root=None):
    """[(set name, image file)] of the images `prep_config` holds out of training, each set
    named `<set>-validation` so that no table takes it for the whole set."""
    return [(f"{name}-validation", path) for name, path in datasets.validation_images(
        prep_config.validation_sets, prep_config.validation_images, data_root)]


def held_out_images(prep_config_path, data_root=None):
    """validation_set_images of a prep config file, which must hold images out."""
    prep_config = loading.load(schema.PrepConfig, prep_config_path)
    if not prep_config.validation_sets:
        raise UserError(prep_config_path, "holds no images out for validation (validation_sets "
                        "is empty)")
    return validation_set_images(prep_config, data_root)


def mean_psnr(model, named_paths, tile_size=tile_sizes.DEFAULT_TILE_SIZE):
    """An InferenceModel's PSNR averaged over images (set name, file), each scored whole by the
    protocol at the model's scale: `runner test`'s figure for those images."""
    scores = evaluate_images(named_paths, Protocol(model.scale),
                             {model.name: model_method(model, tile_size)})
    return float(np.mean([score.psnr for score in scores]))


def evaluate_sets(set_names, protocol, methods, data_root=None, progress=False):
    """Scores of every image of every named set, by every method, in set and file order."""
    return evaluate_images(datasets.set_images(set_names, data_root), protocol, methods,
                           progress)


def evaluate_images(named_paths, protocol, methods, progress=False):
    """Scores of every (set name, image file), by every method, in order."""
    scores = []
    # disable=None: a progress bar on a terminal only, never in logs or pipes
    for set_name, path in tqdm(named_paths, desc=f"x{protocol.scale}", unit="image",
                               disable=None if progress else True, leave=False):
        results = evaluate_image(images.read_image(path), protocol, methods, path)
        scores.extend(Score(set_name, path.name, protocol.scale, method, psnr, ssim)
                      for method, (psnr, ssim) in results.items())
    return scores


@dataclass(frozen=True)
class Mean:
    """A method's mean score over one set at one scale."""

    dataset: str
    scale: int
    method: str
    images: int
    psnr: float
    ssim: float


def means(scores):
    """Mean PSNR and SSIM per (set, scale, method), in first-seen order."""
    groups = {}
    for item in scores:
        groups.setdefault((item.dataset, item.scale, item.method), []).append(item)
    return [Mean(dataset, scale, method, len(group),
                 float(np.mean([item.psnr for item in group])),
                 float(np.mean([item.ssim for item in group])))
            for (dataset, scale, method), group in groups.items()]


def _methods_of(rows):
    return list(dict.fromkeys(row.method for row in rows))


def _pivot(rows, key):
    """Rows grouped by `key` into {key: {method: row}}, in first-seen order."""
    table = {}
    for row in rows:
        table.setdefault(key(row), {})[row.method] = row
    return table


def _cells(by_method, methods):
    return [f"{by_method[method].psnr:.2f} / {by_method[method].ssim:.4f}" for method in methods]


def _image_count(by_method):
    return str(next(iter(by_method.values())).images)


def _aligned(rows):
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def format_table(mean_rows):
    """The mean scores as an aligned text table: one row per set and scale."""
    methods = _methods_of(mean_rows)
    header = ["set", "scale", "images"] + [f"{method} PSNR / SSIM" for method in methods]
    table = _pivot(mean_rows, lambda row: (row.dataset, row.scale))
    return _aligned([header] + [[dataset, f"x{scale}", _image_count(by_method),
                                 *_cells(by_method, methods)]
                                for (dataset, scale), by_method in table.items()])


def format_scores(scores):
    """Every image's scores as an aligned text table."""
    methods = _methods_of(scores)
    header = ["set", "image", "scale"] + [f"{method} PSNR / SSIM" for method in methods]
    table = _pivot(scores, lambda row: (row.dataset, row.image, row.scale))
    return _aligned([header] + [[dataset, image, f"x{scale}", *_cells(by_method, methods)]
                                for (dataset, image, scale), by_method in table.items()])


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown_report(scores, protocol, title):
    """A Markdown report of one scale: the protocol, the means, the published figures for the
    net where runner/score/published.py has them, then every image of every set."""
    methods = _methods_of(scores)
    header = [f"{method} PSNR / SSIM" for method in methods]
    lines = [f"# {title}", "", f"Protocol: {protocol.describe()}.", ""]
    mean_rows = means(scores)
    by_set = _pivot(mean_rows, lambda row: row.dataset)
    lines += _markdown_table(["set", "images", *header],
                             [[dataset, _image_count(by_method), *_cells(by_method, methods)]
                              for dataset, by_method in by_set.items()])
    comparison = published.markdown_comparisons(published.comparisons(mean_rows))
    lines += [""] + comparison if comparison else []
    for dataset in by_set:
        by_image = _pivot([item for item in scores if item.dataset == dataset],
                          lambda row: row.image)
        lines += ["", f"## {dataset}", ""]
        lines += _markdown_table(["image", *header], [[image, *_cells(by_method, methods)]
                                                     for image, by_method in by_image.items()])
    return "\n".join(lines) + "\n"


def csv_report(scores):
    """Every score as CSV: dataset, image, scale, method, psnr, ssim (full precision)."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["dataset", "image", "scale", "method", "psnr", "ssim"])
    writer.writerows([item.dataset, item.image, item.scale, item.method, f"{item.psnr:.6f}",
                      f"{item.ssim:.6f}"] for item in scores)
    return stream.getvalue()


def write_reports(scores, protocol, folder, label):
    """`<folder>/<label>_x<scale>.md` and `.csv`; returns their paths."""
    stem = Path(folder) / f"{label}_x{protocol.scale}"
    title = f"{label}, x{protocol.scale}"
    outputs.writable_folder(folder)
    return outputs.write_files({stem.with_suffix(".md"): markdown_report(scores, protocol, title),
                                stem.with_suffix(".csv"): csv_report(scores)})


def run(named_paths, scales, methods, out_dir, label, y_conversion="matlab", shave=None,
        progress=False):
    """`runner test`: every (set name, image file) at every scale scored by every method, one
    report pair per scale written; returns (all scores, [(protocol, report paths)])."""
    outputs.writable_folder(out_dir)
    all_scores, reports = [], []
    for scale in scales:
        protocol = Protocol(scale, y_conversion, shave)
        scores = evaluate_images(named_paths, protocol, methods, progress=progress)
        reports.append((protocol, write_reports(scores, protocol, out_dir, label)))
        all_scores += scores
    return all_scores, reports
