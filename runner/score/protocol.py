"""The papers' evaluation protocol as data: every choice of it (`Protocol`), the benchmark sets
`runner test` scores by default, where its reports go and the baseline's name. It imports nothing
that computes, so that `runner test --help` starts at once (and `runner predict` names its
outputs without loading the evaluation); `evaluate.py` carries the protocol out."""
from dataclasses import dataclass
from pathlib import Path

# the bicubic baseline's name in reports and in predict's output file names
BICUBIC = "bicubic"
DEFAULT_SETS = ("Set5", "Set14", "BSD100")
DEFAULT_REPORT_FOLDER = Path("results") / "test"


@dataclass(frozen=True)
class Protocol:
    """Every choice of the evaluation; the defaults are the papers'."""

    scale: int
    y_conversion: str = "matlab"   # matlab: rgb2ycbcr's Y; opencv: cv2 YCrCb's full-range Y
    shave: int = None              # pixels cut from each border before scoring (None: scale)

    @property
    def border(self):
        return self.scale if self.shave is None else self.shave

    def describe(self):
        return (f"x{self.scale}, Y by {self.y_conversion}, modcrop to a multiple of "
                f"{self.scale}, LR = MATLAB bicubic imresize(Y, 1/{self.scale}) in float, "
                f"estimates rounded to uint8, {self.border} pixels shaved, SSIM of Wang et al")
