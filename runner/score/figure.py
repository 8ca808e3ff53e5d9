"""The side-by-side figure of `runner predict --degrade` (the tutorial's Figure 2): ground truth,
bicubic and network, each captioned, as PNG bytes."""
import io

# The object-oriented Figure, not pyplot: no global state, so `runner predict --degrade` may draw
# figures of several images at once, one per thread (runner/infer/side_by_side.py).
from matplotlib.figure import Figure

DPI = 100
CAPTION_INCHES = 0.8


def comparison_png(panels):
    """PNG bytes of [(caption, 8-bit RGB array), ...] side by side, each at its pixel size."""
    height = max(image.shape[0] for _, image in panels)
    width = sum(image.shape[1] for _, image in panels)
    figure = Figure(figsize=(width / DPI + 0.2 * len(panels), height / DPI + CAPTION_INCHES),
                    dpi=DPI)
    axes = figure.subplots(1, len(panels), squeeze=False)
    for axis, (caption, image) in zip(axes[0], panels):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(caption, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    stream = io.BytesIO()
    figure.savefig(stream, format="png")
    return stream.getvalue()
