"""`runner predict --degrade`, the tutorial's test on one image: take it as ground truth, degrade
it, super-resolve, score bicubic and network on Y against the ground truth (`evaluate.score`,
shave = scale) and draw the comparison.

OpenCV, the colour pipeline, the evaluation and matplotlib are imported by the functions that use
them: `runner predict --help` reads DEGRADATIONS from here and should not wait for them."""
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError
from runner.files import outputs
from runner.infer import tile_sizes

DEGRADATIONS = ("paper", "tutorial")
# The tutorial's degradation: a 5x5 Gaussian blur (sigma from the size, OpenCV's rule: 1.1) and
# cv2.resize with bicubic interpolation.
TUTORIAL_BLUR_KERNEL = (5, 5)


def degrade(image, scale, degradation="paper"):
    """(ground truth, LR) of a Picture taken as ground truth: modcropped, alpha dropped; in
    float64, the evaluation's precision."""
    import cv2

    from runner.imaging import matlab, picture
    truth = picture.Picture(matlab.modcrop(image.pixels, scale).astype("float64"), None,
                            image.bit_depth)
    if degradation == "paper":
        low = matlab.imresize(truth.pixels, 1 / scale)
    elif degradation == "tutorial":
        height, width = truth.size
        blurred = cv2.GaussianBlur(truth.pixels, TUTORIAL_BLUR_KERNEL, 0)
        low = cv2.resize(blurred, (width // scale, height // scale),
                         interpolation=cv2.INTER_CUBIC)
    else:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {degradation!r}")
    return truth, picture.Picture(low, None, image.bit_depth)


@dataclass(frozen=True)
class DegradeResult:
    figure: Path
    scores: dict      # method name -> (PSNR, SSIM) on Y against the ground truth


def predict_degraded(model, path, figure_path, degradation="paper",
                     tile_size=tile_sizes.DEFAULT_TILE_SIZE):
    """The tutorial's test on one image: degrade, super-resolve, score, draw the figure."""
    from runner.imaging import matlab, picture
    from runner.infer import colour
    from runner.score import evaluate, figure
    from runner.score.protocol import Protocol
    image = picture.read(path)
    protocol = Protocol(model.scale)
    smallest = evaluate.smallest_scorable_side(protocol)
    if min(image.size) < smallest:
        raise UserError(path, f"{image.size[1]}x{image.size[0]} is too small to degrade and "
                        f"score at x{model.scale} (needs at least {smallest} pixels per side)")
    truth, low = degrade(image, model.scale, degradation)
    truth_y = matlab.to_uint8(colour.y_plane(truth))
    results = {evaluate.BICUBIC: colour.bicubic_picture(low, model.scale),
               model.name: colour.super_resolve_picture(model, low, tile_size)}
    scores = {name: evaluate.score(truth_y, colour.y_plane(result), protocol.border)
              for name, result in results.items()}
    panels = [("Ground truth", picture.display_rgb(truth))]
    panels += [(f"{name}\nPSNR {psnr:.2f} dB, SSIM {ssim:.4f}", picture.display_rgb(result))
               for (name, result), (psnr, ssim) in zip(results.items(), scores.values())]
    outputs.write_files({figure_path: figure.comparison_png(panels)})
    return DegradeResult(Path(figure_path), scores)
